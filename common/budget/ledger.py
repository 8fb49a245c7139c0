"""The ledger every paid call reserves on before it runs and settles on after it.

A reservation is granted from this process's escrow (`common.budget.escrow`: a block of the
business's day and month, taken ahead), then made durable as the call's usage record,
`usage/{key}`, in state `held` with its upper bound. Its settle turns that same document into the
call's record (`settled`, charged its cost). That document is the only place a cost is written:
blocks move money into the periods from what their holds settled at, and a block whose owner
vanished is closed from its documents.

    held --settle--> settled                 (charged its cost)
    held --owner cannot vouch for it--> void (never called: charged nothing)
    held --block reconciled--> abandoned     (charged its upper bound: it may have been billed)
    abandoned --late settle--> settled_late  (charged its cost; the difference goes back)

Every write is conditional on the document's version (or its absence), carries an `op` id, and
goes out through the process's group writer, so one round trip carries many threads' writes and
a write whose acknowledgement was lost is recognised by its op. Once `reserve` returns, the hold
is durable: whatever happens to this process, the money stays counted until the call settles.

A ledger made with `defer_settles` (a phase's) leaves a settle's write to its caller's next
commit (`unwritten`, `Unwritten.add_to`, then `written`: a sub-task's end carries the settles of
its calls), to the same thread's next reservation, or to `close`, which writes what is left in
one round trip. A settle counts in the escrow only once its record is written, so until then
the call holds its upper bound everywhere: a crash in between leaves it charged its bound when
its block is reconciled, never less.

The ledger knows nothing of runs: `on_warning` hears of the 75/90/100% thresholds its own calls
crossed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from google.cloud import firestore

from common.budget import blocks, sources
from common.budget.blocks import block_ref, usage_ref, usage_shard
from common.budget.clock import server_clock
from common.budget.controls import paused_refusal
from common.budget.escrow import Allowance, Closing, First, escrow
from common.budget.periods import day_key, month_key, scope_name, scope_ref
from common.budget.status import BudgetWarning, publish, published
from common.money import usd
from common.platform import log
from common.platform.store import db
from common.platform.writes import Written, group_writer
from common.spend.ledger import BudgetBusy, BudgetDenied
from common.spend.records import AttemptRecord, ModelTier
from common.tenants.businesses import Business

Clock = Callable[[], dt.datetime]
logger = logging.getLogger(__name__)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UnknownAttempt(Exception):
    """A settle for an attempt this business never reserved (a caller's bug: nothing is
    recorded)."""


@dataclass(frozen=True)
class Hold:
    """A durable hold, as this ledger last wrote it."""

    key: str
    bound: int
    block_id: str
    update_time: Any
    allowance: Allowance | None


@dataclass(frozen=True)
class Unwritten:
    """A settle whose record is still to be written (it counts once written): the update of
    the hold, conditional on the version this ledger wrote."""

    attempt: AttemptRecord
    hold: Hold
    fields: dict[str, Any]
    thread: int  # the thread whose call it settles

    def add_to(self, batch: Any) -> None:
        batch.update(
            usage_ref(self.attempt.key),
            self.fields,
            option=db().write_option(last_update_time=self.hold.update_time),
        )


def usage_fields(attempt: AttemptRecord) -> dict[str, Any]:
    """The settled attempt's fields on its usage record."""
    return {
        **attempt.model_dump(mode="json", exclude={"usage"}),
        **attempt.usage.model_dump(),
    }


class BudgetLedger:
    """The `Ledger` of one business's paid calls (within one run phase, when `run_id` is set)."""

    def __init__(
        self,
        business: Business,
        *,
        run_id: str | None = None,
        phase: str | None = None,
        clock: Clock | None = None,
        on_warning: Callable[[BudgetWarning], None] | None = None,
        defer_settles: bool = False,
    ) -> None:
        self.business_id = business.business_id
        self.defer_settles = defer_settles
        self._unwritten: list[Unwritten] = []
        self._unwritten_lock = threading.Lock()
        self.run_id = run_id
        self.phase = phase
        self.clock = clock or server_clock.now
        self.on_warning = on_warning
        self._held: dict[str, Hold] = {}
        self.settled_nanos = 0  # what this ledger's settles charged (its share of the records)

    # --- reserve ---------------------------------------------------------------------------

    def reserve(self, *, key: str, model: str, tier: ModelTier, upper_bound_nanos: int) -> None:
        """Hold `upper_bound_nanos` for attempt `key` on `model` (of `tier`) against every limit.

        Raises:
            BudgetDenied: no room (the period's reason), the platform is paused, the business's
                tier (as this process last read it, at most `budget_cache_seconds` ago) may not
                use the model, or the key was used before (`attempt_in_use`,
                `attempt_settled`).
            BudgetBusy: room exists only once work in flight settles, or contention.
        """
        if not isinstance(upper_bound_nanos, int) or upper_bound_nanos < 0:
            raise ValueError(
                f"a reservation must be a whole number of nanos, not {upper_bound_nanos!r}"
            )
        # This thread's earlier calls count once written: their room is free for this one.
        self.write_unwritten(self.unwritten(thread=threading.get_ident()))
        for _ in range(4):
            found = sources.current(self.business_id)
            business = found.business
            if tier not in business.limits.model_tiers:
                raise BudgetDenied(
                    "model_tier_restricted",
                    f"the {business.tier} tier may not use {model} ({tier} models)",
                )
            if found.controls.paused:
                raise paused_refusal(found.controls)
            now = self.clock()
            day, month = day_key(now), month_key(now)
            fields = self._hold_fields(key, model, tier, upper_bound_nanos, business)
            placed = {**fields, "day": day, "month": month}

            def write(batch: Any, block_id: str, placed: dict[str, Any] = placed) -> None:
                batch.create(usage_ref(key), {**placed, "block": block_id})

            # A grant that takes a block writes this hold in the take's commit.
            first = First(write)
            allowance = escrow.grant(found, day, month, upper_bound_nanos, first)
            if first.written is not None:
                server_clock.observe(first.written)
                hold: Hold | None = Hold(
                    key, upper_bound_nanos, allowance.block.block_id, first.written, allowance
                )
            else:
                hold = self._hold(key, upper_bound_nanos, allowance, placed)
            if hold is not None:
                self._held[key] = hold
                escrow.warm_ahead(found, now)
                return
        raise BudgetBusy("budget_contention", f"could not place reservation {key}; try again")

    def _hold_fields(
        self, key: str, model: str, tier: ModelTier, bound: int, business: Business
    ) -> dict[str, Any]:
        """The hold's usage record, but for its block and its periods."""
        return {
            "key": key,
            "business_id": business.business_id,
            "tier": business.tier,
            "run_id": self.run_id,
            "phase": self.phase,
            "model": model,
            "model_tier": tier,
            "state": "held",
            "bound_nanos": bound,
            "charged_nanos": 0,
            "cost_nanos": 0,
            "op": uuid.uuid4().hex,
            "created_at": firestore.SERVER_TIMESTAMP,
            "shard": usage_shard(key),
        }

    def _hold(
        self, key: str, bound: int, allowance: Allowance, fields: dict[str, Any]
    ) -> Hold | None:
        """Write the hold; None if its block turned out to be gone (the caller tries again)."""
        block = allowance.block
        fields = {**fields, "block": block.block_id}
        op = str(fields["op"])
        ref = usage_ref(key)
        try:
            written = group_writer(db()).write(ref, lambda batch: batch.create(ref, fields))
            if written.exists:
                written = self._place_again(key, op, fields)
        except BaseException:
            escrow.ungrant(allowance, bound)
            raise
        server_clock.observe(written.update_time)
        if time.monotonic() > allowance.fence_until and not _still_open(block.block_id):
            # Written after the database may have let the block expire: it may not have been
            # seen by whoever closed it, so it must not stand.
            self._void(key, bound, written.update_time)
            escrow.ungrant(allowance, bound)
            escrow.lost(allowance)
            return None
        return Hold(key, bound, block.block_id, written.update_time, allowance)

    def _place_again(self, key: str, op: str, fields: dict[str, Any]) -> Written:
        """The key's document exists: ours (a lost acknowledgement), a hold voided before (place
        it again), or someone else's."""
        ref = usage_ref(key)
        snapshot = ref.get()
        data = snapshot.to_dict() or {}
        if data.get("op") == op:
            return Written(0, update_time=snapshot.update_time)
        if data.get("business_id") == self.business_id and data.get("state") == "void":
            again = group_writer(db()).write(
                ref,
                lambda batch: batch.update(
                    ref, fields, option=db().write_option(last_update_time=snapshot.update_time)
                ),
            )
            if again.ok:
                return again
        if data.get("state") == "held":
            raise BudgetDenied("attempt_in_use", f"attempt {key} is already holding a reservation")
        raise BudgetDenied("attempt_settled", f"attempt {key} was settled before: make a new one")

    def _void(self, key: str, bound: int, update_time: Any) -> None:
        """Our own hold, never used: charged nothing (or, if frozen first, settled at 0)."""
        ref = usage_ref(key)
        written = group_writer(db()).write(
            ref,
            lambda batch: batch.update(
                ref,
                {"state": "void", "charged_nanos": 0, "ended_at": firestore.SERVER_TIMESTAMP},
                option=db().write_option(last_update_time=update_time),
            ),
        )
        if not written.ok:
            settle_late(key, bound, None)

    # --- settle ----------------------------------------------------------------------------

    def settle(self, attempt: AttemptRecord) -> None:
        """Turn the hold of `attempt.key` into its actual cost, exactly once (with
        `defer_settles`, written with the caller's next commit, before this thread's next
        reservation or at `close`, and counted then).

        Raises:
            UnknownAttempt: this business holds no reservation for the key.
        """
        hold = self._held.pop(attempt.key, None) or self._read_hold(attempt.key)
        if hold is None:
            return  # counted once already
        if self.defer_settles:
            unwritten = Unwritten(attempt, hold, _settled_fields(attempt), threading.get_ident())
            with self._unwritten_lock:
                self._unwritten.append(unwritten)
            return
        written = self._write(attempt, hold)
        if written is not None:
            self._settled(attempt, hold, late=written == "late")

    def unwritten(self, *, thread: int | None = None) -> list[Unwritten]:
        """The settles not written yet (of `thread`'s calls, or all), handed to the caller:
        its commit writes them (`Unwritten.add_to`), then it reports them `written`, or gives
        them to `write_unwritten`."""
        taken: list[Unwritten] = []
        kept: list[Unwritten] = []
        with self._unwritten_lock:
            for u in self._unwritten:
                (taken if thread in (None, u.thread) else kept).append(u)
            self._unwritten = kept
        return taken

    def written(self, unwritten: list[Unwritten]) -> None:
        """The caller's commit wrote `unwritten`: they count now."""
        for u in unwritten:
            self._settled(u.attempt, u.hold, late=False)

    def write_unwritten(
        self, unwritten: list[Unwritten] | None = None, *, counted: bool = False
    ) -> None:
        """Write `unwritten` (default: every settle not written yet) in one round trip, and
        count them (unless `counted` already); a record whose hold changed meanwhile is settled
        on its own."""
        unwritten = self.unwritten() if unwritten is None else unwritten
        if not unwritten:
            return
        results = group_writer(db()).write_all(
            [(usage_ref(u.attempt.key), u.add_to) for u in unwritten]
        )
        for u, result in zip(unwritten, results, strict=True):
            written = "settled" if result.ok else self._write(u.attempt, u.hold, u.fields)
            if written is not None and not counted:
                self._settled(u.attempt, u.hold, late=written == "late")

    def closing(self) -> Closing:
        """The end of a request in the caller's commit (`Escrow.closing`): the blocks this
        process holds of the business, their closes prepared; `close` then gives back what is
        left."""
        return escrow.closing(self.business_id)

    @staticmethod
    def _write(
        attempt: AttemptRecord, hold: Hold, fields: dict[str, Any] | None = None
    ) -> Literal["settled", "late"] | None:
        """Write the settle of `hold` (retrying on a lost acknowledgement or a newer version):
        "settled", "late" when a reconciled block had frozen the hold (settled late: the
        difference went back to the periods), or None if it was settled before."""
        ref = usage_ref(attempt.key)
        for _ in range(4):
            fields = fields or _settled_fields(attempt)
            option = db().write_option(last_update_time=hold.update_time)

            def update(batch: Any, fields: dict[str, Any] = fields, option: Any = option) -> None:
                batch.update(ref, fields, option=option)

            written = group_writer(db()).write(ref, update)
            if written.ok:
                return "settled"
            snapshot = ref.get()
            data = snapshot.to_dict() or {}
            if data.get("op") == fields["op"]:
                return "settled"
            state = data.get("state")
            if state in ("settled", "settled_late"):
                return None
            if state == "abandoned":
                settle_late(attempt.key, hold.bound, attempt)
                return "late"
            hold = Hold(hold.key, hold.bound, hold.block_id, snapshot.update_time, hold.allowance)
            fields = None  # a new op for the next try
        raise BudgetBusy("budget_contention", f"could not settle {attempt.key}; try again")

    def _read_hold(self, key: str) -> Hold | None:
        """A hold this ledger did not place (another ledger of this process, or one that
        restarted): read it. None if it was settled before."""
        snapshot = usage_ref(key).get()
        data = snapshot.to_dict() or {}
        if not snapshot.exists or data.get("business_id") != self.business_id:
            logger.error(
                "settle without a reservation",
                extra=log.fields(event="settle_unreserved", business_id=self.business_id, key=key),
            )
            raise UnknownAttempt(f"{self.business_id} holds no reservation for attempt {key}")
        if data.get("state") in ("settled", "settled_late", "void"):
            return None
        block_id = str(data.get("block"))
        return Hold(
            key, int(data["bound_nanos"]), block_id, snapshot.update_time, escrow.find(block_id)
        )

    def _settled(self, attempt: AttemptRecord, hold: Hold, *, late: bool) -> None:
        self.settled_nanos += attempt.cost_nanos
        over = attempt.cost_nanos > hold.bound
        if hold.allowance is not None and not late:
            escrow.settled(hold.allowance, hold.bound, attempt.cost_nanos)
        logger.log(
            logging.ERROR if over else logging.INFO,
            "usage settled above its reservation" if over else "usage settled",
            extra=log.fields(
                event="usage_settled_late" if late else "usage_settled",
                business_id=self.business_id,
                run_id=self.run_id,
                phase=self.phase,
                task_type=attempt.task_type,
                model=attempt.model,
                provider=attempt.provider,
                key=attempt.key,
                cost_usd=usd(attempt.cost_nanos),
                reserved_usd=usd(hold.bound),
                latency_ms=attempt.latency_ms,
                ok=attempt.ok,
                fallback_used=attempt.fallback_used,
            ),
        )
        self._hand_over_warnings()

    def _hand_over_warnings(self) -> None:
        if self.on_warning is not None:
            for warning in published(self.business_id):
                self.on_warning(warning)

    def close(self) -> None:
        """Write the settles not written yet, then give back this process's idle blocks of the
        business now (the end of a request)."""
        self.write_unwritten()
        escrow.release(self.business_id)
        self._hand_over_warnings()


def _settled_fields(attempt: AttemptRecord) -> dict[str, Any]:
    return {
        **usage_fields(attempt),
        "state": "settled",
        "charged_nanos": attempt.cost_nanos,
        "op": uuid.uuid4().hex,
        "settled_at": firestore.SERVER_TIMESTAMP,
    }


def _still_open(block_id: str) -> bool:
    snapshot = block_ref(block_id).get()
    return snapshot.exists and (snapshot.to_dict() or {}).get("state") == "open"


def settle_late(key: str, bound: int, attempt: AttemptRecord | None) -> None:
    """Settle a hold that was frozen at its upper bound by a reconciled block: its record gets
    the actual cost (nothing, with no `attempt`) and its periods get the difference back, once
    the block is closed (so the reconciler's sum and this change never overlap)."""
    ref = usage_ref(key)
    cost = attempt.cost_nanos if attempt is not None else 0
    for attempt_number in range(40):
        snapshot = ref.get()
        data = snapshot.to_dict() or {}
        if data.get("state") != "abandoned":
            return  # settled meanwhile
        block = block_ref(str(data["block"])).get().to_dict() or {}
        if block.get("state") != "closed":
            blocks.reconcile(str(data["block"]))  # finish it (it may have stalled)
            time.sleep(min(0.05 * 2**attempt_number, 1.0))
            continue
        fields: dict[str, Any] = {
            "state": "settled_late",
            "charged_nanos": cost,
            "ended_at": firestore.SERVER_TIMESTAMP,
        }
        if attempt is not None:
            fields.update(usage_fields(attempt))
        change = {
            "spent_nanos": firestore.Increment(cost - bound),
            "updated_at": firestore.SERVER_TIMESTAMP,
        }
        batch = db().batch()
        batch.update(ref, fields, option=db().write_option(last_update_time=snapshot.update_time))
        for period in (data["day"], data["month"]):
            batch.update(scope_ref(scope_name(str(data["business_id"]), period)), change)
        try:
            batch.commit()
        except Exception as error:
            logger.info("late settle retried", extra=log.fields(key=key, error=str(error)))
            continue
        logger.error(
            "usage settled after its block was reconciled",
            extra=log.fields(
                event="usage_settled_late",
                business_id=data.get("business_id"),
                key=key,
                cost_usd=usd(cost),
                reserved_usd=usd(bound),
            ),
        )
        # The money moved outside an owner's commit: the published status shows it now, not
        # at the business's next take, flush or close.
        with contextlib.suppress(Exception):  # the status is a view; the money is settled
            publish(str(data["business_id"]), str(data["day"]))
        return
    raise BudgetBusy("budget_contention", f"could not settle {key} late; try again")
