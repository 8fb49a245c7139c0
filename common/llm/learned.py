"""The learned complexity router: a prompt's features and the trained model that scores them.

A prompt becomes one vector: the offline all-MiniLM-L6-v2 embedding (384 dimensions) of a short,
fixed window of it (its first and last few words, at most `window_tokens` WordPiece tokens), then
the prompt's length in characters and a few cheap lexical features (`LEXICAL_FEATURES`), read
from at most the first and last `LEXICAL_WINDOW_CHARS` characters. So the cost does not grow with
the prompt: one short forward pass of the embedding model and a few `str.count`s.

A logistic regression over that vector, followed by Platt scaling, gives the calibrated
probability that the strong model is needed. Its weights, the features' means, the thresholds
per quality target and the held-out metrics are in `router_model.json`, written by
`tools/train_router.py` (`make train-router`) from the vendored Apache-2.0 data in
`data/router-training/`. Serving needs NumPy and the embedding model, no training library. See
docs/decisions/003-model-router.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from common.llm.base import Message

ARTEFACT = Path(__file__).with_name("router_model.json")
FORMAT = "raptorflow-router-model/1"
EMBEDDING_MODEL = "all-MiniLM-L6-v2-onnx-int8"  # common.search.embeddings.LOCAL_MODEL
EMBEDDING_DIMENSION = 384
LEXICAL_WINDOW_CHARS = 2_000
# Characters per token for English, to cut the embedding window before tokenizing it.
CHARS_PER_TOKEN = 4

# Markers are counted in the lowercased text; several may match one token (e.g. "{" and "()").
_MATH: tuple[str, ...] = ("=", "^", "+", "sqrt", "\\", "√", "∫", "∑", "π", "equation", "integral")
_MATH += ("derivative", "probability", "theorem", "matrix", "polynomial", "prime")
_CODE: tuple[str, ...] = ("```", "def ", "return ", "{", "}", ";", "()", "import ", "class ")
_CODE += ("function", "=>", "#include", "select ", "print(", "python", "javascript", "sql")
_CODE += ("regex", "code")
_REASONING: tuple[str, ...] = ("prove", "derive", "calculate", "compute", "solve", "step by step")
_REASONING += ("explain why", "how many", "estimate")
_CREATIVE = ("poem", "story", "essay", "email", "letter", "song", "joke", "slogan", "tweet", "blog")
_FACTUAL_OPENERS = ("what", "who", "when", "where", "which")
_DIGITS = str.maketrans("", "", "0123456789")

LEXICAL_FEATURES: tuple[str, ...] = (
    "length",
    "lines",
    "digits",
    "math markers",
    "code markers",
    "question marks",
    "creative-writing words",
    "reasoning words",
    "factual question",
    "how/why",
    "non-ASCII text",
)
EMBEDDING_FEATURE = "prompt meaning (embedding)"


class RouterModelError(RuntimeError):
    """The router's artefact is missing, altered, or does not match this code's features."""


def prompt_text(messages: Sequence[Message]) -> str:
    """The text the router reads: the user turns (the request), or every turn if none is."""
    user = [message["content"] for message in messages if message["role"] == "user"]
    return "\n".join(user or [message["content"] for message in messages])


def embedding_window(text: str, window_tokens: int) -> str:
    """The first and last `window_tokens / 2` tokens' worth of characters of `text`."""
    side = window_tokens * CHARS_PER_TOKEN // 2
    if len(text) <= 2 * side:
        return text
    return text[:side] + "\n" + text[-side:]


def _count(text: str, markers: tuple[str, ...]) -> int:
    return sum(text.count(marker) for marker in markers)


def lexical_features(text: str) -> npt.NDArray[np.float64]:
    """The `LEXICAL_FEATURES` of `text`, in that order; counts are log(1 + n)."""
    if len(text) > 2 * LEXICAL_WINDOW_CHARS:
        window = text[:LEXICAL_WINDOW_CHARS] + "\n" + text[-LEXICAL_WINDOW_CHARS:]
    else:
        window = text
    lower = window.lower()
    size = max(len(window), 1)
    digits = len(window) - len(window.translate(_DIGITS))
    non_ascii = len(window) - len(window.encode("ascii", "ignore"))
    return np.array(
        [
            math.log1p(len(text)),
            math.log1p(window.count("\n")),
            digits / size,
            math.log1p(_count(lower, _MATH)),
            math.log1p(_count(lower, _CODE)),
            math.log1p(window.count("?")),
            math.log1p(_count(lower, _CREATIVE)),
            math.log1p(_count(lower, _REASONING)),
            float(lower.lstrip().startswith(_FACTUAL_OPENERS)),
            float("how " in lower or "why " in lower),
            non_ascii / size,
        ]
    )


class Featurizer:
    """Turns prompt texts into feature vectors; the embedding model loads on first use.

    Args:
        window_tokens: The embedding window, in WordPiece tokens (without [CLS]/[SEP]).
    """

    def __init__(self, window_tokens: int) -> None:
        self.window_tokens = window_tokens
        self._embedder: Any = None
        self._lock = threading.Lock()

    def _embed(self, text: str) -> list[float]:
        with self._lock:
            if self._embedder is None:
                # Imported here so that phases whose tasks have a default never load onnxruntime.
                from common.search.embeddings import LocalEmbedder

                # One thread: a single short sequence gains nothing from a thread pool, and on a
                # shared or fractional CPU the pool's workers only wait for each other.
                self._embedder = LocalEmbedder(max_tokens=self.window_tokens + 2, threads=1)
            embedder = self._embedder
        window = embedding_window(text, self.window_tokens)
        vector: list[float] = embedder.embed([window if window.strip() else "(empty)"])[0]
        return vector

    def features(self, text: str) -> npt.NDArray[np.float64]:
        """The embedding of the window followed by the lexical features."""
        embedding = np.asarray(self._embed(text), dtype=np.float64)
        return np.concatenate([embedding, lexical_features(text)])


@dataclass(frozen=True)
class Thresholds:
    """Score cut-offs for one quality target: below `nano` is nano, from `full` up is full."""

    quality_target: float
    nano: float
    full: float


@dataclass(frozen=True)
class Scored:
    """A prompt's calibrated probability that the strong model is needed, and why."""

    probability: float
    contributions: tuple[tuple[str, float], ...]  # feature -> logit points, largest |value| first


@dataclass(frozen=True)
class RouterModel:
    """The trained model of `router_model.json` (see `load`)."""

    version: int
    window_tokens: int
    mean: npt.NDArray[np.float64]
    coef: npt.NDArray[np.float64]  # per raw feature: the standardised weight over its spread
    intercept: float
    calibration: tuple[float, float]  # Platt: p = sigmoid(a * logit + b)
    thresholds: tuple[Thresholds, ...]  # by quality target, ascending
    data_sha256: str

    def score(self, features: npt.NDArray[np.float64]) -> Scored:
        """The calibrated probability for one feature vector, with each feature's part in it."""
        parts = self.coef * (features - self.mean)
        logit = float(parts.sum()) + self.intercept
        a, b = self.calibration
        probability = 1.0 / (1.0 + math.exp(-(a * logit + b)))
        named = [(EMBEDDING_FEATURE, float(parts[:EMBEDDING_DIMENSION].sum()) * a)]
        named += [
            (name, float(part) * a)
            for name, part in zip(LEXICAL_FEATURES, parts[EMBEDDING_DIMENSION:], strict=True)
        ]
        named.sort(key=lambda item: (-abs(item[1]), item[0]))
        return Scored(probability=probability, contributions=tuple(named))

    def thresholds_for(self, quality_target: float) -> Thresholds:
        """The cut-offs of the smallest tabulated target at or above `quality_target`."""
        for entry in self.thresholds:
            if entry.quality_target >= quality_target - 1e-9:
                return entry
        return self.thresholds[-1]


def canonical_digest(model: dict[str, Any]) -> str:
    """sha256 of the artefact's `model` section as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(model, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def load(path: Path = ARTEFACT) -> RouterModel:
    """Read and check an artefact: its format, its own digest, and that its features are ours.

    Raises:
        RouterModelError: the file is missing, altered, or made for other features.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RouterModelError(f"router model {path} cannot be read: {exc}") from exc
    if document.get("format") != FORMAT:
        raise RouterModelError(
            f"router model {path} has format {document.get('format')!r}, this code reads {FORMAT!r}"
        )
    model = document["model"]
    digest = canonical_digest(model)
    if digest != document.get("model_sha256"):
        raise RouterModelError(
            f"router model {path}: its model section has sha256 {digest}, the file records "
            f"{document.get('model_sha256')}: the weights were altered (retrain: make train-router)"
        )
    features = document["features"]
    if features["embedding_model"] != EMBEDDING_MODEL or features["lexical"] != list(
        LEXICAL_FEATURES
    ):
        raise RouterModelError(
            f"router model {path} was trained on other features ({features['embedding_model']}, "
            f"{features['lexical']}): retrain it with make train-router"
        )
    size = EMBEDDING_DIMENSION + len(LEXICAL_FEATURES)
    mean = np.asarray(model["mean"], dtype=np.float64)
    coef = np.asarray(model["coef"], dtype=np.float64)
    if mean.shape != (size,) or coef.shape != (size,):
        raise RouterModelError(f"router model {path} has {coef.size} weights, expected {size}")
    thresholds = tuple(
        Thresholds(quality_target=t["quality_target"], nano=t["nano"], full=t["full"])
        for t in document["thresholds"]
    )
    targets = [t.quality_target for t in thresholds]
    if not thresholds or targets != sorted(targets) or any(t.nano > t.full for t in thresholds):
        raise RouterModelError(f"router model {path} has inconsistent thresholds")
    return RouterModel(
        version=int(document["version"]),
        window_tokens=int(features["window_tokens"]),
        mean=mean,
        coef=coef,
        intercept=float(model["intercept"]),
        calibration=(float(model["calibration"]["a"]), float(model["calibration"]["b"])),
        thresholds=thresholds,
        data_sha256=str(document["training_data"]["sha256"]),
    )
