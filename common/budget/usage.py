"""Usage records (`usage/{attempt_key}`, one per physical model call) and analytics over them.

Records are written by `common.budget.ledger` inside the settle batch, so a record exists exactly
when its cost was counted. Analytics read Firestore, not memory: function instances are ephemeral.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections import Counter, defaultdict
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from common.llm.base import AttemptRecord
from common.platform.store import db

USAGE = "usage"


def usage_ref(key: str) -> firestore.DocumentReference:
    return db().collection(USAGE).document(key)


def usage_document(
    attempt: AttemptRecord,
    *,
    business_id: str,
    tier: str,
    run_id: str | None,
    phase: str | None,
    day: str,
    month: str,
    now: dt.datetime,
) -> dict[str, Any]:
    """The stored form of one settled attempt, counted in `day` and `month` (its
    reservation's periods, whenever it settles)."""
    return {
        **attempt.model_dump(mode="json", exclude={"usage"}),
        **attempt.usage.model_dump(),
        "business_id": business_id,
        "tier": tier,
        "run_id": run_id,
        "phase": phase,
        "day": day,
        "month": month,
        "created_at": now,
    }


def _records(**equals: str) -> list[dict[str, Any]]:
    query: firestore.Query = db().collection(USAGE)  # type: ignore[assignment]
    for field, value in equals.items():
        query = query.where(filter=FieldFilter(field, "==", value))
    return [snap.to_dict() or {} for snap in query.stream()]


def run_cost_by_phase(run_id: str) -> dict[str, int]:
    """Nano-dollars spent per phase of a run (every physical attempt, fallbacks included)."""
    totals: dict[str, int] = defaultdict(int)
    for record in _records(run_id=run_id):
        totals[record["phase"]] += int(record["cost_nanos"])
    return dict(totals)


def get_cost_by_task(business_id: str, month: str) -> dict[str, float]:
    """USD spent per task type by a business in a month (``YYYY-MM``)."""
    totals: dict[str, int] = defaultdict(int)
    for record in _records(business_id=business_id, month=month):
        totals[record["task_type"]] += int(record["cost_nanos"])
    return {task: nanos / 1e9 for task, nanos in totals.items()}


def get_daily_cost(business_id: str, day: str) -> float:
    """USD spent by a business on a UTC day (``YYYY-MM-DD``)."""
    return sum(int(r["cost_nanos"]) for r in _records(business_id=business_id, day=day)) / 1e9


def projected_month(spent_usd: float, now: dt.datetime) -> float:
    """Month-to-date spend extrapolated to the whole month at the month-to-date daily rate
    (the first day counts as a whole day, so an early spike is not multiplied by 30 000)."""
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    elapsed_days = max((now - start).total_seconds() / 86400, 1.0)
    return spent_usd * calendar.monthrange(now.year, now.month)[1] / elapsed_days


def project_monthly_cost(business_id: str, now: dt.datetime) -> float:
    """USD a business will have spent by the end of `now`'s month at its current rate."""
    records = _records(business_id=business_id, month=now.strftime("%Y-%m"))
    return projected_month(sum(int(r["cost_nanos"]) for r in records) / 1e9, now)


def model_distribution(business_id: str, month: str) -> dict[str, float]:
    """Share of successful calls answered by each model in a month (sums to 1)."""
    counts = Counter(
        r["model"] for r in _records(business_id=business_id, month=month) if r.get("ok")
    )
    total = sum(counts.values())
    return {model: count / total for model, count in counts.items()} if total else {}
