"""The ledger every model call reserves on before it runs and settles on after it.

A reservation is a document `reservations/{key}` that moves through states, each move one atomic
batch whose precondition is the document's previous version, so that it happens exactly once
however often the batch is delivered:

    held --settle--> settled            (usage/{key} created; the cost replaces the hold)
    held --give back / sweep--> released | expired  (the hold returns to the headroom)
    released | expired --late settle--> settled_late  (the money was spent all the same)
    released --place again--> held       (after an unknown outcome, see below)

Reserve takes the amount from one shard of each scope (`common.budget.counters`) in the batch
that creates the document; it is granted if every shard stayed non-negative and the platform is
not paused (read from the same shard in the same write). Otherwise it is given back, headroom is
gathered into one shard, and it is placed again; it is refused, with the reason of the scope
that has no room, when that scope as a whole has too little. A commit whose answer was lost and
whose retry then finds its own write (AlreadyExists, FailedPrecondition) has an unknown
outcome: the hold is given back and placed again, so no grant is ever guessed.

A hold lasts `reservation_ttl_seconds`, derived from the LLM call timeout, so it outlives the
call it pays for; `release_expired` returns the holds whose holder died. A holder that was frozen
past its TTL and settles afterwards is charged truthfully (`usage_settled_late`, an ERROR): that
is the one way to spend above a limit, by at most that reservation (docs/decisions/006).

The ledger knows nothing of runs: a caller that records the spend elsewhere in the same batch
(the run document) passes a `Recorder`.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from google.api_core import exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from common.budget import counters, status, usage
from common.budget.businesses import Business
from common.budget.controls import paused_refusal
from common.budget.counters import PAUSED, Scope, Stored, moved, transformed
from common.budget.limits import day_key, month_key
from common.llm.base import AttemptRecord, BudgetBusy, BudgetDenied, ModelTier
from common.money import format_usd, usd
from common.platform import log
from common.platform.settings import get_settings
from common.platform.store import db

RESERVATIONS = "reservations"
# Firestore's TTL policy deletes reservation documents at `purge_at`, long after both periods a
# reservation counts in have ended, so a TTL deletion can never leak budget.
PURGE_AFTER = dt.timedelta(days=40)
Clock = Callable[[], dt.datetime]
State = Literal["held", "settled", "released", "expired", "settled_late"]
logger = logging.getLogger(__name__)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Recorder(status.WarningRecorder, Protocol):
    """What a caller records in the batch of each settle (and of each budget warning)."""

    def on_settle(self, batch: firestore.WriteBatch, attempt: AttemptRecord) -> None: ...


def no_room(
    scope: Scope, headroom: int, limit: int, amount: int, reserved: int = 0
) -> BudgetDenied:
    """The refusal for a scope without room, saying how much of what is missing is only held
    by calls under way (it comes back when they settle)."""
    label = {"day": "daily budget", "month": "monthly budget", "platform": "platform daily cap"}
    held = f"; {format_usd(reserved)} is held by calls under way" if reserved > 0 else ""
    return BudgetDenied(
        scope.reason,
        f"{label[scope.kind]} exceeded: {format_usd(amount)} needed, "
        f"{format_usd(max(headroom, 0))} of {format_usd(limit, 2)} left{held} ({scope.name})",
    )


def _ref(key: str) -> firestore.DocumentReference:
    ref: firestore.DocumentReference = db().collection(RESERVATIONS).document(key)
    return ref


@dataclass(frozen=True)
class Held:
    """A reservation as last written: its amount, its shards and periods, its version."""

    key: str
    amount: int
    counters: list[str]
    state: State
    update_time: Any
    day: str
    month: str
    op: str | None = None

    @classmethod
    def from_snapshot(cls, snapshot: firestore.DocumentSnapshot[Any]) -> Held:
        data = snapshot.to_dict() or {}
        return cls(
            key=snapshot.id,
            amount=int(data["amount_nanos"]),
            counters=list(data["counters"]),
            state=data.get("state", "held"),
            update_time=snapshot.update_time,
            day=data["day"],
            month=data["month"],
            op=data.get("op"),
        )

    @classmethod
    def read(cls, key: str) -> Held | None:
        snapshot = _ref(key).get()
        return cls.from_snapshot(snapshot) if snapshot.exists else None


def _end(
    held: Held,
    state: State,
    change: dict[str, Any],
    also: Callable[[firestore.WriteBatch], None] | None = None,
) -> bool | None:
    """Move `held` to `state`, applying `change` to its shards, in one batch with `also`'s writes.

    Returns:
        True if this call moved it (also when its acknowledgement was lost and the library's
        retry then found it moved), False if the reservation had moved on before, and None if a
        write of `also` found its document already there (a settle delivered twice).
    """
    op = uuid.uuid4().hex
    batch = db().batch()
    batch.update(
        _ref(held.key),
        {
            "state": state,
            "op": op,
            "expires_at": firestore.DELETE_FIELD,
            "ended_at": firestore.SERVER_TIMESTAMP,
        },
        option=db().write_option(last_update_time=held.update_time),
    )
    for counter in held.counters:
        batch.update(db().collection(counters.COUNTERS).document(counter), change)
    if also is not None:
        also(batch)
    try:
        counters.retrying(batch.commit, what=f"ending reservation {held.key}")
    except (exceptions.FailedPrecondition, exceptions.NotFound, exceptions.AlreadyExists) as error:
        now = Held.read(held.key)
        if now is not None and now.op == op:
            return True  # applied; only its acknowledgement was lost
        return None if isinstance(error, exceptions.AlreadyExists) else False
    return True


def give_back(held: Held, state: State = "released") -> bool:
    """End a held reservation without spending it (False if it had moved on before)."""
    change = moved(headroom=held.amount, reserved=-held.amount)
    return bool(_end(held, state, change))


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

    def reserve(self, *, key: str, model: str, tier: ModelTier, upper_bound_nanos: int) -> float:
        """Hold `upper_bound_nanos` for attempt `key` on `model` (of `tier`) against every limit.

        Returns:
            How many seconds the hold is sure to last.

        Raises:
            BudgetDenied: no room (the scope's reason), the platform is paused, the tier may not
                use the model, or this attempt was settled before (`attempt_settled`).
            BudgetBusy: the budget stayed too contended to answer.
        """
        if not isinstance(upper_bound_nanos, int) or upper_bound_nanos < 0:
            raise ValueError(
                f"a reservation must be a whole number of nanos, not {upper_bound_nanos!r}"
            )
        if tier not in self.business.limits.model_tiers:
            raise BudgetDenied(
                "model_tier_restricted",
                f"the {self.business.tier} tier may not use {model} ({tier} models)",
            )
        started = self.clock()
        scopes = self.business.scopes(started)
        stored = counters.prepare(scopes, max_age=get_settings().budget_cache_seconds)
        shards = {
            scope.name: counters.random_shard(s.shards)
            for scope, s in zip(scopes, stored, strict=True)
        }
        previous: Held | None = None  # the document to place on again, if there is one
        swept = False
        for _ in range(12):
            placed = self._place(key, model, upper_bound_nanos, scopes, stored, shards, previous)
            if isinstance(placed, Held):
                self._held[key] = placed
                ttl = get_settings().reservation_ttl_seconds
                return ttl - (self.clock() - started).total_seconds()
            outcome, previous = placed
            if outcome == "paused":
                raise paused_refusal()
            if outcome == "again":
                continue
            scope = next(s for s in scopes if s.name == outcome)
            # A plain read first: when the scope as a whole has no room, no transaction is
            # needed to say so (under a burst most callers are in that case).
            totals = counters.read([scope])[scope.name]
            if totals.headroom >= upper_bound_nanos:
                after = counters.sync(scope, gather=(shards[scope.name], upper_bound_nanos))
                if after.headroom is not None and after.headroom >= upper_bound_nanos:
                    continue  # the shard now holds the amount: place again
            if not swept:
                swept = True  # holds whose holder died may be all that stands in the way
                if release_expired(self.business.business_id, started):
                    continue
            totals = counters.read([scope])[scope.name]
            if totals.headroom >= upper_bound_nanos:
                continue  # room came back meanwhile (a settle below its hold): try again
            raise no_room(scope, totals.headroom, totals.limit, upper_bound_nanos, totals.reserved)
        raise BudgetBusy("budget_contention", f"could not place reservation {key}; try again")

    def _place(
        self,
        key: str,
        model: str,
        amount: int,
        scopes: list[Scope],
        stored: list[Stored],
        shards: dict[str, int],
        previous: Held | None,
    ) -> Held | tuple[str, Held | None]:
        """Take `amount` from the chosen shard of each scope in the batch that writes the
        reservation. Returns the hold if granted; else (having given it back) why not -- the
        name of the first scope without room, "paused", or "again" -- and the document to place
        on next."""
        now = self.clock()
        placement = uuid.uuid4().hex
        counter_ids = [scope.ref(shards[scope.name]).id for scope in scopes]
        fields = {
            "business_id": self.business.business_id,
            "run_id": self.run_id,
            "phase": self.phase,
            "model": model,
            "amount_nanos": amount,
            "counters": counter_ids,
            "day": day_key(now),
            "month": month_key(now),
            "state": "held",
            "op": placement,
            "created_at": now,
            "expires_at": now + dt.timedelta(seconds=get_settings().reservation_ttl_seconds),
            "purge_at": now + PURGE_AFTER,
        }
        batch = db().batch()
        if previous is None:
            batch.create(_ref(key), fields)
        else:
            batch.update(
                _ref(key), fields, option=db().write_option(last_update_time=previous.update_time)
            )
        changes = []
        for scope in scopes:
            change = moved(headroom=-amount, reserved=amount)
            if scope.kind == "platform":
                change[PAUSED] = firestore.Increment(0)  # reads the pause flag in this write
            batch.update(scope.ref(shards[scope.name]), change)
            changes.append(change)
        try:
            results = counters.retrying(batch.commit, what=f"placing reservation {key}")
        except (exceptions.AlreadyExists, exceptions.FailedPrecondition):
            return self._unknown(key, placement, scopes)
        held = Held(key, amount, counter_ids, "held", results[0].update_time, *_periods(now))
        for scope, change, result in zip(scopes, changes, results[1:], strict=True):
            if scope.kind == "platform" and transformed(result, change, PAUSED):
                return "paused", self._given_back(held)
        for scope, change, result in zip(scopes, changes, results[1:], strict=True):
            if transformed(result, change, counters.HEADROOM) < 0:
                return scope.name, self._given_back(held)
        return held

    def _unknown(
        self, key: str, placement: str, scopes: list[Scope]
    ) -> Held | tuple[str, Held | None]:
        """After a placement whose outcome is unknown (its answer lost, the library's retry
        finding its own write): decide it from its shards as they are now, or refuse a key that
        is not ours to hold.

        Our write took the amount at some instant; its shards, read now in one consistent
        snapshot, say whether the take holds now. Keeping it is the same as giving it back and
        taking it again at the instant of the read, which is granted exactly when every shard is
        still non-negative: no grant is guessed."""
        current = Held.read(key)
        if current is None:
            return "again", None
        if current.state == "held" and current.op == placement:
            rows = [
                snapshot.to_dict() or {}
                for snapshot in db().get_all(
                    [db().collection(counters.COUNTERS).document(c) for c in current.counters]
                )
            ]
            if any(int(row.get(PAUSED, 0)) for row in rows):
                return "paused", self._given_back(current)
            for row in rows:
                if int(row.get(counters.HEADROOM, 0)) < 0:
                    name = str(row.get("scope", ""))
                    short = next((s.name for s in scopes if s.name == name), scopes[0].name)
                    return short, self._given_back(current)
            return current
        if current.state in ("released", "expired"):
            return "again", current
        if current.state == "held":
            raise BudgetDenied("attempt_in_use", f"attempt {key} is already holding a reservation")
        raise BudgetDenied("attempt_settled", f"attempt {key} was settled before: make a new one")

    @staticmethod
    def _given_back(held: Held) -> Held | None:
        give_back(held)
        return Held.read(held.key)

    # --- settle ----------------------------------------------------------------------------

    def settle(self, attempt: AttemptRecord) -> None:
        """Turn the reservation of `attempt.key` into its actual cost, exactly once."""
        held = self._held.pop(attempt.key, None) or Held.read(attempt.key)
        for _ in range(4):
            if held is None:
                self._settle_unreserved(attempt)
                return
            if held.state in ("settled", "settled_late"):
                return  # counted once already
            late = held.state != "held"
            cost = attempt.cost_nanos
            change = (
                moved(headroom=-cost, spent=cost)
                if late
                else moved(headroom=held.amount - cost, reserved=-held.amount, spent=cost)
            )
            periods = (held.day, held.month)

            def record(batch: firestore.WriteBatch, periods: tuple[str, str] = periods) -> None:
                self._record(batch, attempt, *periods)

            outcome = _end(held, "settled_late" if late else "settled", change, record)
            if outcome is None:
                return  # its usage record exists: settled before
            if outcome:
                self._log_settled(attempt, held, late)
                return
            held = Held.read(attempt.key)  # it moved meanwhile (swept): look again
        raise BudgetBusy("budget_contention", f"could not settle {attempt.key}; try again")

    def _record(
        self, batch: firestore.WriteBatch, attempt: AttemptRecord, day: str, month: str
    ) -> None:
        batch.create(
            usage.usage_ref(attempt.key),
            usage.usage_document(
                attempt,
                business_id=self.business.business_id,
                tier=self.business.tier,
                run_id=self.run_id,
                phase=self.phase,
                day=day,
                month=month,
                now=self.clock(),
            ),
        )
        if self.recorder is not None:
            self.recorder.on_settle(batch, attempt)

    def _settle_unreserved(self, attempt: AttemptRecord) -> None:
        """A cost without any reservation document (purged, or never made): charged to the
        current periods, once (the usage record's create is the guard)."""
        now = self.clock()
        scopes = self.business.scopes(now)
        counters.prepare(scopes)
        batch = db().batch()
        self._record(batch, attempt, *_periods(now))
        change = moved(headroom=-attempt.cost_nanos, spent=attempt.cost_nanos)
        for scope in scopes:
            batch.update(scope.ref(0), change)
        try:
            counters.retrying(batch.commit, what=f"settling {attempt.key}")
        except exceptions.AlreadyExists:
            return
        self._log_settled(attempt, None, late=True)

    def _log_settled(self, attempt: AttemptRecord, held: Held | None, late: bool) -> None:
        reserved = held.amount if held and not late else 0
        over = attempt.cost_nanos > reserved
        event = "usage_settled_late" if late else "usage_settled"
        message = {
            "usage_settled_late": "usage settled after its reservation had ended",
            "usage_settled": "usage settled above its reservation" if over else "usage settled",
        }[event]
        logger.log(
            logging.ERROR if late or over else logging.INFO,
            message,
            extra=log.fields(
                event=event,
                business_id=self.business.business_id,
                tier=self.business.tier,
                run_id=self.run_id,
                phase=self.phase,
                task_type=attempt.task_type,
                model=attempt.model,
                provider=attempt.provider,
                key=attempt.key,
                cost_usd=usd(attempt.cost_nanos),
                reserved_usd=usd(held.amount if held else 0),
                latency_ms=attempt.latency_ms,
                ok=attempt.ok,
                fallback_used=attempt.fallback_used,
            ),
        )
        if attempt.cost_nanos and status.refresh_due(self.business.business_id):
            status.refresh(self.business, self.clock(), recorder=self.recorder)


def _periods(now: dt.datetime) -> tuple[str, str]:
    return day_key(now), month_key(now)


def release_expired(business_id: str, now: dt.datetime) -> int:
    """Release the reservations of `business_id` whose holder did not settle before their TTL.
    (Only held reservations carry `expires_at`.)"""
    query = (
        db()
        .collection(RESERVATIONS)
        .where(filter=FieldFilter("business_id", "==", business_id))
        .where(filter=FieldFilter("expires_at", "<", now))
        .limit(100)
    )
    released = 0
    for snapshot in query.stream():
        if give_back(Held.from_snapshot(snapshot), "expired"):
            released += 1
            logger.warning(
                "expired reservation released",
                extra=log.fields(
                    event="reservation_expired", business_id=business_id, key=snapshot.id
                ),
            )
    return released


def expired_holds(business_id: str, now: dt.datetime) -> list[Held]:
    """The held reservations past their TTL, without releasing them (a check writes nothing)."""
    query = (
        db()
        .collection(RESERVATIONS)
        .where(filter=FieldFilter("business_id", "==", business_id))
        .where(filter=FieldFilter("expires_at", "<", now))
        .limit(100)
    )
    return [Held.from_snapshot(snapshot) for snapshot in query.stream()]
