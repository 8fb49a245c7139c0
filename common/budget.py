"""Budget enforcement: reserve before every model call, settle after it, never overspend.

Counters live in `budget_periods/{business_id}:{period}` (one document per UTC day and per
calendar month) with `committed_nanos` = spent + reserved. A reservation is one atomic batch:
create `reservations/{key}` and increment `committed_nanos` of the day and the month; the commit
returns the incremented values (`transform_results`), and if either exceeds its limit a second
batch deletes the reservation and takes the increment back. A grant therefore only happens when
everything granted and spent fits under the limit at that instant; see
docs/decisions/006-budget-counters.md for the argument.

Settling deletes the reservation (precondition: it exists) and moves its amount from reserved to
spent in one batch, with the usage record created under the attempt's key (precondition: it does
not exist): a settle delivered twice is counted once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from google.api_core import exceptions
from google.cloud import firestore
from pydantic import BaseModel

from common import log, usage
from common.businesses import Business, get_business
from common.llm import Router, get_router
from common.llm.base import AttemptRecord, BudgetDenied, Message
from common.progress import run_ref
from common.store import db

PERIODS = "budget_periods"
RESERVATIONS = "reservations"
RESERVATION_TTL = dt.timedelta(minutes=30)
Clock = Callable[[], dt.datetime]
logger = logging.getLogger(__name__)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def day_key(now: dt.datetime) -> str:
    return now.strftime("%Y-%m-%d")


def month_key(now: dt.datetime) -> str:
    return now.strftime("%Y-%m")


def period_ref(business_id: str, period: str) -> firestore.DocumentReference:
    return db().collection(PERIODS).document(f"{business_id}:{period}")


class BudgetLedger:
    """The `Ledger` of one business's model calls within one run phase."""

    def __init__(
        self, business: Business, *, run_id: str, phase: str, clock: Clock = utc_now
    ) -> None:
        self.business = business
        self.run_id = run_id
        self.phase = phase
        self.clock = clock

    def _counters(self, now: dt.datetime) -> list[tuple[firestore.DocumentReference, int, str]]:
        limits = self.business.limits
        bid = self.business.business_id
        return [
            (period_ref(bid, day_key(now)), limits.daily_limit_nanos, "daily_budget_exceeded"),
            (
                period_ref(bid, month_key(now)),
                limits.monthly_limit_nanos,
                "monthly_budget_exceeded",
            ),
        ]

    def reserve(self, *, key: str, model: str, upper_bound_nanos: int) -> None:
        """Hold `upper_bound_nanos` against today's and this month's limits, or raise."""
        if upper_bound_nanos < 0:
            raise ValueError("a reservation cannot be negative")
        now = self.clock()
        counters = self._counters(now)
        batch = db().batch()
        batch.create(
            db().collection(RESERVATIONS).document(key),
            {
                "business_id": self.business.business_id,
                "run_id": self.run_id,
                "phase": self.phase,
                "model": model,
                "amount_nanos": upper_bound_nanos,
                "periods": [ref.id for ref, _, _ in counters],
                "created_at": now,
                "expires_at": now + RESERVATION_TTL,
            },
        )
        for ref, _, _ in counters:
            batch.set(ref, _moved(upper_bound_nanos, reserved=upper_bound_nanos), merge=True)
        try:
            results = batch.commit()
        except exceptions.AlreadyExists:
            return  # this key already holds its reservation
        for (ref, limit, reason), result in zip(counters, results[1:], strict=True):
            committed = int(result.transform_results[_COMMITTED].integer_value)
            if committed > limit:
                self._release(key, counters, upper_bound_nanos)
                raise BudgetDenied(
                    reason,
                    f"{reason.replace('_', ' ')}: ${committed / 1e9:.6f} would exceed "
                    f"the limit of ${limit / 1e9:.2f} ({ref.id})",
                )

    def _release(
        self,
        key: str,
        counters: list[tuple[firestore.DocumentReference, int, str]],
        amount: int,
    ) -> None:
        batch = db().batch()
        batch.delete(
            db().collection(RESERVATIONS).document(key), option=db().write_option(exists=True)
        )
        for ref, _, _ in counters:
            batch.set(ref, _moved(-amount, reserved=-amount), merge=True)
        with contextlib.suppress(exceptions.NotFound):  # released already
            batch.commit()

    def settle(self, attempt: AttemptRecord) -> None:
        """Turn the reservation of `attempt.key` into its actual cost, exactly once."""
        reservation = db().collection(RESERVATIONS).document(attempt.key).get()
        try:
            self._settle_batch(attempt, reservation if reservation.exists else None).commit()
        except exceptions.AlreadyExists:
            return  # settled before: counted once
        except (exceptions.FailedPrecondition, exceptions.NotFound):
            # The reservation expired and was released meanwhile: record the cost without it.
            try:
                self._settle_batch(attempt, None).commit()
            except exceptions.AlreadyExists:
                return
        logger.info(
            "usage settled",
            extra=log.fields(
                event="usage_settled",
                business_id=self.business.business_id,
                tier=self.business.tier,
                run_id=self.run_id,
                phase=self.phase,
                task_type=attempt.task_type,
                model=attempt.model,
                provider=attempt.provider,
                cost_usd=attempt.cost_nanos / 1e9,
                latency_ms=attempt.latency_ms,
                ok=attempt.ok,
                fallback_used=attempt.fallback_used,
            ),
        )

    def _settle_batch(
        self, attempt: AttemptRecord, reservation: firestore.DocumentSnapshot[Any] | None
    ) -> firestore.WriteBatch:
        now = self.clock()
        bid = self.business.business_id
        batch = db().batch()
        batch.create(
            usage.usage_ref(attempt.key),
            usage.usage_document(
                attempt,
                business_id=bid,
                tier=self.business.tier,
                run_id=self.run_id,
                phase=self.phase,
                now=now,
            ),
        )
        reserved = 0
        periods = [f"{bid}:{day_key(now)}", f"{bid}:{month_key(now)}"]
        if reservation is not None:
            held = reservation.to_dict() or {}
            reserved, periods = int(held["amount_nanos"]), list(held["periods"])
            batch.delete(
                reservation.reference,
                option=db().write_option(last_update_time=reservation.update_time),
            )
        for period in periods:
            batch.set(
                db().collection(PERIODS).document(period),
                _moved(attempt.cost_nanos - reserved, reserved=-reserved, spent=attempt.cost_nanos),
                merge=True,
            )
        run_fields: dict[str, Any] = {"cost_nanos": firestore.Increment(attempt.cost_nanos)}
        if attempt.ok:
            run_fields["models_used"] = firestore.ArrayUnion([attempt.model])
            run_fields["providers_used"] = firestore.ArrayUnion([attempt.provider])
        batch.update(run_ref(self.run_id), run_fields)
        return batch


def _moved(committed: int, *, reserved: int = 0, spent: int = 0) -> dict[str, Any]:
    return {
        "committed_nanos": firestore.Increment(committed),
        "reserved_nanos": firestore.Increment(reserved),
        "spent_nanos": firestore.Increment(spent),
        "updated_at": firestore.SERVER_TIMESTAMP,
    }


# Firestore returns transform results in field-path order; this is where committed_nanos lands.
_COMMITTED = sorted(_moved(0)).index("committed_nanos")


class BudgetDecision(BaseModel):
    """The answer of a budget check (never reserves anything)."""

    allowed: bool
    reason: str | None = None
    message: str
    business_id: str
    tier: str
    task_type: str
    model: str
    estimate_usd: float
    today_remaining_usd: float | None
    month_remaining_usd: float | None

    @classmethod
    def free(cls, business_id: str, tier: str, task_type: str) -> BudgetDecision:
        """The decision for work already done: replaying it costs nothing."""
        return cls(
            allowed=True,
            message="already done: replaying costs nothing",
            business_id=business_id,
            tier=tier,
            task_type=task_type,
            model="",
            estimate_usd=0.0,
            today_remaining_usd=None,
            month_remaining_usd=None,
        )


def committed_nanos(business_id: str, period: str) -> int:
    snapshot = period_ref(business_id, period).get()
    return int((snapshot.to_dict() or {}).get("committed_nanos", 0)) if snapshot.exists else 0


def check_budget_before_task(
    business_id: str,
    task_type: str,
    messages: list[Message],
    *,
    router: Router | None = None,
    now: dt.datetime | None = None,
) -> tuple[bool, BudgetDecision]:
    """Would a task of `task_type` on `messages` fit in the business's budget right now?

    Raises:
        NotFound: the business is not registered (code `unknown_business`).
    """
    business = get_business(business_id)
    router = router or get_router()
    now = now or utc_now()
    limits = business.limits
    decision = router.route(task_type, messages, allowed_tiers=limits.model_tiers)
    estimate = router.estimate(task_type, messages, allowed_tiers=limits.model_tiers)
    today_left = limits.daily_limit_nanos - committed_nanos(business_id, day_key(now))
    month_left = limits.monthly_limit_nanos - committed_nanos(business_id, month_key(now))
    reason = None
    if estimate > today_left:
        reason = "daily_budget_exceeded"
    elif estimate > month_left:
        reason = "monthly_budget_exceeded"
    message = (
        f"{task_type} on {decision.model} may cost up to ${estimate / 1e9:.6f}; "
        f"${max(today_left, 0) / 1e9:.6f} left today, ${max(month_left, 0) / 1e9:.6f} this month"
    )
    result = BudgetDecision(
        allowed=reason is None,
        reason=reason,
        message=message,
        business_id=business_id,
        tier=business.tier,
        task_type=task_type,
        model=decision.model,
        estimate_usd=estimate / 1e9,
        today_remaining_usd=today_left / 1e9,
        month_remaining_usd=month_left / 1e9,
    )
    return result.allowed, result


class BudgetStatus(BaseModel):
    """A business's budget right now (the seed's `get_budget_status`), amounts in USD."""

    business_id: str
    tier: str
    daily_limit: float
    today_spent: float
    today_reserved: float
    today_remaining: float
    percent_used: float
    warning_level: int | None  # the highest threshold crossed today or this month: 75, 90, 100
    month_spent: float
    monthly_limit: float
    month_remaining: float
    projected_monthly: float


def _period(business_id: str, period: str) -> dict[str, int]:
    snapshot = period_ref(business_id, period).get()
    data = snapshot.to_dict() or {} if snapshot.exists else {}
    return {
        key: int(data.get(key, 0)) for key in ("committed_nanos", "spent_nanos", "reserved_nanos")
    }


def warning_level(used: int, limit: int) -> int | None:
    percent = 100 * used / limit
    return next((level for level in (100, 90, 75) if percent >= level), None)


def get_budget_status(business_id: str, *, now: dt.datetime | None = None) -> BudgetStatus:
    """Where a business stands against its daily and monthly limits.

    Raises:
        NotFound: the business is not registered (code `unknown_business`).
    """
    business = get_business(business_id)
    now = now or utc_now()
    limits = business.limits
    day = _period(business_id, day_key(now))
    month = _period(business_id, month_key(now))
    levels = [
        level
        for level in (
            warning_level(day["committed_nanos"], limits.daily_limit_nanos),
            warning_level(month["committed_nanos"], limits.monthly_limit_nanos),
        )
        if level is not None
    ]
    return BudgetStatus(
        business_id=business_id,
        tier=business.tier,
        daily_limit=limits.daily_limit_nanos / 1e9,
        today_spent=day["spent_nanos"] / 1e9,
        today_reserved=day["reserved_nanos"] / 1e9,
        today_remaining=max(limits.daily_limit_nanos - day["committed_nanos"], 0) / 1e9,
        percent_used=round(100 * day["committed_nanos"] / limits.daily_limit_nanos, 2),
        warning_level=max(levels) if levels else None,
        month_spent=month["spent_nanos"] / 1e9,
        monthly_limit=limits.monthly_limit_nanos / 1e9,
        month_remaining=max(limits.monthly_limit_nanos - month["committed_nanos"], 0) / 1e9,
        projected_monthly=round(usage.projected_month(month["spent_nanos"] / 1e9, now), 6),
    )
