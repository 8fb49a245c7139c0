"""Pre-flight cost estimates: how fast they are, and how far above the actual cost they land.

1,000 tasks with inputs of 5,000 characters on average (1,000 to 9,000, business prose with
lists and figures), spread over the task types (the six phases' and the small helpers', plus
unlisted ones the learned classifier routes). For each: the budget check's estimate (the
catalogue-only estimator, as `budget_check` makes it, without a key) and the router's own
pre-flight bound, then the call itself on the offline provider (priced as the routed model).
Prints estimates per second and the ratio estimate / actual (p50, p95, max); an estimate below
its actual cost would be a budget hole, so the script counts them (must be 0).

    .venv/bin/python -m bench.costs [--tasks 1000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from pydantic import BaseModel

from common.llm import Call, Completion, Router, estimator
from common.llm.base import Message
from common.llm.providers.offline import OfflineProvider
from common.llm.tasks import TASKS
from common.spend.ledger import NullLedger

PROSE = (
    "our customers buy specialty coffee online and in two cafes; margins are 38% and repeat "
    "orders make up 61 % of revenue - we compete with Blue Bottle, local roasters and grocery "
    "brands; the team wants to grow wholesale to offices, keep the brand premium, and test a "
    "subscription at $24/month with 12 week commitments"
)
WORDS = PROSE.split()


def text(rng: random.Random, characters: int) -> str:
    out: list[str] = []
    size = 0
    while size < characters:
        word = rng.choice(WORDS)
        if rng.random() < 0.05:
            word = "\n- " + word
        out.append(word)
        size += len(word) + 1
    return " ".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    args = parser.parse_args()
    rng = random.Random(7)
    router = Router({"openai": OfflineProvider()})
    check = estimator()
    task_types = [*TASKS, "ad_hoc_question", "summarise_feedback"]
    calls = []
    for number in range(args.tasks):
        content = f"Task {number}. " + text(rng, rng.randint(1000, 9000))
        calls.append(Call(rng.choice(task_types), [Message(role="user", content=content)]))

    started = time.perf_counter()
    checks = [check.bounded(call)[1] for call in calls]
    check_seconds = time.perf_counter() - started
    started = time.perf_counter()
    bounds = [router.bounded(call)[1] for call in calls]
    bound_seconds = time.perf_counter() - started
    actual = []
    for number, call in enumerate(calls):
        completion: Completion[BaseModel] = router.execute(
            call.task_type, call.messages, ledger=NullLedger(), call_key=f"bench-{number}"
        )
        actual.append(completion.cost_nanos)

    print(
        f"{args.tasks} tasks, inputs {min(len(c.messages[0]['content']) for c in calls)}-"
        f"{max(len(c.messages[0]['content']) for c in calls)} characters "
        f"(mean {statistics.mean(len(c.messages[0]['content']) for c in calls):.0f})"
    )
    print(f"  budget-check estimates (catalogue only): {args.tasks / check_seconds:8.0f} per s")
    print(f"  router pre-flight bounds:                {args.tasks / bound_seconds:8.0f} per s")
    for label, estimates in (("budget check", checks), ("router bound", bounds)):
        ratios = sorted(e / a for e, a in zip(estimates, actual, strict=True) if a)
        below = sum(e < a for e, a in zip(estimates, actual, strict=True))
        print(
            f"  {label:<13} estimate / actual: p50 {statistics.median(ratios):6.2f}  "
            f"p95 {ratios[int(0.95 * (len(ratios) - 1))]:6.2f}  max {ratios[-1]:7.2f}  "
            f"below actual: {below} (must be 0)"
        )


if __name__ == "__main__":
    main()
