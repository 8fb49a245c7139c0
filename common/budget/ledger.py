"""Budget enforcement that never overspends: reserve before every model call, settle after it.

Limits are escrow counters (`common.counters`): each of a business's day and month and the
platform's day is split into shard allowances that only atomic increments touch, so concurrent
reservations are exact without transactions and no counter document gets hot.

Reserve: one batch creates `reservations/{key}` and takes the amount from one shard of each
scope; it is granted if every shard stayed non-negative. Otherwise it is given back, headroom is
gathered from the other shards into one, and it is tried again; it is refused (with the reason
of the scope that has no room) when a scope as a whole has too little left.

Settle: deletes the reservation (precondition: unchanged) and turns its amount into the actual
cost, in one batch with the creation of `usage/{key}` (precondition: new): a settle delivered
twice is counted once. A reservation whose holder died is released by `release_expired` after
its TTL, as part of the next reservation, check or status of that business.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from pydantic import BaseModel

from common.budget import counters, usage
from common.budget.businesses import Business, get_business
from common.budget.counters import Scope, Totals, moved
from common.budget.limits import platform_limits
from common.llm import Router, get_router
from common.llm.base import NANOS_PER_USD, AttemptRecord, BudgetDenied, Message
from common.platform import log
from common.platform.settings import get_settings
from common.platform.store import db
from common.runs import documents as progress

RESERVATIONS = "reservations"
ALERTS = "budget_alerts"
STATUS = "budget_status"  # what clients may read: one document per business
WARNING_LEVELS = (75, 90, 100)
# Firestore's TTL policy deletes reservation documents at `purge_at`, long after both periods a
# reservation counts in have ended, so a TTL deletion can never leak budget.
PURGE_AFTER = dt.timedelta(days=40)
Clock = Callable[[], dt.datetime]
logger = logging.getLogger(__name__)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def day_key(now: dt.datetime) -> str:
    return now.strftime("%Y-%m-%d")


def month_key(now: dt.datetime) -> str:
    return now.strftime("%Y-%m")


def controls_ref() -> firestore.DocumentReference:
    """The operator kill switch: `{paused: bool, reason: str}`."""
    ref: firestore.DocumentReference = db().collection("platform").document("controls")
    return ref


def scopes_for(business: Business, now: dt.datetime) -> list[Scope]:
    """The business's day and month, and the platform's day, with their current limits."""
    limits = business.limits
    platform = platform_limits()
    cap = get_settings().platform_daily_cap_usd
    platform_cap = int(cap * NANOS_PER_USD) if cap is not None else platform.daily_cap_nanos
    bid = business.business_id
    return [
        Scope(
            f"{bid}:{day_key(now)}",
            "day",
            limits.daily_limit_nanos,
            limits.counter_shards,
            "daily_budget_exceeded",
        ),
        Scope(
            f"{bid}:{month_key(now)}",
            "month",
            limits.monthly_limit_nanos,
            limits.counter_shards,
            "monthly_budget_exceeded",
        ),
        Scope(
            f"platform:{day_key(now)}",
            "platform",
            platform_cap,
            platform.counter_shards,
            "platform_cap_reached",
        ),
    ]


def _paused(controls: dict[str, dict[str, Any]]) -> BudgetDenied | None:
    switch = controls.get(controls_ref().path, {})
    if switch.get("paused"):
        return BudgetDenied(
            "platform_paused", f"RaptorFlow is paused by an operator: {switch.get('reason', '')}"
        )
    return None


def _no_room(scope: Scope, totals: Totals, amount: int) -> BudgetDenied:
    label = {"day": "daily budget", "month": "monthly budget", "platform": "platform daily cap"}
    left = max(totals.headroom, 0) / 1e9
    return BudgetDenied(
        scope.reason,
        f"{label[scope.kind]} exceeded: ${amount / 1e9:.6f} needed, ${left:.6f} of "
        f"${scope.limit_nanos / 1e9:.2f} left ({scope.name})",
    )


@dataclass(frozen=True)
class Held:
    """A reservation: how much, and which counter shards it was taken from."""

    key: str
    amount: int
    counters: list[str]

    @classmethod
    def read(cls, key: str) -> Held | None:
        snapshot = db().collection(RESERVATIONS).document(key).get()
        return cls.from_snapshot(snapshot) if snapshot.exists else None

    @classmethod
    def from_snapshot(cls, snapshot: firestore.DocumentSnapshot[Any]) -> Held:
        data = snapshot.to_dict() or {}
        return cls(snapshot.id, int(data["amount_nanos"]), list(data["counters"]))

    def end_in(self, batch: firestore.WriteBatch, **change: int) -> None:
        """Delete the reservation and apply `change` to its shards in `batch`, which then fails
        unless the reservation still exists: a reservation ends (settled, given back, expired)
        exactly once."""
        ref = db().collection(RESERVATIONS).document(self.key)
        batch.delete(ref, option=db().write_option(exists=True))
        for counter in self.counters:
            shard = db().collection(counters.COUNTERS).document(counter)
            batch.set(shard, moved(**change), merge=True)


class BudgetLedger:
    """The `Ledger` of one business's model calls (within one run phase, when `run_id` is set)."""

    def __init__(
        self,
        business: Business,
        *,
        run_id: str | None = None,
        phase: str | None = None,
        clock: Clock = utc_now,
        router: Router | None = None,
    ) -> None:
        self.business = business
        self.run_id = run_id
        self.phase = phase
        self.clock = clock
        self.router = router
        # What this ledger reserved and has not settled: settling it needs no extra read.
        self._held: dict[str, Held] = {}

    # --- reserve ---------------------------------------------------------------------------

    def reserve(self, *, key: str, model: str, upper_bound_nanos: int) -> None:
        """Hold `upper_bound_nanos` for attempt `key` against every limit, or raise BudgetDenied."""
        if not isinstance(upper_bound_nanos, int) or upper_bound_nanos < 0:
            raise ValueError(
                f"a reservation must be a whole number of nanos, not {upper_bound_nanos!r}"
            )
        tier = (self.router or get_router()).catalogue.model(model).tier
        if tier not in self.business.limits.model_tiers:
            raise BudgetDenied(
                "model_tier_restricted",
                f"the {self.business.tier} tier may not use {model} ({tier} models)",
            )
        now = self.clock()
        scopes, controls = counters.prepare(
            scopes_for(self.business, now),
            [controls_ref()],
            max_age=get_settings().budget_cache_seconds,
        )
        if (paused := _paused(controls)) is not None:
            raise paused
        shards = {scope.name: scope.random_shard() for scope in scopes}
        swept = False
        for attempt in range(4):
            short = self._place(key, model, upper_bound_nanos, scopes, shards, now)
            if short is None:
                return
            target = counters.consolidate(short, upper_bound_nanos)
            if target is None and not swept:
                swept = True  # reservations whose holder died may be all that stands in the way
                if release_expired(self.business.business_id, now) and attempt < 3:
                    continue
            if target is None or attempt == 3:
                raise _no_room(short, counters.read([short])[short.name], upper_bound_nanos)
            shards[short.name] = target

    def _place(
        self,
        key: str,
        model: str,
        amount: int,
        scopes: list[Scope],
        shards: dict[str, int],
        now: dt.datetime,
    ) -> Scope | None:
        """Take `amount` from the chosen shard of each scope; None if granted, else (having given
        it all back) the first scope whose shard had too little."""
        refs = [scope.ref(shards[scope.name]) for scope in scopes]
        batch = db().batch()
        batch.create(
            db().collection(RESERVATIONS).document(key),
            {
                "business_id": self.business.business_id,
                "run_id": self.run_id,
                "phase": self.phase,
                "model": model,
                "amount_nanos": amount,
                "counters": [ref.id for ref in refs],
                "created_at": now,
                "expires_at": now + dt.timedelta(seconds=get_settings().reservation_ttl_seconds),
                "purge_at": now + PURGE_AFTER,
            },
        )
        for ref in refs:
            batch.set(ref, moved(headroom=-amount, reserved=amount), merge=True)
        try:
            results = batch.commit()
        except exceptions.AlreadyExists:
            return None  # this key holds its reservation already
        held = Held(key, amount, [ref.id for ref in refs])
        for scope, result in zip(scopes, results[1:], strict=True):
            if counters.headroom_after(result) < 0:
                _give_back(held)
                return scope
        self._held[key] = held
        return None

    # --- settle ----------------------------------------------------------------------------

    def settle(self, attempt: AttemptRecord) -> None:
        """Turn the reservation of `attempt.key` into its actual cost, exactly once."""
        reservation = self._held.pop(attempt.key, None) or Held.read(attempt.key)
        try:
            self._settle_batch(attempt, reservation).commit()
        except exceptions.AlreadyExists:
            return  # settled before: counted once
        except (exceptions.FailedPrecondition, exceptions.NotFound):
            # The reservation expired and was released meanwhile: record the cost without it.
            reservation = None
            try:
                self._settle_batch(attempt, None).commit()
            except exceptions.AlreadyExists:
                return
        held = reservation.amount if reservation else 0
        logger.log(
            logging.ERROR if attempt.cost_nanos > held else logging.INFO,
            "usage settled"
            if attempt.cost_nanos <= held
            else "usage settled above its reservation",
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
                reserved_usd=held / 1e9,
                latency_ms=attempt.latency_ms,
                ok=attempt.ok,
                fallback_used=attempt.fallback_used,
            ),
        )
        if attempt.cost_nanos and _refresh_due(self.business.business_id):
            refresh(self.business, self.clock(), run_id=self.run_id, phase=self.phase)

    def _settle_batch(
        self, attempt: AttemptRecord, reservation: Held | None
    ) -> firestore.WriteBatch:
        now = self.clock()
        batch = db().batch()
        batch.create(
            usage.usage_ref(attempt.key),
            usage.usage_document(
                attempt,
                business_id=self.business.business_id,
                tier=self.business.tier,
                run_id=self.run_id,
                phase=self.phase,
                now=now,
            ),
        )
        if reservation is not None:
            reservation.end_in(
                batch,
                headroom=reservation.amount - attempt.cost_nanos,
                reserved=-reservation.amount,
                spent=attempt.cost_nanos,
            )
        else:
            # Spent without a reservation (it expired): shard 0's headroom may go negative,
            # which refuses reservations there until headroom gathered from the others covers it.
            change = moved(headroom=-attempt.cost_nanos, spent=attempt.cost_nanos)
            for scope in scopes_for(self.business, now):
                batch.set(scope.ref(0), change, merge=True)
        if self.run_id is not None:
            run_fields: dict[str, Any] = {"cost_nanos": firestore.Increment(attempt.cost_nanos)}
            if attempt.ok:
                run_fields["models_used"] = firestore.ArrayUnion([attempt.model])
                run_fields["providers_used"] = firestore.ArrayUnion([attempt.provider])
            batch.update(progress.run_ref(self.run_id), run_fields)
        return batch


def _give_back(reservation: Held) -> bool:
    """End a reservation without spending it (False if it had ended before)."""
    batch = db().batch()
    reservation.end_in(batch, headroom=reservation.amount, reserved=-reservation.amount)
    try:
        batch.commit()
    except (exceptions.FailedPrecondition, exceptions.NotFound):
        return False
    return True


def release_expired(business_id: str, now: dt.datetime) -> int:
    """Release the reservations of `business_id` whose holder did not settle before their TTL."""
    query = (
        db()
        .collection(RESERVATIONS)
        .where(filter=FieldFilter("business_id", "==", business_id))
        .where(filter=FieldFilter("expires_at", "<", now))
        .limit(100)
    )
    released = 0
    for snapshot in query.stream():
        if _give_back(Held.from_snapshot(snapshot)):
            released += 1
            logger.warning(
                "expired reservation released",
                extra=log.fields(
                    event="reservation_expired", business_id=business_id, key=snapshot.id
                ),
            )
    return released


# --- Checks and status ------------------------------------------------------------------------


class BudgetDecision(BaseModel):
    """The answer of a budget check (which reserves nothing)."""

    allowed: bool
    reason: str | None = None
    message: str
    business_id: str
    tier: str
    task_type: str
    model: str
    downgraded_from: str | None = None
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


def check_budget_before_task(
    business_id: str,
    task_type: str,
    messages: list[Message],
    *,
    router: Router | None = None,
    allow_downgrade: bool = True,
    amount_nanos: int | None = None,
    schema: type[BaseModel] | None = None,
    now: dt.datetime | None = None,
) -> tuple[bool, BudgetDecision]:
    """Would a task of `task_type` on `messages` fit in the business's budget right now?

    The estimate is `amount_nanos` when given, else the router's pre-flight upper bound for the
    model the task would use (answering with `schema`, when the task has one).
    With `allow_downgrade=False`, a task that needs a model tier the business may not use is
    refused (`model_tier_restricted`) instead of running on a smaller model.

    Raises:
        NotFound: the business is not registered (code `unknown_business`).
    """
    business = get_business(business_id)
    router = router or get_router()
    now = now or utc_now()
    release_expired(business_id, now)
    allowed_tiers = business.limits.model_tiers
    decision = router.route(task_type, messages, allowed_tiers=allowed_tiers, schema=schema)
    estimate = amount_nanos
    if estimate is None:
        estimate = router.upper_bound(decision, messages, schema)
    scopes, controls = counters.prepare(scopes_for(business, now), [controls_ref()])
    totals = counters.read(scopes)
    denial = _paused(controls) or next(
        (
            _no_room(s, totals[s.name], estimate)
            for s in scopes
            if totals[s.name].headroom < estimate
        ),
        None,
    )
    if decision.downgraded_from and not allow_downgrade:
        denial = BudgetDenied(
            "model_tier_restricted",
            f"{task_type} needs {decision.downgraded_from}, "
            f"which the {business.tier} tier may not use",
        )
    day, month = scopes[0], scopes[1]
    result = BudgetDecision(
        allowed=denial is None,
        reason=denial.reason if denial else None,
        message=str(denial)
        if denial
        else f"{task_type} on {decision.model} may cost up to ${estimate / 1e9:.6f}",
        business_id=business_id,
        tier=business.tier,
        task_type=task_type,
        model=decision.model,
        downgraded_from=decision.downgraded_from,
        estimate_usd=estimate / 1e9,
        today_remaining_usd=max(totals[day.name].headroom, 0) / 1e9,
        month_remaining_usd=max(totals[month.name].headroom, 0) / 1e9,
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
    warning_level: int | None  # the highest threshold reached today or this month: 75, 90, 100
    month_spent: float
    monthly_limit: float
    month_remaining: float
    projected_monthly: float


def warning_level(used: int, limit: int) -> int | None:
    percent = 100 * used / limit
    return next((level for level in reversed(WARNING_LEVELS) if percent >= level), None)


# When this process last refreshed each business's status: (project, business) -> monotonic time.
_refreshed: dict[tuple[str, str], float] = {}


def _refresh_due(business_id: str) -> bool:
    """At most one refresh per business per `budget_refresh_seconds` in this process, so that
    busy businesses do not pay a read of every counter shard on every settle."""
    key = (db().project, business_id)
    now = time.monotonic()
    if now - _refreshed.get(key, -math.inf) < get_settings().budget_refresh_seconds:
        return False
    _refreshed[key] = now
    return True


def refresh(
    business: Business,
    now: dt.datetime,
    *,
    run_id: str | None = None,
    phase: str | None = None,
) -> BudgetStatus:
    """Compute the business's budget status, publish it to `budget_status/{business_id}` for its
    clients, and record each 75/90/100% threshold of the day and month once per period (an
    alert document, an event on `run_id`, a WARNING log line)."""
    (day, month), _ = counters.prepare(scopes_for(business, now)[:2])
    totals = counters.read([day, month])
    today, this_month = totals[day.name], totals[month.name]
    levels = [
        level
        for level in (
            warning_level(today.spent, day.limit_nanos),
            warning_level(this_month.spent, month.limit_nanos),
        )
        if level is not None
    ]
    status = BudgetStatus(
        business_id=business.business_id,
        tier=business.tier,
        daily_limit=day.limit_nanos / 1e9,
        today_spent=today.spent / 1e9,
        today_reserved=today.reserved / 1e9,
        today_remaining=max(today.headroom, 0) / 1e9,
        percent_used=round(100 * (day.limit_nanos - today.headroom) / day.limit_nanos, 2),
        warning_level=max(levels) if levels else None,
        month_spent=this_month.spent / 1e9,
        monthly_limit=month.limit_nanos / 1e9,
        month_remaining=max(this_month.headroom, 0) / 1e9,
        projected_monthly=round(usage.projected_month(this_month.spent / 1e9, now), 6),
    )
    db().collection(STATUS).document(business.business_id).set(
        {**status.model_dump(mode="json"), "updated_at": firestore.SERVER_TIMESTAMP}
    )
    for scope in (day, month):
        spent = totals[scope.name].spent
        for level in WARNING_LEVELS:
            if 100 * spent >= level * scope.limit_nanos:
                _record_warning(business, scope, level, spent, run_id=run_id, phase=phase)
    return status


def _record_warning(
    business: Business,
    scope: Scope,
    level: int,
    spent: int,
    *,
    run_id: str | None,
    phase: str | None,
) -> None:
    bid = business.business_id
    period = "today" if scope.kind == "day" else "this month"
    budget_name = "daily budget" if scope.kind == "day" else "monthly budget"
    message = (
        f"{bid} passed {level}% of its {budget_name} {period}: "
        f"${spent / 1e9:.4f} of ${scope.limit_nanos / 1e9:.2f} spent"
        + ("; new tasks are blocked until the period rolls over" if level == 100 else "")
    )
    batch = db().batch()
    batch.create(
        db().collection(ALERTS).document(f"{scope.name}:{level}"),
        {
            "business_id": bid,
            "scope": scope.name,
            "kind": scope.kind,
            "level": level,
            "spent_nanos": spent,
            "limit_nanos": scope.limit_nanos,
            "run_id": run_id,
            "message": message,
            "at": firestore.SERVER_TIMESTAMP,
        },
    )
    if run_id is not None:
        run = progress.run_ref(run_id)
        batch.create(
            run.collection(progress.EVENTS).document(f"budget.{scope.name}.{level}"),
            progress.event_document(
                "budget_warning",
                phase=phase,
                step=None,
                percent=0,
                data={"level": level, "kind": scope.kind, "message": message},
            ),
        )
        batch.update(run, {"warnings": firestore.ArrayUnion([message])})
    try:
        batch.commit()
    except exceptions.AlreadyExists:
        return  # recorded once per period already
    logger.warning(
        message,
        extra=log.fields(
            event="budget_warning",
            business_id=bid,
            tier=business.tier,
            scope=scope.name,
            kind=scope.kind,
            level=level,
            run_id=run_id,
        ),
    )


def get_budget_status(business_id: str, *, now: dt.datetime | None = None) -> BudgetStatus:
    """Where a business stands against its daily and monthly limits (and publish it).

    Raises:
        NotFound: the business is not registered (code `unknown_business`).
    """
    business = get_business(business_id)
    now = now or utc_now()
    release_expired(business_id, now)
    return refresh(business, now)


def set_paused(paused: bool, reason: str = "") -> None:
    """The operator kill switch: while paused, every reservation and check is refused (every
    instance notices within `budget_cache_seconds`; this process at once)."""
    counters.forget(controls_ref())
    controls_ref().set(
        {"paused": paused, "reason": reason, "updated_at": firestore.SERVER_TIMESTAMP}
    )
