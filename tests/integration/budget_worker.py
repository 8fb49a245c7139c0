"""One worker process of the multi-process budget test: reserve, "call", settle, report.

    python -m tests.integration.budget_worker BUSINESS_ID FIRST COUNT

Runs tasks FIRST .. FIRST+COUNT-1 against the real ledger (FIRESTORE_EMULATOR_HOST and
GOOGLE_CLOUD_PROJECT come from the environment), one JSON line per event on stdout:
{"task", "event": "granted" | "refused" | "settled", "amount", "cost"?, "reason"?}.
"""

from __future__ import annotations

import json
import random
import sys
import time

from common.budget.ledger import BudgetLedger
from common.spend.ledger import BudgetBusy, BudgetDenied
from common.spend.records import AttemptRecord, TokenUsage
from common.tenants.businesses import get_business

AMOUNT = 50_000_000  # $0.05 per task
HOLD_SECONDS = 0.6  # how long the "model call" takes


def say(**event: object) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def main() -> None:
    business_id, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(first)
    for task in range(first, first + count):
        key = f"task-{task}"
        ledger = BudgetLedger(get_business(business_id))  # a fresh copy, as each call reads it
        try:
            ledger.reserve(key=key, model="gpt-5-mini", tier="mini", upper_bound_nanos=AMOUNT)
        except (BudgetDenied, BudgetBusy) as refused:
            say(task=task, event="refused", amount=AMOUNT, reason=refused.reason)
            time.sleep(0.2)
            continue
        say(task=task, event="granted", amount=AMOUNT)
        time.sleep(HOLD_SECONDS)
        cost = rng.randint(AMOUNT // 2, AMOUNT)
        ledger.settle(
            AttemptRecord(
                key=key,
                task_type="positioning_analysis",
                model="gpt-5-mini",
                provider="offline",
                usage=TokenUsage(input_tokens=100, output_tokens=100),
                cost_nanos=cost,
                latency_ms=HOLD_SECONDS * 1000,
                fallback_used=False,
                ok=True,
            )
        )
        say(task=task, event="settled", amount=AMOUNT, cost=cost)


if __name__ == "__main__":
    main()
