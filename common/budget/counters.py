"""Escrow counters: a spending limit split into shard allowances that only atomic increments touch.

A scope (a business's UTC day or calendar month, or the platform's day) has a limit and
`shards` documents `budget_counters/{scope}#{i}`, each holding `headroom_nanos` — its share of
what may still be committed — plus `reserved_nanos` and `spent_nanos` for reporting. The scope's
document `budget_scopes/{scope}` records the limit the headroom was split from.

Taking an amount is one server-side increment of a shard's headroom, and the commit returns the
new value: it is granted only if that value is not negative, otherwise it is given back. Every
shard's headroom therefore stays what the limit allows, and the sum of what is taken never
exceeds the limit — no transaction, no hot document (docs/decisions/006-budget-counters.md).
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from google.api_core import exceptions
from google.cloud import firestore

from common.platform import log
from common.platform.process import TtlCache
from common.platform.store import db

COUNTERS = "budget_counters"
SCOPES = "budget_scopes"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scope:
    """One limit: a business's day or month, or the platform's day."""

    name: str  # e.g. "acme:2026-11-25"
    kind: str  # "day" | "month" | "platform"
    limit_nanos: int
    shards: int
    reason: str  # why a task is refused when this scope has no room

    def ref(self, shard: int) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = (
            db().collection(COUNTERS).document(f"{self.name}#{shard}")
        )
        return ref

    def refs(self) -> list[firestore.DocumentReference]:
        return [self.ref(shard) for shard in range(self.shards)]

    def random_shard(self) -> int:
        return random.randrange(self.shards)


@dataclass(frozen=True)
class Totals:
    """A scope's sums over its shards."""

    headroom: int = 0
    reserved: int = 0
    spent: int = 0


def moved(*, headroom: int = 0, reserved: int = 0, spent: int = 0) -> dict[str, Any]:
    """The fields of one atomic change to a shard."""
    return {
        "headroom_nanos": firestore.Increment(headroom),
        "reserved_nanos": firestore.Increment(reserved),
        "spent_nanos": firestore.Increment(spent),
        "updated_at": firestore.SERVER_TIMESTAMP,
    }


# Firestore returns transform results in field-path order; this is where the headroom lands.
HEADROOM = sorted(moved()).index("headroom_nanos")


def headroom_after(result: Any) -> int:
    """The shard's headroom right after the write whose `WriteResult` this is."""
    return int(result.transform_results[HEADROOM].integer_value)


def _split(limit: int, shards: int) -> list[int]:
    share, rest = divmod(limit, shards)
    return [share + (1 if shard < rest else 0) for shard in range(shards)]


# What `prepare` last saw, by (project, document path): the stored scope or data.
_seen: TtlCache[Any] = TtlCache()


def _cached(ref: firestore.DocumentReference, max_age: float) -> Any | None:
    return _seen.get((db().project, ref.path), max_age)


def forget(ref: firestore.DocumentReference) -> None:
    """Drop what this process saw of `ref`, so the next `prepare` reads it."""
    _seen.forget((db().project, ref.path))


def prepare(
    scopes: Sequence[Scope],
    also: Sequence[firestore.DocumentReference] = (),
    *,
    max_age: float = 0.0,
) -> tuple[list[Scope], dict[str, dict[str, Any]]]:
    """Make sure each scope exists with its current limit; read `also` in the same round trip.

    A new scope gets its limit split over its shards in one atomic batch. When a limit changed
    (a business's override, a new tier), the difference is added to shard 0, once, guarded by a
    precondition on the scope document. The shard count of an existing scope never changes.
    With `max_age`, what this process saw that recently is reused instead of read again: the
    shards' headroom stays the truth, so this only delays noticing a changed limit (or `also`).

    Returns:
        The scopes as stored (their shard counts), and the data of `also` by document path.
    """
    metas = [db().collection(SCOPES).document(scope.name) for scope in scopes]
    if max_age > 0:
        cached_scopes = [_cached(meta, max_age) for meta in metas]
        cached_also = {ref.path: _cached(ref, max_age) for ref in also}
        fresh = all(
            isinstance(seen, Scope) and seen.limit_nanos == scope.limit_nanos
            for seen, scope in zip(cached_scopes, scopes, strict=True)
        ) and all(data is not None for data in cached_also.values())
        if fresh:
            known = [seen for seen in cached_scopes if isinstance(seen, Scope)]
            return known, {path: data for path, data in cached_also.items() if data}
    found = {snap.reference.path: snap for snap in db().get_all([*metas, *also])}
    stored: list[Scope] = []
    for scope, meta in zip(scopes, metas, strict=True):
        snapshot = found[meta.path]
        if not snapshot.exists:
            _create(scope, meta)
            current = scope
        else:
            data = snapshot.to_dict() or {}
            current = replace(scope, shards=int(data["shards"]))
            if int(data["limit_nanos"]) != scope.limit_nanos:
                _adjust(current, meta, snapshot, int(data["limit_nanos"]))
        stored.append(current)
        _seen.put((db().project, meta.path), current)
    extra: dict[str, dict[str, Any]] = {}
    for ref in also:
        data = found[ref.path].to_dict() or {} if found[ref.path].exists else {}
        _seen.put((db().project, ref.path), data)
        if data:
            extra[ref.path] = data
    return stored, extra


def _create(scope: Scope, meta: firestore.DocumentReference) -> None:
    batch = db().batch()
    batch.create(
        meta,
        {
            "limit_nanos": scope.limit_nanos,
            "shards": scope.shards,
            "kind": scope.kind,
            "created_at": firestore.SERVER_TIMESTAMP,
        },
    )
    for shard, share in enumerate(_split(scope.limit_nanos, scope.shards)):
        batch.create(scope.ref(shard), {"scope": scope.name, **moved(headroom=share)})
    with contextlib.suppress(exceptions.AlreadyExists):  # created by a concurrent first use
        batch.commit()


def _adjust(
    scope: Scope,
    meta: firestore.DocumentReference,
    snapshot: firestore.DocumentSnapshot[Any],
    old_limit: int,
) -> None:
    batch = db().batch()
    batch.update(
        meta,
        {"limit_nanos": scope.limit_nanos},
        option=db().write_option(last_update_time=snapshot.update_time),
    )
    batch.set(scope.ref(0), moved(headroom=scope.limit_nanos - old_limit), merge=True)
    try:
        batch.commit()
    except exceptions.FailedPrecondition:
        return  # another instance applied the change first
    logger.info(
        "budget limit changed",
        extra=log.fields(
            event="budget_limit_changed",
            scope=scope.name,
            old_nanos=old_limit,
            new_nanos=scope.limit_nanos,
        ),
    )


def read(scopes: Iterable[Scope]) -> dict[str, Totals]:
    """Each scope's sums over its shards (one round trip)."""
    scopes = list(scopes)
    sums = {scope.name: [0, 0, 0] for scope in scopes}
    for snapshot in db().get_all([ref for scope in scopes for ref in scope.refs()]):
        if snapshot.exists:
            data = snapshot.to_dict() or {}
            total = sums[snapshot.id.rsplit("#", 1)[0]]
            total[0] += int(data.get("headroom_nanos", 0))
            total[1] += int(data.get("reserved_nanos", 0))
            total[2] += int(data.get("spent_nanos", 0))
    return {name: Totals(*values) for name, values in sums.items()}


def _increment(ref: firestore.DocumentReference, headroom: int) -> int:
    batch = db().batch()
    batch.set(ref, moved(headroom=headroom), merge=True)
    return headroom_after(batch.commit()[0])


def consolidate(scope: Scope, amount: int) -> int | None:
    """Gather at least `amount` of headroom into one shard, taking it from the others.

    Headroom leaves a donor first (granted only if the donor stays non-negative) and reaches the
    target afterwards, so no amount is ever available twice; an instance dying in between loses
    that headroom until the period ends, never the other way round.

    Returns:
        The shard now holding `amount` (as far as this instance knows), or None when the whole
        scope has less than `amount` left.
    """
    headroom = {
        int(snap.id.rsplit("#", 1)[1]): int((snap.to_dict() or {}).get("headroom_nanos", 0))
        for snap in db().get_all(scope.refs())
        if snap.exists
    }
    if sum(max(h, 0) for h in headroom.values()) < amount:
        return None
    target = max(headroom, key=lambda shard: headroom[shard])
    need = amount - headroom[target]
    for donor in sorted(headroom, key=lambda shard: -headroom[shard]):
        if need <= 0:
            break
        take = min(headroom[donor], need)
        if donor == target or take <= 0:
            continue
        if _increment(scope.ref(donor), -take) < 0:
            _increment(scope.ref(donor), take)  # the donor was drained meanwhile: give it back
            continue
        _increment(scope.ref(target), take)
        need -= take
    return target
