"""This process's escrow: the blocks it holds, one per business day, granted from in memory.

A reservation takes its amount from the business day's live block under a lock, with no round
trip. When the block cannot serve it (too little left, past its active window, taken under
limits or controls this process has since seen change), one thread takes a new block while the
others wait for it; the old block retires and closes as soon as its last hold settles. Settled
money goes back to the day and month (`blocks.flush`) in steps of at least `budget_flush_percent`
of the day's limit, at most once a second per block; a block idle for `budget_idle_seconds`, or
past its active window with nothing in flight, is closed and its unused amount given back. A
background thread does that housekeeping; `release` does it at once (the end of a request).

Time here is this process's monotonic clock, counted from before the take was sent: a block is
granted from only within `budget_block_active_seconds` of that, and the database cannot consider
it expired before `fence_until` (its TTL counted from an instant no later than its commit).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from common.budget import blocks, status
from common.budget.blocks import Block, Stale
from common.budget.periods import day_key, month_key
from common.budget.sources import Sources
from common.money import usd
from common.platform import log
from common.platform.settings import get_settings
from common.platform.store import db
from common.spend.ledger import BudgetBusy

logger = logging.getLogger(__name__)
# Who this process is, on the blocks it takes (for the logs and the operator).
INSTANCE = uuid.uuid4().hex[:12]
# Far from the limit, a block is taken for at least this many reservations of the size asked.
BLOCK_REQUESTS = 256


@dataclass(eq=False)
class Allowance:
    """A block as this process grants from it."""

    block: Block
    project: str
    day_limit: int
    fence_until: float
    active_until: float
    committed: int = 0  # holds at their upper bound, and settled costs not flushed yet
    unflushed: int = 0  # settled costs not flushed yet
    inflight: int = 0
    holders: Counter[int] = field(default_factory=Counter)  # in flight, by granting thread
    last_grant: float = field(default_factory=time.monotonic)
    last_flush: float = field(default_factory=time.monotonic)
    retiring: bool = False
    closed: bool = False
    io: threading.Lock = field(default_factory=threading.Lock)

    @property
    def free(self) -> int:
        return self.block.amount - self.committed


def _let_go(allowance: Allowance) -> None:
    """One of `allowance`'s calls in flight ended: the calling thread's, else any thread's
    (holding the escrow's lock)."""
    holders = allowance.holders
    me = threading.get_ident()
    holder = me if me in holders else next(iter(holders), None)
    if holder is not None:
        holders[holder] -= 1
        if holders[holder] <= 0:
            del holders[holder]


class Escrow:
    """The process's blocks (module-level `escrow`)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._live: dict[tuple[str, str, str], Allowance] = {}
        self._all: dict[str, Allowance] = {}
        self._taking: set[tuple[str, str, str]] = set()
        self._sizes: dict[tuple[str, str, str], int] = {}
        self._warmed: set[tuple[str, str, str]] = set()
        self._thread: threading.Thread | None = None
        self._ended = 0  # calls ended (settled or given back), for grants waiting on them
        self._awaiting = 0  # grants waiting for this process's calls to end

    # --- granting ----------------------------------------------------------------------------

    def grant(
        self, sources: Sources, day: str, month: str, amount: int, first: First | None = None
    ) -> Allowance:
        """Take `amount` from the business day's block, taking a new block if needed; when
        this thread takes it, `first`'s write (the call's hold) goes in the take's commit,
        `first.written` is its version and the grant is from that block.

        Raises:
            BudgetDenied, BudgetBusy: from `blocks.take` when no block can be had.
        """
        business = sources.business
        key = (db().project, business.business_id, day)
        patience = time.monotonic() + get_settings().budget_wait_seconds
        while True:
            retired: list[Allowance] = []
            with self._cond:
                ended = self._ended
                live = self._live.get(key)
                if live is not None:
                    if self._usable(live, sources, amount):
                        live.committed += amount
                        live.inflight += 1
                        live.holders[threading.get_ident()] += 1
                        live.last_grant = time.monotonic()
                        return live
                    self._learn(key, live)
                    self._retire(live, retired)
                if key in self._taking:
                    self._cond.wait(timeout=1.0)
                    continue
                self._taking.add(key)
                want = max(amount * BLOCK_REQUESTS, self._sizes.get(key, 0))
            self._close_all(retired)

            def take(want: int = want) -> blocks.Block:
                return blocks.take(
                    business,
                    sources.controls,
                    day,
                    month,
                    need=amount,
                    want=want,
                    owner=INSTANCE,
                    view=status.view,
                    also=None if first is None else first.add,
                )

            try:
                started = time.monotonic()
                try:
                    block = take()
                except BudgetBusy:
                    # Room may be idle in this process's other blocks of the business (another
                    # day of the month, a block retired with calls in flight): give it back
                    # and ask once more.
                    if not self._give_back_others(key):
                        raise
                    started = time.monotonic()
                    block = take()
            except BudgetBusy as busy:
                held: BudgetBusy | None = busy
            else:
                held = None
            finally:
                with self._cond:
                    self._taking.discard(key)
                    self._cond.notify_all()
            if held is not None:
                # The room may be held by this process's own calls in flight (a phase's
                # parallel sub-tasks near the limit): wait for one to settle, then look again,
                # rather than fail a phase that would then be retried whole.
                if held.reason == "budget_held" and self._await_own(key, ended, patience):
                    continue
                raise held
            settings = get_settings()
            allowance = Allowance(
                block=block,
                project=key[0],
                day_limit=business.limits.daily_limit_nanos,
                fence_until=started + block.ttl_seconds,
                active_until=started + settings.budget_block_active_seconds,
            )
            if first is not None and first.taken(block):
                # Its hold went in with the block: granted from it before any other thread.
                allowance.committed += amount
                allowance.inflight += 1
                allowance.holders[threading.get_ident()] += 1
            with self._cond:
                previous = self._live.get(key)
                if previous is not None:
                    self._retire(previous, retired)
                self._live[key] = allowance
                self._all[block.block_id] = allowance
                self._cond.notify_all()
            self._close_all(retired)
            self._start_housekeeping()
            if first is not None and first.written is not None:
                return allowance

    def _await_own(self, key: tuple[str, str, str], ended: int, until: float) -> bool:
        """Wait, at most until `until`, for one of this process's calls in flight on the
        business of `key` to end (`ended`: how many had when the caller looked). Returns
        whether one did (at once if one did already; False at once if none of other threads
        is in flight here: the room is held elsewhere)."""

        me = threading.get_ident()

        def inflight() -> int:  # other threads' calls: this one's own cannot settle meanwhile
            return sum(
                allowance.inflight - allowance.holders.get(me, 0)
                for allowance in self._all.values()
                if (allowance.project, allowance.block.business_id) == key[:2]
                and not allowance.closed
            )

        with self._cond:
            if self._ended != ended:
                return True
            if not inflight():
                return False
            self._awaiting += 1
            try:
                while self._ended == ended:  # until a call has ended and its block given back
                    left = until - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(timeout=min(left, 1.0))
                return True
            finally:
                self._awaiting -= 1

    def _learn(self, key: tuple[str, str, str], allowance: Allowance) -> None:
        """Size the next block of `key` from how fast `allowance` was used (holding the lock):
        one used up within its active window asks for what that rate needs for a whole window;
        one that lasted asks for the floor again."""
        window = get_settings().budget_block_active_seconds
        elapsed = max(time.monotonic() - (allowance.active_until - window), 0.05)
        used = allowance.block.amount - max(allowance.free, 0)
        if elapsed < window and used > 0:
            self._sizes[key] = int(used / elapsed * window)
        else:
            self._sizes.pop(key, None)

    def warm_ahead(self, sources: Sources, now: dt.datetime) -> None:
        """Within `budget_warm_seconds` of midnight, make the business's next day (and month)
        ahead, once per process (see `blocks.warm`)."""
        settings = get_settings()
        tomorrow = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        if (tomorrow - now).total_seconds() > settings.budget_warm_seconds:
            return
        key = (db().project, sources.business.business_id, day_key(tomorrow))
        with self._cond:
            if key in self._warmed:
                return
            self._warmed.add(key)
        with contextlib.suppress(Exception):  # an optimisation: the first take makes it anyway
            blocks.warm(sources.business, sources.controls, day_key(tomorrow), month_key(tomorrow))

    def _give_back_others(self, key: tuple[str, str, str]) -> bool:
        """Retire this process's other blocks of the business (not `key`'s live one) and give
        back what they do not use. Returns whether there was any."""
        retired: list[Allowance] = []
        with self._cond:
            for allowance in list(self._all.values()):
                mine = (allowance.project, allowance.block.business_id) == key[:2]
                if mine and not allowance.closed and self._live.get(key) is not allowance:
                    self._retire(allowance, retired)
        self._close_all(retired, trim=True)
        return bool(retired)

    @staticmethod
    def _usable(allowance: Allowance, sources: Sources, amount: int) -> bool:
        block = allowance.block
        return (
            not allowance.retiring
            and allowance.free >= amount
            and time.monotonic() < allowance.active_until
            and block.limits_version >= sources.business.limits_version
            and block.controls_version >= sources.controls.version
        )

    def _retire(self, allowance: Allowance, retired: list[Allowance]) -> None:
        """Stop granting from `allowance` (holding the lock); collect it for closing if nothing
        is in flight on it."""
        key = (allowance.project, allowance.block.business_id, allowance.block.day)
        if self._live.get(key) is allowance:
            del self._live[key]
        allowance.retiring = True
        if not allowance.closed:
            retired.append(allowance)  # closed if nothing is in flight, else trimmed

    def ungrant(self, allowance: Allowance, amount: int) -> None:
        """Give back a grant whose hold was never written (or was voided)."""
        retired: list[Allowance] = []
        with self._cond:
            allowance.committed -= amount
            allowance.inflight -= 1
            _let_go(allowance)
            if allowance.retiring and allowance.inflight == 0 and not allowance.closed:
                retired.append(allowance)
        self._close_all(retired)
        self._call_ended()

    def settled(self, allowance: Allowance, bound: int, cost: int) -> None:
        """A hold of `bound` on `allowance` settled at `cost`."""
        retired: list[Allowance] = []
        flush = False
        with self._cond:
            allowance.committed += cost - bound
            allowance.unflushed += cost
            allowance.inflight -= 1
            _let_go(allowance)
            over = allowance.committed - allowance.block.amount
            if allowance.retiring and allowance.inflight == 0 and not allowance.closed:
                retired.append(allowance)
            else:
                flush = self._flush_due(allowance)
        if over > 0:
            self._grow(allowance, over)
        if retired:
            self._close_all(retired)
        elif flush:
            self._flush(allowance)
        self._call_ended()

    def _call_ended(self) -> None:
        """Wake grants waiting for this process's calls (their blocks are given back now)."""
        with self._cond:
            self._ended += 1
            if self._awaiting:
                self._cond.notify_all()

    def _grow(self, allowance: Allowance, amount: int) -> None:
        """A call billed above its hold by more than the block had spare: the money was spent,
        so the block grows by the excess at once (the periods count it as held, and no other
        block can take it). Within the limit if the periods had room; else the period is over
        by at most that excess, and refuses everything until it rolls over."""
        with allowance.io:
            with self._cond:
                if allowance.closed:
                    return
                block = allowance.block
            try:
                after, left = blocks.flush(block, 0, -amount, view=status.view)
            except Stale:
                self.lost(allowance)
                return
            with self._cond:
                allowance.block = after
        self._shown(block, left)
        logger.error(
            "a call cost more than its reservation and its block had spare",
            extra=log.fields(
                event="usage_above_reservation",
                business_id=block.business_id,
                block=block.block_id,
                excess_usd=usd(amount),
            ),
        )

    def find(self, block_id: str) -> Allowance | None:
        """This process's allowance of `block_id`, if it holds it."""
        with self._cond:
            return self._all.get(block_id)

    def lost(self, allowance: Allowance) -> None:
        """The block was reconciled by someone else: nothing more is granted or written here."""
        with self._cond:
            allowance.closed = True
            allowance.retiring = True
            key = (allowance.project, allowance.block.business_id, allowance.block.day)
            if self._live.get(key) is allowance:
                del self._live[key]
            self._all.pop(allowance.block.block_id, None)

    # --- giving back -------------------------------------------------------------------------

    def _flush_due(self, allowance: Allowance) -> bool:
        settings = get_settings()
        step = max(1, allowance.day_limit * settings.budget_flush_percent // 100)
        return (
            not allowance.closed
            and allowance.unflushed >= step
            and time.monotonic() - allowance.last_flush >= 1.0
        )

    def _flush(self, allowance: Allowance, *, trim: bool = False) -> None:
        """Move what the block has settled into the periods; with `trim`, also give back what
        it holds beyond its holds in flight (a retired block waiting for its last settles)."""
        with allowance.io:
            with self._cond:
                if not trim and not self._flush_due(allowance):
                    return  # another thread flushed it while this one waited
                spent = allowance.unflushed
                released = spent + (max(allowance.free, 0) if trim else 0)
                if allowance.closed or released == 0:
                    return
                block = allowance.block
            try:
                after, left = blocks.flush(block, spent, released, view=status.view)
            except Stale:
                self.lost(allowance)
                return
            with self._cond:
                allowance.block = after
                allowance.unflushed -= spent
                allowance.committed -= spent
                allowance.last_flush = time.monotonic()
        self._shown(block, left)

    def _close_all(self, allowances: list[Allowance], *, trim: bool = False) -> None:
        """Close each retired block with nothing in flight (the others close when their last
        hold settles); with `trim`, give back the unused part of those at once too (when the
        room is wanted now: the end of a request, a take short of room)."""
        for allowance in allowances:
            if not allowance.inflight:
                self._close(allowance)
            elif trim:
                self._flush(allowance, trim=True)

    def _close(self, allowance: Allowance) -> None:
        with allowance.io:
            spent = self._claim(allowance)
            if spent is not None:
                self._closed_alone(allowance.block, spent)

    def _claim(self, allowance: Allowance) -> int | None:
        """Mark `allowance` closed if it has nothing in flight (the caller holds its `io`, so a
        flush under way ends first and none starts after); what it spent that its periods do
        not count yet, or None if it is not this caller's to close."""
        with self._cond:
            if allowance.closed or allowance.inflight:
                return None
            allowance.closed = True
            self._all.pop(allowance.block.block_id, None)
            return allowance.unflushed

    def closing(self, business_id: str) -> Closing:
        """The end of a request, in the caller's commit: this process's blocks of the business
        retire; those with nothing in flight have their close prepared (one read each) for the
        caller's commit, the others give back what they do not use now (as `release`)."""
        prepared: list[blocks.Prepared] = []
        busy: list[Allowance] = []
        for allowance in self._retire_mine(business_id):
            with allowance.io:
                spent = self._claim(allowance)
            if spent is None:
                busy.append(allowance)
            elif (found := self._close_prepared(allowance.block, spent)) is not None:
                prepared.append(found)
        self._close_all(busy, trim=True)
        return Closing(prepared)

    def _close_prepared(self, block: Block, spent: int) -> blocks.Prepared | None:
        """The block's close prepared from one read for a caller's commit; None when it was
        reconciled meanwhile, or could not be prepared so (then it is closed on its own now)."""
        try:
            found = blocks.close_in(block, spent, status.view)
        except Stale:
            return None  # reconciled meanwhile: its usage records were counted there
        if found is None:
            self._closed_alone(block, spent)
        return found

    def _closed_alone(self, block: Block, spent: int) -> None:
        try:
            left = blocks.close(block, spent, view=status.view)
        except Stale:
            return  # reconciled meanwhile: its usage records were counted there
        self._shown(block, left)

    @staticmethod
    def _shown(block: Block, left: blocks.Left | None) -> None:
        """After a flush or close: announce what its commit recorded, or, when it moved the
        money blindly (too contended), publish the status from a read."""
        with contextlib.suppress(Exception):  # the status is a view; the money is settled
            if left is None:
                status.publish(block.business_id, block.day)
            else:
                status.announce(left)

    def release(self, business_id: str | None = None) -> None:
        """Close every block with nothing in flight now (of `business_id`, or all), in this
        process's current project: the end of a request, or of the process."""
        self._close_all(self._retire_mine(business_id), trim=True)

    def _retire_mine(self, business_id: str | None) -> list[Allowance]:
        """Retire this process's blocks in its current project (of `business_id`, or all)."""
        project = db().project
        retired: list[Allowance] = []
        with self._cond:
            for allowance in list(self._all.values()):
                if allowance.project != project:
                    continue
                if business_id is not None and allowance.block.business_id != business_id:
                    continue
                self._retire(allowance, retired)
        return retired

    # --- housekeeping ------------------------------------------------------------------------

    def _start_housekeeping(self) -> None:
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(
                target=self._housekeep, name="budget-escrow", daemon=True
            )
            self._thread.start()

    def _housekeep(self) -> None:
        while True:
            time.sleep(0.5)
            with contextlib.suppress(Exception):  # a failed round is retried at the next one
                self.tidy()

    def tidy(self) -> None:
        """One round of housekeeping: close idle and expired blocks, flush what is due, and
        reconcile this process's blocks whose holds outlived the fence."""
        settings = get_settings()
        now = time.monotonic()
        project = db().project
        retired: list[Allowance] = []
        flushes: list[Allowance] = []
        stuck: list[Allowance] = []
        with self._cond:
            for allowance in list(self._all.values()):
                if allowance.project != project or allowance.closed:
                    continue
                idle = now - allowance.last_grant > settings.budget_idle_seconds
                if allowance.inflight == 0 and (idle or now >= allowance.active_until):
                    self._retire(allowance, retired)
                elif allowance.inflight and now > allowance.fence_until:
                    stuck.append(allowance)
                elif self._flush_due(allowance):
                    flushes.append(allowance)
        self._close_all(retired)
        for allowance in flushes:
            self._flush(allowance)
        for allowance in stuck:
            # Holds that outlived the block (settled by another process, or a call slower
            # than its deadline): the block is closed from its records.
            if blocks.reconcile(allowance.block.block_id):
                self.lost(allowance)
                # Moved outside an owner's commit: the published status from a read.
                self._shown(allowance.block, None)


@dataclass(eq=False)
class First:
    """A write to go in the commit of a block this grant takes (the call's hold): `write(batch,
    block)` adds it; `written` is its version once that commit went through."""

    write: Callable[[Any, str], None]
    written: Any = None
    _block: str | None = None

    def add(self, batch: Any, block_id: str) -> None:
        self._block = block_id
        self.write(batch, block_id)

    def taken(self, block: Block) -> bool:
        """The take of `block` committed: was this write in that commit?"""
        if self._block == block.block_id:
            self.written = block.update_time  # one commit: one version for all its writes
        return self.written is not None


@dataclass
class Closing:
    """Blocks whose closes go in a caller's commit (`Escrow.closing`): it adds their writes to
    its batch (`add_to`), then says whether the commit went through (`committed`) or not
    (`failed`: each is closed on its own)."""

    prepared: list[blocks.Prepared]

    def add_to(self, batch: Any) -> None:
        for prepared in self.prepared:
            prepared.add(batch)

    def committed(self) -> None:
        for prepared in self.prepared:
            blocks.closed_in(prepared)
            escrow._shown(prepared.block, prepared.left)

    def failed(self) -> None:
        for prepared in self.prepared:
            escrow._closed_alone(prepared.block, prepared.spent)

    def again(self) -> Closing:
        """The same closes prepared again from a new read (one per block), after the caller's
        commit lost a race on a period (most often a sibling phase's take or close of the same
        business); those that cannot be prepared so are closed on their own now."""
        again = (escrow._close_prepared(before.block, before.spent) for before in self.prepared)
        return Closing([found for found in again if found is not None])


escrow = Escrow()
