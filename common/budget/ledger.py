"""The ledger every model call reserves on before it runs and settles on after it.

Reserve: one batch creates `reservations/{key}` and takes the amount from one shard of each
scope (`common.budget.counters`); it is granted if every shard stayed non-negative. Otherwise it
is given back, headroom is gathered from the other shards into one, and it is tried again; it is
refused (with the reason of the scope that has no room) when a scope as a whole has too little.

Settle: deletes the reservation (precondition: unchanged) and turns its amount into the actual
cost, in one batch with the creation of `usage/{key}` (precondition: new): a settle delivered
twice is counted once. A reservation whose holder died is released by `release_expired` after
its TTL, as part of the next reservation, check or status of that business.

The ledger knows nothing of runs: a caller that records the spend elsewhere in the same batch
(the run document) passes a `Recorder`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from google.api_core import exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from common.budget import counters, status, usage
from common.budget.businesses import Business
from common.budget.controls import controls_ref, paused
from common.budget.counters import Scope, Totals, moved
from common.llm.base import AttemptRecord, BudgetDenied, ModelTier
from common.money import format_usd, usd
from common.platform import log
from common.platform.settings import get_settings
from common.platform.store import db

RESERVATIONS = "reservations"
# Firestore's TTL policy deletes reservation documents at `purge_at`, long after both periods a
# reservation counts in have ended, so a TTL deletion can never leak budget.
PURGE_AFTER = dt.timedelta(days=40)
Clock = Callable[[], dt.datetime]
logger = logging.getLogger(__name__)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Recorder(status.WarningRecorder, Protocol):
    """What a caller records in the batch of each settle (and of each budget warning)."""

    def on_settle(self, batch: firestore.WriteBatch, attempt: AttemptRecord) -> None: ...


def no_room(scope: Scope, totals: Totals, amount: int) -> BudgetDenied:
    label = {"day": "daily budget", "month": "monthly budget", "platform": "platform daily cap"}
    return BudgetDenied(
        scope.reason,
        f"{label[scope.kind]} exceeded: {format_usd(amount)} needed, "
        f"{format_usd(max(totals.headroom, 0))} of {format_usd(scope.limit_nanos, 2)} left "
        f"({scope.name})",
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
        recorder: Recorder | None = None,
    ) -> None:
        self.business = business
        self.run_id = run_id
        self.phase = phase
        self.clock = clock
        self.recorder = recorder
        # What this ledger reserved and has not settled: settling it needs no extra read.
        self._held: dict[str, Held] = {}

    # --- reserve ---------------------------------------------------------------------------

    def reserve(self, *, key: str, model: str, tier: ModelTier, upper_bound_nanos: int) -> None:
        """Hold `upper_bound_nanos` for attempt `key` on `model` (of `tier`) against every limit,
        or raise BudgetDenied."""
        if not isinstance(upper_bound_nanos, int) or upper_bound_nanos < 0:
            raise ValueError(
                f"a reservation must be a whole number of nanos, not {upper_bound_nanos!r}"
            )
        if tier not in self.business.limits.model_tiers:
            raise BudgetDenied(
                "model_tier_restricted",
                f"the {self.business.tier} tier may not use {model} ({tier} models)",
            )
        now = self.clock()
        scopes, controls = counters.prepare(
            self.business.scopes(now),
            [controls_ref()],
            max_age=get_settings().budget_cache_seconds,
        )
        if (refused := paused(controls)) is not None:
            raise refused
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
                raise no_room(short, counters.read([short])[short.name], upper_bound_nanos)
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
                give_back(held)
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
                cost_usd=usd(attempt.cost_nanos),
                reserved_usd=usd(held),
                latency_ms=attempt.latency_ms,
                ok=attempt.ok,
                fallback_used=attempt.fallback_used,
            ),
        )
        if attempt.cost_nanos and status.refresh_due(self.business.business_id):
            status.refresh(self.business, self.clock(), recorder=self.recorder)

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
            for scope in self.business.scopes(now):
                batch.set(scope.ref(0), change, merge=True)
        if self.recorder is not None:
            self.recorder.on_settle(batch, attempt)
        return batch


def give_back(reservation: Held) -> bool:
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
        if give_back(Held.from_snapshot(snapshot)):
            released += 1
            logger.warning(
                "expired reservation released",
                extra=log.fields(
                    event="reservation_expired", business_id=business_id, key=snapshot.id
                ),
            )
    return released
