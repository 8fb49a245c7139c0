"""Escrow counters: a spending limit split into shard allowances that atomic increments touch.

A scope (a business's UTC day or calendar month, or the platform's day) has a limit and
`shards` documents `budget_counters/{scope}#{i}`, each holding `headroom_nanos` (its share of
what may still be committed), `reserved_nanos` and `spent_nanos` (for reporting) and `paused`.
Its document `budget_scopes/{scope}` records the limit and the version of the limit's source
document (the business, or the platform controls) the shards were last split from, and a
`debt_nanos` (below).

The hot path takes an amount from one shard with one server-side increment, and the commit
returns the new value: it is granted only if that value is not negative, otherwise it is given
back. Everything else that touches headroom as a whole -- creating a scope, applying a changed
limit, gathering headroom into one shard -- is a transaction that reads the scope and every
shard and writes them back (`sync`), so it sees every increment before it and each change lands
on every shard at once; a transaction is a set, not an increment, so running it twice (a lost
acknowledgement, a retry) changes nothing more.

The truth of a scope is `limit - spent - reserved = sum(headroom) + (shards - 1) * debt`. When a
lower limit (or a settle after expiry) leaves less than nothing, `sync` sets every shard to that
same negative amount and records its size as the debt: no shard can grant again until the money
coming back to it (settles below their reservation, released holds) has repaid the whole debt,
so nothing is granted while the scope is over its limit (docs/decisions/006).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from google.api_core import exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from common.llm.base import BudgetBusy
from common.money import usd
from common.platform import log
from common.platform.process import TtlCache
from common.platform.store import db

COUNTERS = "budget_counters"
SCOPES = "budget_scopes"
HEADROOM = "headroom_nanos"
RESERVED = "reserved_nanos"
SPENT = "spent_nanos"
PAUSED = "paused"
logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Limit:
    """A scope's limit as its source document states it."""

    nanos: int
    version: int
    paused: bool = False


@dataclass(frozen=True)
class Scope:
    """One limit: a business's day or month, or the platform's day.

    `source` is the document the limit comes from and `limit_of` reads it there; `version` is
    the caller's version of that document, so a caller holding a newer one brings the scope up
    to date and one holding an older one never takes it back.
    """

    name: str  # e.g. "acme:2026-11-25"
    kind: str  # "day" | "month" | "platform"
    shards: int  # for a new scope; an existing one keeps its own
    reason: str  # why a task is refused when this scope has no room
    source: firestore.DocumentReference
    limit_of: Callable[[dict[str, Any]], Limit] = field(compare=False)
    version: int = 0

    @property
    def meta(self) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = db().collection(SCOPES).document(self.name)
        return ref

    def ref(self, shard: int) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = (
            db().collection(COUNTERS).document(f"{self.name}#{shard}")
        )
        return ref

    def refs(self, shards: int | None = None) -> list[firestore.DocumentReference]:
        return [self.ref(shard) for shard in range(shards or self.shards)]


@dataclass(frozen=True)
class Stored:
    """What `budget_scopes/{scope}` holds (and, right after a `sync`, the scope's headroom)."""

    limit: int
    version: int
    shards: int
    debt: int = 0
    changes: tuple[dict[str, Any], ...] = ()
    headroom: int | None = None

    @classmethod
    def of(cls, data: dict[str, Any]) -> Stored:
        return cls(
            limit=int(data["limit_nanos"]),
            version=int(data.get("version", 0)),
            shards=int(data["shards"]),
            debt=int(data.get("debt_nanos", 0)),
            changes=tuple(data.get("changes", ())),
        )


@dataclass(frozen=True)
class Totals:
    """A scope's sums: what may still be committed (`headroom`), reserved and spent, and the
    limit they are counted against."""

    headroom: int = 0
    reserved: int = 0
    spent: int = 0
    limit: int = 0


def moved(*, headroom: int = 0, reserved: int = 0, spent: int = 0) -> dict[str, Any]:
    """The fields of one atomic change to a shard."""
    return {
        HEADROOM: firestore.Increment(headroom),
        RESERVED: firestore.Increment(reserved),
        SPENT: firestore.Increment(spent),
        "updated_at": firestore.SERVER_TIMESTAMP,
    }


def transformed(result: Any, fields: dict[str, Any], name: str) -> int:
    """The value field `name` had right after the write of `fields` whose `WriteResult` this is
    (Firestore returns transform results in field-path order)."""
    return int(result.transform_results[sorted(fields).index(name)].integer_value)


def random_shard(shards: int) -> int:
    return random.randrange(shards)


def split(amount: int, shards: int) -> list[int]:
    share, rest = divmod(amount, shards)
    return [share + (1 if shard < rest else 0) for shard in range(shards)]


def retrying(operation: Callable[[], T], *, what: str, attempts: int = 8, rerun: bool = False) -> T:
    """`operation()`, again after a jittered pause while Firestore aborts it for contention;
    `BudgetBusy` if it never gets through. With `rerun`, the operation is a transaction that may
    run again whatever became of its commit (its writes are sets computed from what it reads), so
    an unknown outcome -- a lost acknowledgement whose retry finds the transaction gone -- is
    retried too."""
    again: tuple[type[Exception], ...] = (exceptions.Aborted,)
    if rerun:
        again += (exceptions.InvalidArgument, exceptions.NotFound, exceptions.FailedPrecondition)
    for attempt in range(attempts):
        try:
            return operation()
        except again:
            pass
        except ValueError as exhausted:  # the transaction's own commit retries, all aborted
            if not isinstance(exhausted.__cause__, exceptions.Aborted):
                raise
        time.sleep(random.uniform(0, min(0.02 * 2**attempt, 1.0)))
    raise BudgetBusy("budget_contention", f"{what}: the budget is too busy right now, try again")


LOCKS = "budget_locks"
_TURN_SECONDS = 5.0
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _scope_lock(name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(name, threading.Lock())


@contextlib.contextmanager
def _turn(name: str) -> Iterator[None]:
    """Take turns with other processes for a scope's transaction.

    The emulator (and production Firestore under contention) locks what a transaction reads;
    two transactions that both read a scope and then both write it wait on each other until one
    is aborted, and retried together they can keep aborting each other. A short lease document
    `budget_locks/{scope}` lets them queue instead. It is only an optimisation: the transaction
    is correct without it, so a lease left by a dead holder expires after a few seconds and a
    caller that waits too long goes ahead.
    """
    ref = db().collection(LOCKS).document(name)
    me = uuid.uuid4().hex
    deadline = time.monotonic() + _TURN_SECONDS
    taken: Any = None
    while taken is None and time.monotonic() < deadline:
        now = dt.datetime.now(dt.UTC)
        lease = {"holder": me, "until": now + dt.timedelta(seconds=_TURN_SECONDS)}
        try:
            taken = ref.create(lease)
        except exceptions.AlreadyExists:
            held = ref.get()
            data = held.to_dict() or {}
            if data.get("holder") == me:  # our create, its answer lost
                taken = held
            elif held.exists and data.get("until", now) <= now:
                with contextlib.suppress(exceptions.FailedPrecondition, exceptions.NotFound):
                    taken = ref.update(
                        lease, option=db().write_option(last_update_time=held.update_time)
                    )
            if taken is None:
                time.sleep(random.uniform(0.005, 0.03))
    try:
        yield
    finally:
        if taken is not None:
            with contextlib.suppress(exceptions.FailedPrecondition, exceptions.NotFound):
                ref.delete(option=db().write_option(last_update_time=taken.update_time))


# What `prepare` last saw of each scope, by (project, scope name).
_seen: TtlCache[Stored] = TtlCache()


def prepare(scopes: Sequence[Scope], *, max_age: float = 0.0) -> list[Stored]:
    """Each scope as stored, created if it is new and brought up to date if the caller holds a
    newer version of its limit. What this process saw at most `max_age` seconds ago is reused
    (the shards' headroom stays the truth, so that only delays noticing a change made elsewhere
    that the change itself did not already apply)."""
    found: dict[str, Stored] = {}
    missing = []
    for scope in scopes:
        seen = _seen.get((db().project, scope.name), max_age) if max_age > 0 else None
        if seen is not None and seen.version >= scope.version:
            found[scope.name] = seen
        else:
            missing.append(scope)
    if missing:
        snapshots = {s.id: s for s in db().get_all([scope.meta for scope in missing])}
        for scope in missing:
            snapshot = snapshots[scope.name]
            if not snapshot.exists:
                stored = _create(scope) or sync(scope)
            else:
                stored = Stored.of(snapshot.to_dict() or {})
                if stored.version < scope.version:
                    stored = sync(scope)
            _seen.put((db().project, scope.name), stored)
            found[scope.name] = stored
    return [found[scope.name] for scope in scopes]


def _create(scope: Scope) -> Stored | None:
    """A new scope in one batch, without a transaction (a burst of first uses of a new day must
    not queue): its limit split over its shards, on condition that its source has not changed
    since it was read (the batch touches the source under that precondition), so a limit change
    cannot slip in between. None if someone else made it first, or the source changed: the
    caller then reads the scope, or falls back to `sync`."""
    source = scope.source.get()
    current = scope.limit_of(source.to_dict() or {} if source.exists else {})
    batch = db().batch()
    batch.create(
        scope.meta,
        {
            "kind": scope.kind,
            "limit_nanos": current.nanos,
            "version": current.version,
            "shards": scope.shards,
            "debt_nanos": 0,
            "changes": [],
            "updated_at": firestore.SERVER_TIMESTAMP,
        },
    )
    for shard, share in enumerate(split(current.nanos, scope.shards)):
        batch.create(
            scope.ref(shard),
            {
                "scope": scope.name,
                HEADROOM: share,
                RESERVED: 0,
                SPENT: 0,
                PAUSED: int(current.paused),
                "updated_at": firestore.SERVER_TIMESTAMP,
            },
        )
    mark = {"budget_period_made_at": firestore.SERVER_TIMESTAMP}
    if source.exists:
        batch.update(
            scope.source, mark, option=db().write_option(last_update_time=source.update_time)
        )
    else:
        batch.create(scope.source, {"version": 0, **mark})
    try:
        retrying(batch.commit, what=f"creating {scope.name}")
    except (exceptions.AlreadyExists, exceptions.FailedPrecondition, exceptions.NotFound):
        meta = scope.meta.get()
        return Stored.of(meta.to_dict() or {}) if meta.exists else None
    return Stored(current.nanos, current.version, scope.shards)


def forget(scope: Scope) -> None:
    """Drop what this process saw of `scope`, so the next `prepare` reads it."""
    _seen.forget((db().project, scope.name))


def sync(scope: Scope, *, gather: tuple[int, int] | None = None) -> Stored:
    """Bring `scope` up to date with its source, in one transaction: create it if it is new,
    apply a newer limit (or pause) to every shard, and with `gather=(shard, amount)` move
    headroom so that shard holds at least `amount` if the scope has that much.

    Returns:
        The scope as stored afterwards.
    """
    before: list[Stored | None] = [None]

    @firestore.transactional
    def run(transaction: firestore.Transaction) -> Stored:
        read = _read_all(transaction, [scope.meta, scope.source])
        meta, source = read[scope.meta.path], read[scope.source.path]
        current = scope.limit_of(source.to_dict() or {} if source.exists else {})
        old = Stored.of(meta.to_dict() or {}) if meta.exists else None
        shards = old.shards if old else scope.shards
        rows = {
            int(path.rsplit("#", 1)[1]): snap.to_dict() or {}
            for path, snap in _read_all(transaction, scope.refs(shards)).items()
            if snap.exists
        }
        truth = sum(int(row.get(HEADROOM, 0)) for row in rows.values())
        if old is None:
            # A shard written before its scope existed (data of an older version) keeps what
            # was added to it on top of its share.
            new = Stored(current.nanos, current.version, shards)
            truth += current.nanos
        else:
            truth += (shards - 1) * old.debt
            new = old
            if current.version > old.version:
                changes = old.changes
                if current.nanos != old.limit:
                    change = {"version": current.version, "from_usd": usd(old.limit)}
                    changes = (*changes, {**change, "to_usd": usd(current.nanos)})
                truth += current.nanos - old.limit
                new = Stored(current.nanos, current.version, shards, old.debt, changes)
        if truth >= 0:
            amount = gather[1] if gather is not None and truth >= gather[1] else 0
            values = split(truth - amount, shards)
            if amount:
                values[gather[0]] += amount  # type: ignore[index]
            debt = 0
        else:  # over the limit: every shard holds the whole debt (see the module docstring)
            values, debt = [truth] * shards, -truth
        for shard in range(shards):
            row = rows.get(shard, {})
            transaction.set(
                scope.ref(shard),
                {
                    "scope": scope.name,
                    HEADROOM: values[shard],
                    RESERVED: int(row.get(RESERVED, 0)),
                    SPENT: int(row.get(SPENT, 0)),
                    PAUSED: int(current.paused),
                    "updated_at": firestore.SERVER_TIMESTAMP,
                },
            )
        new = Stored(new.limit, new.version, shards, debt, new.changes, headroom=truth)
        transaction.set(
            scope.meta,
            {
                "kind": scope.kind,
                "limit_nanos": new.limit,
                "version": new.version,
                "shards": shards,
                "debt_nanos": debt,
                "changes": list(new.changes),
                "updated_at": firestore.SERVER_TIMESTAMP,
            },
        )
        before[0] = old
        return new

    def attempt() -> Stored:
        try:
            done: Stored = run(db().transaction())
            return done
        except (exceptions.InvalidArgument, exceptions.NotFound, exceptions.FailedPrecondition):
            # The commit's outcome is unknown (its answer lost, the retry finding the transaction
            # closed). If the scope is now as this call wanted it, the commit went through.
            found = _already(scope, gather)
            if found is None:
                raise
            return found

    with _scope_lock(scope.name):  # one transaction per scope per process at a time
        # Whoever went before may have done what this call wants (a burst of first uses of a
        # new day, of gathers on one shard): then no transaction is needed.
        done = _already(scope, gather)
        if done is None:
            with _turn(scope.name):  # and one at a time across processes
                done = _already(scope, gather)
                if done is None:
                    done = retrying(attempt, what=f"updating {scope.name}", rerun=True)
        after: Stored = done
    old = before[0]
    if old is not None and old.limit != after.limit:
        logger.info(
            "budget limit changed",
            extra=log.fields(
                event="budget_limit_changed",
                scope=scope.name,
                from_usd=usd(old.limit),
                to_usd=usd(after.limit),
                version=after.version,
            ),
        )
    _seen.put((db().project, scope.name), replace(after, headroom=None))
    return after


def _already(scope: Scope, gather: tuple[int, int] | None) -> Stored | None:
    """The scope as stored if it is up to date with its source (and, for `gather`, its target
    shard holds the amount, or the scope has less than that); else None."""
    meta, source = scope.meta.get(), scope.source.get()
    if not meta.exists:
        return None
    kept = Stored.of(meta.to_dict() or {})
    if scope.limit_of(source.to_dict() or {} if source.exists else {}).version > kept.version:
        return None
    rows = {s.id: s.to_dict() or {} for s in db().get_all(scope.refs(kept.shards)) if s.exists}
    values = [int(rows.get(scope.ref(i).id, {}).get(HEADROOM, 0)) for i in range(kept.shards)]
    truth = sum(values) + (kept.shards - 1) * kept.debt
    if gather is not None and values[gather[0]] < gather[1] <= truth:
        return None
    return replace(kept, headroom=truth)


def _read_all(
    transaction: firestore.Transaction, refs: Sequence[firestore.DocumentReference]
) -> dict[str, Any]:
    """The snapshots of `refs` by path (Firestore answers in any order)."""
    return {snap.reference.path: snap for snap in transaction.get_all(list(refs))}


def read(scopes: Iterable[Scope]) -> dict[str, Totals]:
    """Each existing scope's totals (two round trips); scopes never used are left out."""
    found = stored(scopes)
    by_name = {scope.name: scope for scope in scopes}
    refs = [ref for name, s in found.items() for ref in by_name[name].refs(s.shards)]
    sums = {name: [0, 0, 0] for name in found}
    for snapshot in db().get_all(refs):
        if snapshot.exists:
            data = snapshot.to_dict() or {}
            total = sums[snapshot.id.rsplit("#", 1)[0]]
            total[0] += int(data.get(HEADROOM, 0))
            total[1] += int(data.get(RESERVED, 0))
            total[2] += int(data.get(SPENT, 0))
    return {
        name: Totals(
            headroom=values[0] + (found[name].shards - 1) * found[name].debt,
            reserved=values[1],
            spent=values[2],
            limit=found[name].limit,
        )
        for name, values in sums.items()
    }


def open_scopes(prefix: str, since: str) -> list[str]:
    """The names of the scopes `{prefix}:...` from period `since` on (a day or a month key;
    later periods too, for clocks ahead of this one), by document id, with no index needed."""
    collection = db().collection(SCOPES)
    query = (
        collection.where(
            filter=FieldFilter("__name__", ">=", collection.document(f"{prefix}:{since}"))
        )
        .where(filter=FieldFilter("__name__", "<", collection.document(f"{prefix};")))
        .select([])
    )
    return [snapshot.id for snapshot in query.stream()]


def stored(scopes: Iterable[Scope]) -> dict[str, Stored]:
    """Each existing scope's stored state (one round trip)."""
    scopes = list(scopes)
    return {
        snapshot.id: Stored.of(snapshot.to_dict() or {})
        for snapshot in db().get_all([scope.meta for scope in scopes])
        if snapshot.exists
    }
