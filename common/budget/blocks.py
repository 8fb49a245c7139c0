"""Blocks: headroom a process takes from a business's day and month at once, and gives back.

Everything here is an optimistic commit: the documents are read, the new state is computed, and
one atomic commit writes it on the condition that each document read is still at the version
read (`update_time` preconditions). Nothing holds a lock, so a process frozen between its read
and its commit stops nobody, and when it resumes its commit fails instead of writing from stale
state. The owner's commits also write what clients see of the periods (a `View`: the published
status, a threshold's alert) from the periods as that very commit leaves them, so the status is
never older than the periods it was written with.

    take      read day, month, (platform shards) -> create the block, add it to both periods
    flush     read day, month, block -> move what the block has spent into both periods
              (at most 1 % steps, >= 1 s apart)
    close     read day, month, block -> move the rest of its spending in, give back the unused
              amount
    reconcile a block whose owner vanished (expired by the database's clock): freeze its holds
              still unsettled (charged at their upper bound), sum its usage records, close it

A block's time is the database's: `taken_at` is the commit time of its take, and only a reader
comparing it with the database's read time decides that it expired. Its owner counts down from
before it sent the take (`escrow`), so it always stops before the database would say so.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions
from google.cloud import firestore
from google.cloud.firestore_v1 import aggregation
from google.cloud.firestore_v1.base_query import FieldFilter

from common.budget import platform, sources
from common.budget.controls import Controls
from common.budget.periods import (
    SCOPES,
    OpenBlock,
    Period,
    home_shard,
    scope_name,
    scope_ref,
)
from common.money import format_usd, usd
from common.platform import errors, log
from common.platform.settings import get_settings
from common.platform.store import db
from common.platform.writes import group_writer
from common.spend.ledger import BudgetBusy, BudgetDenied
from common.tenants.businesses import Business

BLOCKS = "budget_blocks"
USAGE = "usage"
# Firestore sustains 500 writes a second to a collection whose documents hold an indexed value
# that only grows (docs: "Sharded timestamps"). A usage record's `created_at` does, and a record
# is written for every model call, so the field has no single-field index (terraform/firestore.tf)
# and the one query ordered by it (the newest records, `common.analysis.outcomes`) reads it
# through (shard, created_at): each shard is its own range of that index, 500 a second each.
USAGE_SHARDS = 30  # the most values one `in` filter may list: one query reads them all
logger = logging.getLogger(__name__)


def block_ref(block_id: str) -> firestore.DocumentReference:
    ref: firestore.DocumentReference = db().collection(BLOCKS).document(block_id)
    return ref


def usage_ref(key: str) -> firestore.DocumentReference:
    ref: firestore.DocumentReference = db().collection(USAGE).document(key)
    return ref


def usage_shard(key: str) -> int:
    """The shard of usage record `key` (the same for every write of it)."""
    return zlib.crc32(key.encode()) % USAGE_SHARDS


@dataclass(frozen=True)
class Block:
    """A block this process holds: its amount now (less what was flushed) and the version of
    its document after this process's last write to it."""

    block_id: str
    business_id: str
    day: str
    month: str
    amount: int
    ttl_seconds: float
    limits_version: int
    controls_version: int
    update_time: Any

    @property
    def day_scope(self) -> str:
        return scope_name(self.business_id, self.day)

    @property
    def month_scope(self) -> str:
        return scope_name(self.business_id, self.month)


# A document to write: its reference and data.
Doc = tuple[firestore.DocumentReference, dict[str, Any]]


@dataclass(frozen=True)
class View:
    """What clients see of a business's periods, written in the same commit as the periods.

    `status` is the published status from the business, the controls, the day and the month as
    the commit leaves them and the database's time of the read before it; `alert` records that a
    period reached a threshold of its limit (one of `WARNING_LEVELS`)."""

    status: Callable[[Business, Controls, Period, Period, dt.datetime], Doc]
    alert: Callable[[Period, int], Doc]


@dataclass(frozen=True)
class Left:
    """The business's day and month as an owner's flush or close left them, brought to the
    business's limits read with them (as clients see them), and the thresholds that commit was
    the first to find reached (each recorded in it, and marked on its period)."""

    business: Business
    day: Period
    month: Period
    reached: tuple[tuple[Period, int], ...]


class Stale(Exception):
    """The block is no longer this process's to write: someone reconciled it."""


# --- reading -------------------------------------------------------------------------------


# What a caller read of a business's day, month and home shard just before its first take (a
# phase reads them with its run): the take uses them instead of reading, once, while fresh.
PRIMED_SECONDS = 2.0
_primed: dict[str, tuple[float, Any]] = {}
_primed_lock = threading.Lock()


def take_refs(business_id: str, day: str, month: str) -> list[firestore.DocumentReference]:
    """The documents a take of the business's `day` and `month` reads first."""
    return [
        scope_ref(scope_name(business_id, day)),
        scope_ref(scope_name(business_id, month)),
        platform.shard_ref(day, home_shard(business_id, platform.count())),
    ]


def prime(snapshots: Iterable[Any]) -> None:
    """Keep `snapshots` of the documents `take_refs` names (others are ignored) for this
    process's next take, which then needs no read of its own (its commit is conditional on
    their versions: a stale one costs a lost race, never money). What no take used while it
    was fresh goes (a phase that replayed its stored result, a refused one, a budget check):
    a long-lived instance keeps only what the last seconds primed."""
    now = time.monotonic()
    with _primed_lock:
        for path in [p for p, (at, _) in _primed.items() if now - at > PRIMED_SECONDS]:
            del _primed[path]
        for snapshot in snapshots:
            if snapshot.reference.path.startswith(f"{SCOPES}/"):
                _primed[snapshot.reference.path] = (now, snapshot)


def _read_primed(
    refs: Sequence[firestore.DocumentReference],
) -> tuple[dict[str, Any], dt.datetime]:
    """`_read`, from primed snapshots of every one of `refs` if they are fresh (used once)."""
    with _primed_lock:
        found = [_primed.pop(ref.path, None) for ref in refs]
    if all(f is not None and time.monotonic() - f[0] <= PRIMED_SECONDS for f in found):
        snapshots = {f[1].reference.path: f[1] for f in found if f is not None}
        return snapshots, min(snap.read_time for snap in snapshots.values())
    return _read(refs)


def _read(refs: Sequence[firestore.DocumentReference]) -> tuple[dict[str, Any], dt.datetime]:
    """The snapshots of `refs` by path, and the database's time of the read."""
    snapshots = {snap.reference.path: snap for snap in db().get_all(list(refs))}
    read_time = max(snap.read_time for snap in snapshots.values())
    return snapshots, read_time


def _period(
    snapshot: firestore.DocumentSnapshot[Any], business: Business, kind: str, period: str
) -> Period:
    limits = business.limits
    limit = limits.daily_limit_nanos if kind == "day" else limits.monthly_limit_nanos
    if snapshot.exists:
        found = Period.of(snapshot, "day" if kind == "day" else "month")
    else:
        found = Period(
            name=snapshot.id,
            kind="day" if kind == "day" else "month",
            business_id=business.business_id,
            period=period,
            limit=limit,
            version=business.limits_version,
        )
    return found.with_limit(limit, business.limits_version)


def _write(batch: firestore.WriteBatch, period: Period, op: str) -> None:
    fields = {**period.fields(), "last_op": op}
    if period.exists:
        batch.update(
            scope_ref(period.name),
            fields,
            option=db().write_option(last_update_time=period.update_time),
        )
    else:
        batch.create(scope_ref(period.name), fields)


def _applied(name: str, op: str) -> bool:
    """Whether the commit carrying `op` was applied (its acknowledgement lost, the library's
    retry then failing its own precondition)."""
    snapshot = scope_ref(name).get()
    return snapshot.exists and (snapshot.to_dict() or {}).get("last_op") == op


# A take that finds the cap's shards short first asks at most this many other days to give back
# the shares they do not use.
SWEEP_DAYS = 200

# --- sizing --------------------------------------------------------------------------------

# Below this many of the requested amount left, a block is exactly the request: at the margin
# every reservation goes through a commit on the period, so nothing idles in other blocks.
MARGIN_REQUESTS = 8
# Far from the limit a block takes at most this share of what is left, so other instances can
# always take blocks too.
SHARE = 4


def block_size(need: int, want: int, room: int) -> int:
    """How much a block takes: `need` at least; up to `want` far from the limit."""
    if room < need * MARGIN_REQUESTS:
        return need
    return max(need, min(want, room // SHARE))


def _platform_chunk(day: Period, short: int) -> int:
    """How much of the platform's cap a day takes when it needs `short` more: as much again
    as it holds (at least a sixteenth of its limit), never more than its limit allows."""
    grow = max(day.platform, day.limit // 16)
    return max(short, min(grow, day.limit - day.platform))


# --- take ----------------------------------------------------------------------------------


def take(
    business: Business,
    controls: Controls,
    day: str,
    month: str,
    *,
    need: int,
    want: int,
    owner: str,
    view: View | None = None,
    also: Callable[[Any, str], None] | None = None,
) -> Block:
    """Take a block of at least `need` nanos (up to `want`) from the business's `day` and
    `month`, topping the day's share of the platform's cap up first if it is short; with a
    `view`, the published status is written in the same commit from the periods as they will
    then be (no read after the take, and never older than the periods).

    `also(batch, block_id)` adds a write of the caller's to the first commit (the first hold
    on the block: both are applied or neither); a later attempt goes without it if that one
    failed for want of room to create it.

    Raises:
        BudgetDenied: a limit has less than `need` left even counting what blocks hold
            (`daily_budget_exceeded`, `monthly_budget_exceeded`, `platform_cap_reached`).
        BudgetBusy: there is room only once work in flight settles (`budget_held`), or the
            periods stayed too contended to commit (`budget_contention`).
    """
    settings = get_settings()
    ttl = settings.budget_block_ttl_seconds
    home = home_shard(business.business_id, platform.count())
    day_ref, month_ref = (
        scope_ref(scope_name(business.business_id, day)),
        scope_ref(scope_name(business.business_id, month)),
    )
    reconciled: set[str] = set()
    swept = False
    unknown: tuple[str, int] | None = None  # a block whose commit failed, maybe only its answer
    for attempt in range(12):
        home_ref = platform.shard_ref(day, home)
        refs = [day_ref, month_ref, home_ref]
        if unknown is not None:
            refs.append(block_ref(unknown[0]))  # was it applied? (read with the periods)
        snapshots, now = _read_primed(refs) if attempt == 0 else _read(refs)
        if unknown is not None:
            mine = snapshots[refs[-1].path]
            if mine.exists:  # applied: only its acknowledgement was lost
                return _taken(business, controls, day, month, *unknown, ttl, mine.update_time)
            unknown = None
            also = None  # the caller's write may be what failed it: it goes on its own
        day_p = _period(snapshots[day_ref.path], business, "day", day)
        month_p = _period(snapshots[month_ref.path], business, "month", month)
        known = {home: platform.Shard.of(snapshots[home_ref.path], day, home)}
        if not known[home].current(controls):
            known = platform.resplit(day, controls)  # a new day, or a new cap: split it first
        touched: dict[int, platform.Shard] = {}
        if not day_p.platform_current(controls.version, controls.cap_nanos):
            # The cap changed since the day took its share (by the operator, or a lower
            # setting): give back what it does not use, then take again under the new cap.
            day_p, touched = platform.give_back(day_p, known, controls)
            known = {**known, **touched}
            day_p = _platform_marked(day_p, controls)
        room = min(day_p.limit_room, month_p.limit_room)
        if room < need:
            expired = [
                block_id
                for period in (day_p, month_p)
                for block_id, entry in period.blocks.items()
                if entry.expired(now, settings.budget_reconcile_grace_seconds)
                and block_id not in reconciled
            ]
            if expired:
                for block_id in expired:
                    reconciled.add(block_id)
                    reconcile(block_id)
                continue
            raise no_room(day_p if day_p.limit_room < need else month_p, need)
        size = block_size(need, want, room)
        free_share = day_p.platform - day_p.spent - day_p.allocated
        if free_share < size:
            chunk = _platform_chunk(day_p, size - free_share)
            day_p, more = platform.take(day_p, known, home, chunk, need - free_share)
            touched = {**touched, **more}
            size = min(size, day_p.platform - day_p.spent - day_p.allocated)
            if size < need:
                if not swept:
                    # Near the cap: other days may hold shares they do not use. They give them
                    # back (each its own commit), and this take looks again.
                    swept = True
                    return_platform(day, controls, most=SWEEP_DAYS)
                    continue
                raise _platform_refusal(need, day)
        block_id = uuid.uuid4().hex
        entry = OpenBlock(size, None, ttl, controls.version)
        day_p = dataclasses.replace(
            day_p, allocated=day_p.allocated + size, blocks={**day_p.blocks, block_id: entry}
        )
        month_p = dataclasses.replace(
            month_p, allocated=month_p.allocated + size, blocks={**month_p.blocks, block_id: entry}
        )
        op = uuid.uuid4().hex
        batch = db().batch()
        _write(batch, day_p, op)
        _write(batch, month_p, op)
        for shard in touched.values():
            platform.write(batch, shard, op)
        if view is not None:
            batch.set(*view.status(business, controls, day_p, month_p, now))
        batch.create(
            block_ref(block_id),
            {
                "business_id": business.business_id,
                "owner": owner,
                "day": day,
                "month": month,
                "amount_nanos": size,
                "taken_nanos": size,
                "flushed_nanos": 0,
                "ttl_seconds": ttl,
                "limits_version": business.limits_version,
                "controls_version": controls.version,
                "state": "open",
                "taken_at": firestore.SERVER_TIMESTAMP,
                "last_op": op,
            },
        )
        if also is not None:
            also(batch, block_id)
        try:
            results = batch.commit()
        except (exceptions.FailedPrecondition, exceptions.AlreadyExists, exceptions.Aborted):
            # Lost a race, or only the answer (the library's retry then failing): the next
            # read tells, with the periods it needs anyway.
            unknown = (block_id, size)
            _pause(attempt)
            continue
        return _taken(business, controls, day, month, block_id, size, ttl, results[-1].update_time)
    raise BudgetBusy("budget_contention", "the budget is too busy right now, try again")


def _taken(
    business: Business,
    controls: Controls,
    day: str,
    month: str,
    block_id: str,
    size: int,
    ttl: float,
    update_time: Any,
) -> Block:
    logger.info(
        "budget block taken",
        extra=log.fields(
            event="budget_block_taken",
            business_id=business.business_id,
            block=block_id,
            amount_usd=usd(size),
            day=day,
        ),
    )
    return Block(
        block_id,
        business.business_id,
        day,
        month,
        size,
        ttl,
        business.limits_version,
        controls.version,
        update_time,
    )


def warm(business: Business, controls: Controls, day: str, month: str) -> bool:
    """Make the business's `day` and `month` ahead of time (before midnight, before the month
    starts), the day with a first share of the platform's cap, so that the new period's first
    takes find their documents made and the platform's shards are not all written at once.
    Returns whether anything was made (nothing if someone else made it first)."""
    home = home_shard(business.business_id, platform.count())
    day_ref = scope_ref(scope_name(business.business_id, day))
    month_ref = scope_ref(scope_name(business.business_id, month))
    home_ref = platform.shard_ref(day, home)
    snapshots, _ = _read([day_ref, month_ref, home_ref])
    if snapshots[day_ref.path].exists and snapshots[month_ref.path].exists:
        return False
    known = {home: platform.Shard.of(snapshots[home_ref.path], day, home)}
    if not known[home].current(controls):
        known = platform.resplit(day, controls)
    op = uuid.uuid4().hex
    batch = db().batch()
    touched: dict[int, platform.Shard] = {}
    if not snapshots[day_ref.path].exists:
        day_p = _period(snapshots[day_ref.path], business, "day", day)
        day_p, touched = platform.take(day_p, known, home, _platform_chunk(day_p, 0), 0)
        _write(batch, _platform_marked(day_p, controls), op)
    if not snapshots[month_ref.path].exists:
        _write(batch, _period(snapshots[month_ref.path], business, "month", month), op)
    for shard in touched.values():
        platform.write(batch, shard, op)
    try:
        batch.commit()
    except (exceptions.FailedPrecondition, exceptions.AlreadyExists, exceptions.Aborted):
        return False
    return True


def _pause(attempt: int) -> None:
    import random

    time.sleep(random.uniform(0, min(0.01 * 2**attempt, 0.5)))


def no_room(period: Period, need: int) -> BudgetDenied | BudgetBusy:
    """The answer when `period` has less than `need` left: busy (retry) when enough is only
    out in blocks of work in flight, refused when even that would not make room."""
    label = "daily budget" if period.kind == "day" else "monthly budget"
    reason = "daily_budget_exceeded" if period.kind == "day" else "monthly_budget_exceeded"
    left = max(period.limit - period.spent - period.allocated, 0)
    held = f"; {format_usd(period.allocated)} is held by work in flight" if period.allocated else ""
    message = (
        f"{label} exceeded: {format_usd(need)} needed, {format_usd(left)} of "
        f"{format_usd(period.limit, 2)} left{held} ({period.name})"
    )
    if period.limit - period.spent >= need:
        return BudgetBusy("budget_held", message.replace("exceeded", "held", 1))
    return BudgetDenied(reason, message)


def _platform_refusal(need: int, day: str) -> BudgetDenied:
    return BudgetDenied(
        "platform_cap_reached",
        f"platform daily cap reached: {format_usd(need)} needed ({day})",
    )


def _platform_marked(day_p: Period, controls: Controls) -> Period:
    """The day, marked as holding its share under `controls` once no block taken under older
    ones is out (until then, each take gives back what such blocks have returned)."""
    if any(entry.controls_version < controls.version for entry in day_p.blocks.values()):
        return day_p
    return dataclasses.replace(
        day_p, platform_version=controls.version, platform_cap=controls.cap_nanos
    )


def return_platform(day: str, controls: Controls, *, most: int | None = None) -> int:
    """After a new cap (or near it): split `day`'s shards under the cap in force, then every
    business day of `day` (at most `most` of them) gives back what it holds of the cap and does
    not use (each in its own optimistic commit), paying the shards' debts first. Returns how
    many days gave some back."""
    known = platform.resplit(day, controls)
    query = (
        db()
        .collection(SCOPES)
        .where(filter=FieldFilter("kind", "==", "day"))
        .where(filter=FieldFilter("period", "==", day))
    )
    if most is not None:
        query = query.limit(most)
    returned = 0
    for snapshot in query.stream():
        for attempt in range(8):
            day_p = Period.of(scope_ref(snapshot.id).get(), "day")
            if day_p.platform_current(controls.version, controls.cap_nanos):
                break
            known = {**known, **platform.read(day, list(day_p.platform_from))}
            day_p, touched = platform.give_back(day_p, known, controls)
            day_p = _platform_marked(day_p, controls)
            op = uuid.uuid4().hex
            batch = db().batch()
            _write(batch, day_p, op)
            for shard in touched.values():
                platform.write(batch, shard, op)
            try:
                batch.commit()
            except (exceptions.FailedPrecondition, exceptions.AlreadyExists, exceptions.Aborted):
                if not _applied(day_p.name, op):
                    _pause(attempt)
                    continue
            returned += 1
            break
    return returned


# --- owner's commits -----------------------------------------------------------------------

# An owner's flush or close that loses this many races for its periods to other commits moves its
# money blindly instead (server-side increments, no precondition on the periods, nothing else
# written): its caller then publishes the status from a read.
OWNER_ATTEMPTS = 8


def flush(
    block: Block, spent: int, released: int | None = None, *, view: View | None = None
) -> tuple[Block, Left | None]:
    """Move `spent` nanos the block has spent into its day and month, and give back `released`
    nanos of its amount in all (at least `spent`; by default just that): the block shrinks by
    `released` (grows, when it is negative). With a `view`, what clients see is written in the
    same commit (as `close` does). Returns the block after, and the periods as left (None when
    they were moved blindly). Raises `Stale` if the block was reconciled meanwhile."""
    released = spent if released is None else released
    fields = {
        "amount_nanos": firestore.Increment(-released),
        "flushed_nanos": firestore.Increment(spent),
    }
    update_time, left = _give_back(block, spent, released, fields, view, closing=False)
    return dataclasses.replace(block, amount=block.amount - released, update_time=update_time), left


def close(block: Block, spent: int, *, view: View | None = None) -> Left | None:
    """Close the block: move the `spent` nanos not flushed yet into its day and month and give
    back the rest of its amount. With a `view`: one read of the day, the month and the block,
    then one commit conditional on them that also writes the published status and the alert of
    each threshold first found reached (read again after a lost race; after `OWNER_ATTEMPTS`, or
    without a view, the money moves blindly). Returns the periods as left (None when moved
    blindly: the caller shows them from a read). Raises `Stale` if the block was reconciled
    meanwhile."""
    _, left = _give_back(block, spent, block.amount, _closed(spent), view, closing=True)
    _log_closed(block, spent)
    return left


@dataclass(frozen=True)
class Prepared:
    """An owner's give-back prepared from one read, for a commit: `add` puts its writes (the
    periods and the block conditional on their versions as read, the status, the alerts) in
    a batch; `left` is the periods as that commit leaves them."""

    block: Block
    spent: int
    op: str
    add: Callable[[Any], None]
    left: Left


def close_in(block: Block, spent: int, view: View) -> Prepared | None:
    """`close`, prepared for the caller's own commit (one read now; the caller logs it with
    `closed_in` once committed, or calls `close` if its commit failed). None when it cannot be
    prepared that way (the periods not as the take left them, the business unreadable): then
    `close` it. Raises `Stale` if the block was reconciled meanwhile."""
    try:
        prepared = _prepare(block, spent, block.amount, _closed(spent), view, True, {})
    except (errors.NotFound, errors.Conflict):
        return None
    return prepared if isinstance(prepared, Prepared) else None


def closed_in(prepared: Prepared) -> None:
    """The caller's commit closed `prepared`'s block."""
    _log_closed(prepared.block, prepared.spent)


def _closed(spent: int) -> dict[str, Any]:
    return {
        "state": "closed",
        "closed_by": "owner",
        "charged_nanos": firestore.Increment(0),
        "closed_spent_nanos": spent,
        "closed_at": firestore.SERVER_TIMESTAMP,
    }


def _log_closed(block: Block, spent: int) -> None:
    logger.info(
        "budget block closed",
        extra=log.fields(
            event="budget_block_closed",
            business_id=block.business_id,
            block=block.block_id,
            spent_usd=usd(spent),
            returned_usd=usd(block.amount - spent),
        ),
    )


def _give_back(
    block: Block,
    spent: int,
    released: int,
    fields: dict[str, Any],
    view: View | None,
    *,
    closing: bool,
) -> tuple[Any, Left | None]:
    """Move `spent` into the block's periods and `released` out of what they hold in it (its
    entry removed when `closing`), and write `fields` on the block, conditional on its version.
    Returns the block document's version after, and the periods as left."""
    if view is not None:
        try:
            shown = _give_back_shown(block, spent, released, fields, view, closing=closing)
        except (errors.NotFound, errors.Conflict):
            shown = None  # the business cannot be read (removed, misconfigured): moved blindly
        if shown is not None:
            return shown
    op = uuid.uuid4().hex
    moved = {
        "spent_nanos": firestore.Increment(spent),
        "allocated_nanos": firestore.Increment(-released),
        **_entry_change(block, released, closing),
        "updated_at": firestore.SERVER_TIMESTAMP,
    }
    batch = db().batch()
    for scope in (block.day_scope, block.month_scope):
        batch.update(scope_ref(scope), moved)
    batch.update(
        block_ref(block.block_id),
        {**fields, "last_op": op},
        option=db().write_option(last_update_time=block.update_time),
    )
    results = _commit_owned(block, batch, op)
    update_time = (
        results[-1].update_time if results else block_ref(block.block_id).get().update_time
    )
    return update_time, None


def _give_back_shown(
    block: Block,
    spent: int,
    released: int,
    fields: dict[str, Any],
    view: View,
    *,
    closing: bool,
) -> tuple[Any, Left] | None:
    """`_give_back` as one commit conditional on the day and month as read, which also writes
    what clients see of them. None after `OWNER_ATTEMPTS` lost races (nothing written)."""
    sent: dict[str, Left] = {}  # by op, for a commit applied whose acknowledgement was lost
    for attempt in range(OWNER_ATTEMPTS):
        prepared = _prepare(block, spent, released, fields, view, closing, sent)
        if not isinstance(prepared, Prepared):
            return prepared
        sent[prepared.op] = prepared.left
        batch = db().batch()
        prepared.add(batch)
        try:
            results = batch.commit()
        except (exceptions.FailedPrecondition, exceptions.NotFound):
            _pause(attempt)  # something changed since the read: the next read says what
            continue
        return results[-1].update_time, prepared.left
    return None


def _prepare(
    block: Block,
    spent: int,
    released: int,
    fields: dict[str, Any],
    view: View,
    closing: bool,
    sent: dict[str, Left],
) -> Prepared | tuple[Any, Left] | None:
    """One read of the day, the month and the block, and the give-back's writes from it; or,
    when an earlier commit of this give-back (an op in `sent`) turns out applied, its block's
    version and periods; None when the periods are not as the take left them. Raises `Stale`
    if the block was reconciled meanwhile."""
    mine = block_ref(block.block_id)
    day_ref, month_ref = scope_ref(block.day_scope), scope_ref(block.month_scope)
    found, snapshots = sources.read_with(block.business_id, [day_ref, month_ref, mine])
    stored = snapshots[mine.path]
    if stored.update_time != block.update_time:
        last_op = (stored.to_dict() or {}).get("last_op")
        if last_op in sent:
            return stored.update_time, sent[last_op]
        raise Stale(block.block_id)
    day_snapshot, month_snapshot = snapshots[day_ref.path], snapshots[month_ref.path]
    if not (day_snapshot.exists and month_snapshot.exists):
        return None  # not as its take left them: the blind commit finds out why
    now = max(day_snapshot.read_time, month_snapshot.read_time)
    business = found.business
    limits = business.limits
    day_p = _given_back(Period.of(day_snapshot, "day"), block, spent, released, closing)
    month_p = _given_back(Period.of(month_snapshot, "month"), block, spent, released, closing)
    day_shown = day_p.with_limit(limits.daily_limit_nanos, business.limits_version)
    month_shown = month_p.with_limit(limits.monthly_limit_nanos, business.limits_version)
    reached = tuple(
        (period, level)
        for period in (day_shown, month_shown)
        for level in period.reached
        if level not in period.warned
    )
    op = uuid.uuid4().hex

    def add(batch: Any) -> None:
        for period, shown in ((day_p, day_shown), (month_p, month_shown)):
            batch.update(
                scope_ref(period.name),
                {
                    "spent_nanos": period.spent,
                    "allocated_nanos": period.allocated,
                    **_entry_change(block, released, closing),
                    "warned": sorted({*period.warned, *shown.reached}),
                    "updated_at": firestore.SERVER_TIMESTAMP,
                },
                option=db().write_option(last_update_time=period.update_time),
            )
        batch.set(*view.status(business, found.controls, day_shown, month_shown, now))
        for period, level in reached:
            batch.set(*view.alert(period, level))
        batch.update(
            mine,
            {**fields, "last_op": op},
            option=db().write_option(last_update_time=block.update_time),
        )

    return Prepared(block, spent, op, add, Left(business, day_shown, month_shown, reached))


def _given_back(period: Period, block: Block, spent: int, released: int, closing: bool) -> Period:
    """`period` with `spent` of the block's money spent and `released` of it out of the block
    (its entry gone when `closing`)."""
    blocks = dict(period.blocks)
    entry = blocks.pop(block.block_id, None)
    if entry is not None and not closing:
        blocks[block.block_id] = dataclasses.replace(entry, amount=entry.amount - released)
    return dataclasses.replace(
        period, spent=period.spent + spent, allocated=period.allocated - released, blocks=blocks
    )


def _entry_change(block: Block, released: int, closing: bool) -> dict[str, Any]:
    """The change to a period's entry of `block`: gone when `closing`, else `released` less."""
    entry = f"blocks.{block.block_id}"
    if closing:
        return {entry: firestore.DELETE_FIELD}
    return {f"{entry}.amount_nanos": firestore.Increment(-released)}


def _commit_owned(block: Block, batch: firestore.WriteBatch, op: str) -> Any:
    """Commit the owner's `batch` (whose last write is the block's, under its precondition)."""
    try:
        return batch.commit()
    except (exceptions.FailedPrecondition, exceptions.NotFound):
        snapshot = block_ref(block.block_id).get()
        if snapshot.exists and (snapshot.to_dict() or {}).get("last_op") == op:
            return None  # applied; only its acknowledgement was lost
        raise Stale(block.block_id) from None


# --- reconciling what a vanished owner left ------------------------------------------------


def reconcile(block_id: str) -> bool:
    """Close a block whose owner did not (expired by the database's clock), from its usage
    records: holds still unsettled are frozen and charged at their upper bound (their calls may
    have been billed; a late settle turns that into the actual cost), settled ones at their
    cost. Safe to run by anyone, any number of times, and to resume. Returns True if the block
    is closed afterwards."""
    settings = get_settings()
    for attempt in range(8):
        snapshot = block_ref(block_id).get()
        if not snapshot.exists:
            return False
        data = snapshot.to_dict() or {}
        if data.get("state") == "closed":
            return True
        if data.get("state") == "open":
            taken_at = data.get("taken_at")
            expiry = float(data["ttl_seconds"]) + settings.budget_reconcile_grace_seconds
            if taken_at is None or snapshot.read_time <= taken_at + dt.timedelta(seconds=expiry):
                return False
            try:
                block_ref(block_id).update(
                    {"state": "closing", "closing_at": firestore.SERVER_TIMESTAMP},
                    option=db().write_option(last_update_time=snapshot.update_time),
                )
            except (exceptions.FailedPrecondition, exceptions.NotFound):
                _pause(attempt)
                continue
            snapshot = block_ref(block_id).get()
            data = snapshot.to_dict() or {}
        _freeze_holds(block_id)
        query = db().collection(USAGE).where(filter=FieldFilter("block", "==", block_id))
        totals = aggregation.AggregationQuery(query)
        totals.sum("charged_nanos", alias="charged")
        rows: Any = totals.get()
        charged = int(rows[0][0].value or 0)
        flushed = int(data.get("flushed_nanos", 0))
        amount = int(data["amount_nanos"])
        spent = charged - flushed
        fields = {
            "spent_nanos": firestore.Increment(spent),
            "allocated_nanos": firestore.Increment(-amount),
            f"blocks.{block_id}": firestore.DELETE_FIELD,
            "updated_at": firestore.SERVER_TIMESTAMP,
        }
        batch = db().batch()
        for period in (data["day"], data["month"]):
            batch.update(scope_ref(scope_name(data["business_id"], period)), fields)
        batch.update(
            block_ref(block_id),
            {
                "state": "closed",
                "closed_by": "reconciler",
                "closed_spent_nanos": spent,
                "charged_nanos": charged,
                "closed_at": firestore.SERVER_TIMESTAMP,
            },
            option=db().write_option(last_update_time=snapshot.update_time),
        )
        try:
            batch.commit()
        except (exceptions.FailedPrecondition, exceptions.NotFound):
            _pause(attempt)
            continue  # someone else finished it (or is finishing): look again
        logger.warning(
            "budget block reconciled",
            extra=log.fields(
                event="budget_block_reconciled",
                business_id=data["business_id"],
                block=block_id,
                charged_usd=usd(charged),
                returned_usd=usd(amount - spent),
            ),
        )
        return True
    return False


def _freeze_holds(block_id: str) -> None:
    """Every hold of the block still unsettled becomes `abandoned`, charged its upper bound; a
    settle that lands first wins (each freeze is conditional on the hold's version)."""
    writer = group_writer(db())
    for _ in range(8):
        query = (
            db()
            .collection(USAGE)
            .where(filter=FieldFilter("block", "==", block_id))
            .where(filter=FieldFilter("state", "==", "held"))
        )
        held = list(query.stream())
        if not held:
            return
        for snapshot in held:
            bound = int((snapshot.to_dict() or {}).get("bound_nanos", 0))

            def freeze(batch: Any, snapshot: Any = snapshot, bound: int = bound) -> None:
                batch.update(
                    snapshot.reference,
                    {
                        "state": "abandoned",
                        "charged_nanos": bound,
                        "ended_at": firestore.SERVER_TIMESTAMP,
                    },
                    option=db().write_option(last_update_time=snapshot.update_time),
                )

            writer.write(snapshot.reference, freeze)
