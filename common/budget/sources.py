"""Where a business's limits come from, as this process last read them: the business document
(tier, overrides, `limits_version`) and the platform controls (pause, cap, `version`), read
together in one round trip and reused for at most `budget_cache_seconds`.

That age is the budget's propagation bound: a lowered limit, a tier change, a pause or a lower
cap reaches every reservation of every instance within it, and blocks taken under an older
version stop granting when their instance sees the new one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from google.cloud import firestore

from common.budget.controls import Controls, controls_ref
from common.platform.settings import get_settings
from common.platform.store import db
from common.tenants.businesses import Business, business_of, business_ref


@dataclass(frozen=True)
class Sources:
    """A business and the platform controls as read at monotonic time `read_at`."""

    business: Business
    controls: Controls
    read_at: float


_seen: dict[tuple[str, str], Sources] = {}
_reading: dict[tuple[str, str], threading.Lock] = {}
_guard = threading.Lock()


def current(business_id: str, *, max_age: float | None = None) -> Sources:
    """The business and the controls, read at most `max_age` seconds ago (default
    `budget_cache_seconds`); one thread reads while the others wait for its answer.

    Raises:
        NotFound: the business is not registered (`unknown_business`).
        Conflict: its document is not a valid business (`invalid_business`, `unknown_tier`).
    """
    age = get_settings().budget_cache_seconds if max_age is None else max_age
    key = (db().project, business_id)
    seen = _seen.get(key)
    if seen is not None and time.monotonic() - seen.read_at <= age:
        return seen
    with _guard:
        lock = _reading.setdefault(key, threading.Lock())
    with lock:
        seen = _seen.get(key)
        if seen is not None and time.monotonic() - seen.read_at <= age:
            return seen
        read_at = time.monotonic()
        return remember(business_id, db().get_all(refs(business_id)), read_at)


def read_with(
    business_id: str, also: Sequence[firestore.DocumentReference]
) -> tuple[Sources, dict[str, firestore.DocumentSnapshot[Any]]]:
    """The business and the controls (as `current` gives them) and the snapshots of `also` by
    path, in one round trip: when this process's copy is older than `budget_cache_seconds`, the
    business and the controls are read with `also` (and kept for the next reservation).

    Raises:
        NotFound, Conflict: as `current`, when it reads the business.
    """
    seen = _seen.get((db().project, business_id))
    if seen is not None and time.monotonic() - seen.read_at <= get_settings().budget_cache_seconds:
        return seen, _by_path(db().get_all(list(also)))
    read_at = time.monotonic()
    snapshots = _by_path(db().get_all([*also, *refs(business_id)]))
    return remember(business_id, snapshots.values(), read_at), snapshots


def refs(business_id: str) -> list[firestore.DocumentReference]:
    """The documents `current` reads, for a caller that reads them with its own."""
    return [business_ref(business_id), controls_ref()]


def remember(business_id: str, snapshots: Iterable[Any], read_at: float) -> Sources:
    """Keep what a read begun at monotonic time `read_at` found of the business and the
    controls (`snapshots` may hold other documents too), unless this process saw newer
    versions; the sources now current.

    Raises:
        NotFound: the business is not registered (`unknown_business`).
        Conflict: its document is not a valid business (`invalid_business`, `unknown_tier`).
    """
    found_by_path = _by_path(snapshots)
    found = Sources(
        business=business_of(business_id, found_by_path[business_ref(business_id).path]),
        controls=Controls.of(found_by_path[controls_ref().path].to_dict() or {}),
        read_at=read_at,
    )
    key = (db().project, business_id)
    with _guard:
        previous = _seen.get(key)
        if previous is None or _not_older(found, previous):
            _seen[key] = found
        return _seen[key]


def _by_path(snapshots: Iterable[Any]) -> dict[str, firestore.DocumentSnapshot[Any]]:
    return {snapshot.reference.path: snapshot for snapshot in snapshots}


def _not_older(found: Sources, previous: Sources) -> bool:
    """Versions only move forwards in a process (a slow read never undoes a newer one)."""
    return (
        found.business.limits_version >= previous.business.limits_version
        and found.controls.version >= previous.controls.version
    )


def forget(business_id: str) -> None:
    """Drop what this process read of `business_id` (the next reservation reads it again)."""
    _seen.pop((db().project, business_id), None)
