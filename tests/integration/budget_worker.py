"""One worker process of the multi-process budget tests: reserve, "call", settle, report.

    python -m tests.integration.budget_worker '{"businesses": [...], "first": 0, "count": 10}'

Runs tasks `first` .. `first+count-1` against the real ledger (FIRESTORE_EMULATOR_HOST and
GOOGLE_CLOUD_PROJECT come from the environment), in `threads` threads, round-robin over
`businesses`, one JSON line per event on stdout: {"task", "business", "event": "granted" |
"refused" | "settled", "amount", "cost"?, "reason"?, "at"}. Other settings: `amount` (nanos),
`hold` (seconds a "model call" takes), `tier` and `model`, `over` (a share of calls billed twice
their hold), `clock` (an ISO time the worker's clock starts at, instead of now, and runs on
from) and `seed`. At the end the worker gives its blocks back, as a request's end does.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import sys
import threading
import time
from typing import Any

from common.budget.escrow import escrow
from common.budget.ledger import BudgetLedger
from common.spend.ledger import BudgetBusy, BudgetDenied
from common.spend.records import AttemptRecord, TokenUsage
from common.tenants.businesses import get_business

_lock = threading.Lock()


def say(**event: object) -> None:
    line = json.dumps({**event, "at": time.time()}) + "\n"
    with _lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def main() -> None:
    config: dict[str, Any] = json.loads(sys.argv[1])
    businesses: list[str] = config["businesses"]
    first, count = int(config["first"]), int(config["count"])
    amount = int(config.get("amount", 50_000_000))
    hold = float(config.get("hold", 0.6))
    tier, model = config.get("tier", "mini"), config.get("model", "gpt-5-mini")
    over = float(config.get("over", 0.0))
    started, wall = time.monotonic(), config.get("clock")
    origin = dt.datetime.fromisoformat(wall) if wall else None

    def clock() -> dt.datetime:
        if origin is None:
            return dt.datetime.now(dt.UTC)
        return origin + dt.timedelta(seconds=time.monotonic() - started)

    tasks = list(range(first, first + count))
    threads = max(1, int(config.get("threads", 1)))

    def run(mine: list[int]) -> None:
        rng = random.Random(int(config.get("seed", first)) * 1000 + mine[0] if mine else 0)
        for task in mine:
            business_id = businesses[task % len(businesses)]
            key = f"task-{task}"
            # A fresh copy of the business for each call, as each request reads it.
            ledger = BudgetLedger(get_business(business_id), clock=clock)
            try:
                ledger.reserve(key=key, model=model, tier=tier, upper_bound_nanos=amount)
            except (BudgetDenied, BudgetBusy) as refused:
                say(task=task, business=business_id, event="refused", amount=amount,
                    reason=refused.reason)  # fmt: skip
                time.sleep(0.2)
                continue
            say(task=task, business=business_id, event="granted", amount=amount)
            time.sleep(hold)
            cost = 2 * amount if rng.random() < over else rng.randint(amount // 2, amount)
            ledger.settle(
                AttemptRecord(
                    key=key,
                    task_type="positioning_analysis",
                    model=model,
                    provider="offline",
                    usage=TokenUsage(input_tokens=100, output_tokens=100),
                    cost_nanos=cost,
                    latency_ms=hold * 1000,
                    fallback_used=False,
                    ok=True,
                )
            )
            say(task=task, business=business_id, event="settled", amount=amount, cost=cost)

    workers = [
        threading.Thread(target=run, args=(tasks[index::threads],)) for index in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    escrow.release()
    say(event="done")


if __name__ == "__main__":
    main()
