"""Spending through the real ledger, for tests and benchmarks: a model call's record, a clock
to move, and earlier spending of a business."""

from __future__ import annotations

import datetime as dt
import uuid

from common.budget.ledger import BudgetLedger, utc_now
from common.spend.records import AttemptRecord, TokenUsage
from common.tenants.businesses import Business


class Clock:
    """An injectable UTC clock that a test moves by hand."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def attempt(
    key: str,
    cost_nanos: int,
    *,
    model: str = "gpt-5-mini",
    task_type: str = "positioning_analysis",
) -> AttemptRecord:
    """A successful offline model call `key` that cost `cost_nanos`."""
    return AttemptRecord(
        key=key,
        task_type=task_type,
        model=model,
        provider="offline",
        usage=TokenUsage(input_tokens=1000, output_tokens=500),
        cost_nanos=cost_nanos,
        latency_ms=10.0,
        fallback_used=False,
        ok=True,
    )


def spend(
    business: Business,
    nanos: int,
    *,
    model: str = "gpt-5-mini",
    tier: str = "mini",
    when: dt.datetime | None = None,
) -> None:
    """Earlier spending: one model call of `nanos` (at `when`, default now), reserved and
    settled through the real ledger."""
    ledger = BudgetLedger(business, clock=(lambda: when) if when else utc_now)
    key = f"earlier-{uuid.uuid4().hex}"
    ledger.reserve(key=key, model=model, tier=tier, upper_bound_nanos=nanos)  # type: ignore[arg-type]
    ledger.settle(attempt(key, nanos, model=model, task_type="general"))
