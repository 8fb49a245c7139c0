"""The platform's daily cap, all businesses together, split over shard documents so that no
document is written by every business.

A business's day takes a share of the cap (`Period.platform`) from its home shard in chunks
(`common.budget.blocks.take`), and gives back what it does not use when the cap comes down. A
shard `platform:{day}#{k}` stores its `limit`, what it has given out (`allotted`) and a `debt`:

- Σ limit = cap + Σ debt, and allotted ≤ limit on every shard, always. A shard gives out only its
  free part (limit - allotted), so Σ allotted ≤ cap + Σ debt.
- A `resplit` brings the shards to the cap in force (the operator's, or the setting's), in one
  optimistic commit over all of them: with room for what they have given out, the rest of the cap
  is split as free parts and there is no debt; without, each shard's limit is what it has given
  out (nothing free anywhere) and the excess over the cap is debt.
- Money given back pays a shard's debt first: its limit comes down by as much, so a free part
  appears only once the excess given out under a higher cap is gone. Nothing is given out after a
  lower cap beyond it; what was given out before it is what the debt counts.

Shards record the cap and controls version they were split under; a taker that finds its home
shard split under another cap resplits first.
"""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions
from google.cloud import firestore

from common.budget.controls import Controls
from common.budget.periods import Period, scope_ref, shard_name, split
from common.platform.store import db
from common.spend.ledger import BudgetBusy
from common.tenants.tiers import platform_limits


@dataclass(frozen=True)
class Shard:
    """A platform shard as stored (or as it will be created: `exists` False)."""

    day: str
    index: int
    limit: int = 0
    allotted: int = 0
    debt: int = 0
    cap: int = -1  # the cap it was split under (-1: never split)
    version: int = -1  # the controls version it was split under
    exists: bool = False
    update_time: Any = None

    @property
    def name(self) -> str:
        return shard_name(self.day, self.index)

    @property
    def free(self) -> int:
        return self.limit - self.allotted

    def current(self, controls: Controls) -> bool:
        """Split under the cap and controls in force."""
        return self.exists and self.cap == controls.cap_nanos and self.version >= controls.version

    @classmethod
    def of(cls, snapshot: firestore.DocumentSnapshot[Any], day: str, index: int) -> Shard:
        if not snapshot.exists:
            return cls(day, index)
        data = snapshot.to_dict() or {}
        return cls(
            day,
            index,
            limit=int(data.get("limit_nanos", 0)),
            allotted=int(data.get("allotted_nanos", 0)),
            debt=int(data.get("debt_nanos", 0)),
            cap=int(data.get("cap_nanos", -1)),
            version=int(data.get("version", -1)),
            exists=True,
            update_time=snapshot.update_time,
        )


def shard_ref(day: str, index: int) -> firestore.DocumentReference:
    return scope_ref(shard_name(day, index))


def count() -> int:
    return platform_limits().shards


def read(day: str, indexes: list[int]) -> dict[int, Shard]:
    refs = {index: shard_ref(day, index) for index in indexes}
    found = {snap.reference.path: snap for snap in db().get_all(list(refs.values()))}
    return {index: Shard.of(found[ref.path], day, index) for index, ref in refs.items()}


def write(batch: firestore.WriteBatch, shard: Shard, op: str) -> None:
    """Write `shard` in `batch` on the condition that it is still as read."""
    fields = {
        "kind": "platform",
        "period": shard.day,
        "shard": shard.index,
        "limit_nanos": shard.limit,
        "allotted_nanos": shard.allotted,
        "debt_nanos": shard.debt,
        "cap_nanos": shard.cap,
        "version": shard.version,
        "last_op": op,
        "updated_at": firestore.SERVER_TIMESTAMP,
    }
    ref = shard_ref(shard.day, shard.index)
    if shard.exists:
        batch.update(ref, fields, option=db().write_option(last_update_time=shard.update_time))
    else:
        batch.create(ref, fields)


def _proportional(total: int, weights: list[int]) -> list[int]:
    """`total` split in proportion to `weights` (each part at most its weight when `total` is
    below their sum)."""
    whole = sum(weights)
    parts = [total * weight // whole for weight in weights]
    rest = total - sum(parts)
    for index in sorted(range(len(weights)), key=lambda i: weights[i] - parts[i], reverse=True):
        if rest == 0:
            break
        parts[index] += 1
        rest -= 1
    return parts


def resplit(day: str, controls: Controls) -> dict[int, Shard]:
    """Bring every shard of `day` to the cap in force (see the module docstring), creating them
    if needed; returns them as written (or as found, if they were current)."""
    cap = controls.cap_nanos
    for attempt in range(12):
        shards = read(day, list(range(count())))
        if all(shard.current(controls) for shard in shards.values()):
            return shards
        given = [shards[i].allotted for i in range(count())]
        if cap >= sum(given):
            extra = split(cap - sum(given), count())
            limits, debts = [g + e for g, e in zip(given, extra, strict=True)], [0] * count()
        else:
            kept = _proportional(cap, given)
            limits, debts = given, [g - k for g, k in zip(given, kept, strict=True)]
        op = uuid.uuid4().hex
        batch = db().batch()
        written = {}
        for index, shard in shards.items():
            written[index] = dataclasses.replace(
                shard,
                limit=limits[index],
                debt=debts[index],
                cap=cap,
                version=max(controls.version, 0),
            )
            write(batch, written[index], op)
        try:
            results = batch.commit()
        except (exceptions.FailedPrecondition, exceptions.AlreadyExists, exceptions.Aborted):
            time.sleep(random.uniform(0, min(0.01 * 2**attempt, 0.5)))
            continue
        return {
            index: dataclasses.replace(shard, exists=True, update_time=result.update_time)
            for (index, shard), result in zip(written.items(), results, strict=True)
        }
    raise BudgetBusy("budget_contention", f"could not split the platform cap of {day}; try again")


def take(
    day_p: Period, known: dict[int, Shard], home: int, amount: int, need: int
) -> tuple[Period, dict[int, Shard]]:
    """Give the day up to `amount` more of the cap (at least `need` if the shards have it): from
    its home shard, else from every shard with a free part. Returns the day and the shards to
    write (all current: `known` holds what was read)."""
    shard = known[home]
    # At most half of what the shard has left beyond the need: near the cap, room stays for
    # the other businesses of the shard.
    got = max(0, min(amount, max(need, shard.free // 2), shard.free))
    touched = {}
    platform_from = dict(day_p.platform_from)
    if got:
        touched[home] = dataclasses.replace(shard, allotted=shard.allotted + got)
        platform_from[home] = platform_from.get(home, 0) + got
    if got < need:
        # The shards this commit already changes (a give-back) as changed; the rest as stored.
        missing = [i for i in range(count()) if i != home and i not in known]
        others = {**read(shard.day, missing), **{i: s for i, s in known.items() if i != home}}
        for index in sorted(others, key=lambda i: others[i].free, reverse=True):
            more = max(0, min(need - got, others[index].free))
            if more == 0:
                break
            touched[index] = dataclasses.replace(
                others[index], allotted=others[index].allotted + more
            )
            platform_from[index] = platform_from.get(index, 0) + more
            got += more
    day_p = dataclasses.replace(day_p, platform=day_p.platform + got, platform_from=platform_from)
    return day_p, touched


def give_back(
    day_p: Period, known: dict[int, Shard], controls: Controls
) -> tuple[Period, dict[int, Shard]]:
    """Give back what the day holds of the cap and does not use (neither spent nor out in
    blocks), paying the shards' debts first. Returns the day and the shards to write."""
    unused = max(0, day_p.platform - day_p.spent - day_p.allocated)
    if unused == 0:
        return day_p, {}
    wanted = [i for i in day_p.platform_from if i not in known]
    known = {**known, **read(day_p.period, wanted)} if wanted else known
    platform_from = dict(day_p.platform_from)
    touched: dict[int, Shard] = {}
    left = unused
    for index, held in sorted(platform_from.items(), key=lambda item: -item[1]):
        back = min(held, left)
        if back <= 0:
            continue
        shard = known[index]
        pay = min(back, shard.debt)
        touched[index] = dataclasses.replace(
            shard,
            allotted=max(0, shard.allotted - back),
            debt=shard.debt - pay,
            limit=shard.limit - pay,
        )
        platform_from[index] = held - back
        left -= back
    day_p = dataclasses.replace(
        day_p,
        platform=day_p.platform - (unused - left),
        platform_from={i: n for i, n in platform_from.items() if n > 0},
    )
    return day_p, touched
