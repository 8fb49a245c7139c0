"""Pre-flight cost estimates: how fast they are, and how far above the actual cost they land.

1,000 tasks with inputs of 5,000 characters on average (1,000 to 9,000, business prose with
lists and figures), spread over the task types (the six phases' and the small helpers', plus
unlisted ones the learned classifier routes). For each: the budget check's estimate (the
catalogue-only estimator, as `budget_check` makes it, without a key) and the router's own
pre-flight bound, then the call itself on the offline provider (priced as the routed model).
Prints estimates per second and the ratio estimate / actual (p50, p95, max); an estimate below
its actual cost would be a budget hole, so the script counts them (must be 0).

Then whole runs of the sample business (`local/samples/tidewater.json`, enterprise) on the
emulator, one after another, each phase in this process on the offline provider: before each
run, what it is expected to cost (`expected_run_cost`, what must fit for it to start), after it,
what it was charged; the first runs start cold (no recorded costs), the later ones from what
the earlier recorded. The target is an estimate at most 1.5 times the actual once learned.
Twice: with sound answers, and with weak ones that are asked again and escalated.

    .venv/bin/python -m bench.costs [--tasks 1000] [--runs 8]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
import uuid
from pathlib import Path

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
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()
    per_call(args.tasks)
    per_run(args.runs, "sound answers")
    per_run(args.runs, "weak answers (nano 30%, mini 10%: asks again, escalations)", WEAK)


def per_call(tasks: int) -> None:
    rng = random.Random(7)
    router = Router({"openai": OfflineProvider()})
    check = estimator()
    task_types = [*TASKS, "ad_hoc_question", "summarise_feedback"]
    calls = []
    for number in range(tasks):
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
        f"{tasks} tasks, inputs {min(len(c.messages[0]['content']) for c in calls)}-"
        f"{max(len(c.messages[0]['content']) for c in calls)} characters "
        f"(mean {statistics.mean(len(c.messages[0]['content']) for c in calls):.0f})"
    )
    print(f"  budget-check estimates (catalogue only): {tasks / check_seconds:8.0f} per s")
    print(f"  router pre-flight bounds:                {tasks / bound_seconds:8.0f} per s")
    for label, estimates in (("budget check", checks), ("router bound", bounds)):
        ratios = sorted(e / a for e, a in zip(estimates, actual, strict=True) if a)
        below = sum(e < a for e, a in zip(estimates, actual, strict=True))
        print(
            f"  {label:<13} estimate / actual: p50 {statistics.median(ratios):6.2f}  "
            f"p95 {ratios[int(0.95 * (len(ratios) - 1))]:6.2f}  max {ratios[-1]:7.2f}  "
            f"below actual: {below} (must be 0)"
        )


WEAK = '{"nano": 0.3, "mini": 0.1}'


def per_run(runs: int, label: str, weak: str = "{}") -> None:
    """Estimates of whole runs of the sample business against what each was charged, with
    the offline provider's answers weak at the rates `weak` gives."""
    # The emulator and the phases are imported here: the per-call figures need neither.
    from common.analysis import outcomes
    from common.analysis.admission import expected_run_cost
    from common.analysis.phases import run_phase
    from common.budget.usage import run_totals
    from common.models import PHASE_ORDER, BusinessInput
    from common.platform.settings import get_settings
    from common.runs import documents, lifecycle
    from common.tenants.businesses import Business, save_business
    from local import emulator

    sample = Path(__file__).resolve().parents[1] / "local" / "samples" / "tidewater.json"
    business = BusinessInput.model_validate(json.loads(sample.read_text()))
    firestore = emulator.start()
    os.environ.update(
        {
            "FIRESTORE_EMULATOR_HOST": firestore.host,
            "GOOGLE_CLOUD_PROJECT": f"bench-{uuid.uuid4().hex[:8]}",
            "LLM_OFFLINE": "1",
            "OFFLINE_LATENCY_MS": "0",
            "OFFLINE_WEAK_RATES": weak,
        }
    )
    get_settings.cache_clear()
    rows = []
    try:
        save_business(Business(business_id=business.business_id, tier="enterprise"))
        for _ in range(runs):
            outcomes.forget()  # what the runs before this one recorded
            run_id = uuid.uuid4().hex
            estimate = expected_run_cost(business, "enterprise") / 1e9
            documents.run_ref(run_id).create(
                documents.new_run_document(run_id, business, "enterprise")
            )
            lifecycle.transition(run_id, "start")
            for phase in PHASE_ORDER:
                run_phase(run_id, phase)
            actual = run_totals(run_id).cost_nanos / 1e9
            rows.append((estimate, actual))
    finally:
        firestore.stop()
    print(f"{runs} runs of the sample business (enterprise, offline provider, {label}):")
    for number, (estimate, actual) in enumerate(rows, 1):
        print(
            f"  run {number}: expected ${estimate:.6f}, charged ${actual:.6f}, "
            f"estimate / actual {estimate / actual:5.2f}"
        )
    learned = [e / a for e, a in rows[-3:]]
    print(
        f"  estimate / actual once learned (last 3 runs): max {max(learned):.2f} (target <= 1.5); "
        f"cold start (run 1): {rows[0][0] / rows[0][1]:.2f}"
    )


if __name__ == "__main__":
    main()
