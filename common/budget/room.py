"""A business's budget as one read finds it: the business, the platform controls, its day and
month, and (for questions about the platform's cap) the platform's shards."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.cloud import firestore

from common.budget.blocks import no_room
from common.budget.controls import Controls, controls_ref, paused_refusal
from common.budget.periods import (
    Period,
    day_key,
    month_key,
    scope_name,
    scope_ref,
)
from common.budget.platform import Shard, shard_ref
from common.money import format_usd
from common.platform.store import db
from common.spend.ledger import BudgetBusy, BudgetDenied
from common.tenants.businesses import Business, business_of, business_ref
from common.tenants.tiers import platform_limits


@dataclass(frozen=True)
class Room:
    """A business's periods and the platform's shards, as one read found them."""

    business: Business
    controls: Controls
    day: Period
    month: Period
    shards: list[Shard]

    @property
    def platform(self) -> int:
        """What the day may still take of the platform's cap: its unused share and what the
        shards have not given out."""
        unused = max(self.day.platform - self.day.spent - self.day.allocated, 0)
        if self.shards and not all(shard.current(self.controls) for shard in self.shards):
            # Not split under the cap in force yet (a new day, a new cap): what the next take
            # will find once it has split them.
            given = sum(shard.allotted for shard in self.shards)
            return unused + max(self.controls.cap_nanos - given, 0)
        return unused + sum(max(shard.free, 0) for shard in self.shards)

    def refusal(self, estimate: int) -> BudgetDenied | BudgetBusy | None:
        """Why `estimate` would not fit now (None if it would)."""
        if self.controls.paused:
            return paused_refusal(self.controls)
        for period in (self.day, self.month):
            if period.limit_room < estimate:
                return no_room(period, estimate)
        if self.platform < estimate:
            return BudgetDenied(
                "platform_cap_reached",
                f"platform daily cap reached: {format_usd(estimate)} needed ({self.day.period})",
            )
        return None


def read_room(
    business_id: str, now: dt.datetime, *, shards: bool = True, also: list[Any] | None = None
) -> tuple[Room, dict[str, Any]]:
    """The business's budget at `now`, in one read (the platform's shards too, with `shards`;
    the snapshots of `also`'s documents are returned by path, read in the same round trip).

    Raises:
        NotFound: the business is not registered (code `unknown_business`).
    """
    refs = room_refs(business_id, now, shards=shards)
    found: dict[str, Any] = {
        snap.reference.path: snap for snap in db().get_all([*refs, *(also or [])])
    }
    return room_in(business_id, now, found, shards=shards), found


def room_refs(
    business_id: str, now: dt.datetime, *, shards: bool = True
) -> list[firestore.DocumentReference]:
    """The documents `read_room` reads, for a caller that reads them with its own: the
    business, the controls, its day and month (and the platform's shards, with `shards`)."""
    day, month = day_key(now), month_key(now)
    count = platform_limits().shards if shards else 0
    return [
        business_ref(business_id),
        controls_ref(),
        scope_ref(scope_name(business_id, day)),
        scope_ref(scope_name(business_id, month)),
        *(shard_ref(day, index) for index in range(count)),
    ]


def room_in(
    business_id: str, now: dt.datetime, found: Mapping[str, Any], *, shards: bool = True
) -> Room:
    """The business's budget at `now` from `found` (snapshots by path, `room_refs`' among them).

    Raises:
        NotFound: the business is not registered (code `unknown_business`).
    """
    refs = room_refs(business_id, now, shards=shards)
    day, month = day_key(now), month_key(now)
    business = business_of(business_id, found[refs[0].path])
    limits = business.limits
    periods = []
    for kind, ref, period, limit in (
        ("day", refs[2], day, limits.daily_limit_nanos),
        ("month", refs[3], month, limits.monthly_limit_nanos),
    ):
        snapshot = found[ref.path]
        stored = (
            Period.of(snapshot, kind)  # type: ignore[arg-type]
            if snapshot.exists
            else Period(ref.id, kind, business_id, period, limit, business.limits_version)  # type: ignore[arg-type]
        )
        periods.append(stored.with_limit(limit, business.limits_version))
    return Room(
        business=business,
        controls=Controls.of(found[refs[1].path].to_dict() or {}),
        day=periods[0],
        month=periods[1],
        shards=[Shard.of(found[ref.path], day, index) for index, ref in enumerate(refs[4:])],
    )
