"""Budget periods and their documents.

A business spends against a UTC day and a calendar month; all businesses together against the
platform's UTC day. Each is a document in `budget_scopes`, named so that no business id can
produce another's name or the platform's (`business:acme:2026-12-07`, `business:acme:2026-12`,
`platform:2026-12-07#3`; business ids are slugs, which hold no `:` or `#`).

A business period holds its limit and the `version` of the business's limits it was brought to,
what has been spent (`spent_nanos`, settled money moved in by the blocks that spent it) and what
is out in blocks (`allocated_nanos`, `blocks`: each open block's amount and when the database
says it was taken). A business day also holds its share of the platform's cap (`platform_nanos`,
taken from the platform's shards in chunks: `platform_from`), which its spent and allocated money
may not exceed either. `warned` lists the thresholds of its limit (`WARNING_LEVELS`) already
announced: the owner's commit that first finds one reached records it, so it is announced once.
A platform shard holds what it has given to business days (`allotted_nanos`); its own limit is
its part of the cap the operator sets, read when used.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

from google.cloud import firestore

from common.money import usd
from common.platform.store import db

SCOPES = "budget_scopes"
Kind = Literal["day", "month"]
WARNING_LEVELS = (75, 90, 100)  # percent of a period's limit spent, announced once each


def day_key(now: dt.datetime) -> str:
    return now.strftime("%Y-%m-%d")


def month_key(now: dt.datetime) -> str:
    return now.strftime("%Y-%m")


def scope_name(business_id: str, period: str) -> str:
    """A business's day (`YYYY-MM-DD`) or month (`YYYY-MM`)."""
    return f"business:{business_id}:{period}"


def shard_name(day: str, shard: int) -> str:
    return f"platform:{day}#{shard}"


def scope_ref(name: str) -> firestore.DocumentReference:
    ref: firestore.DocumentReference = db().collection(SCOPES).document(name)
    return ref


def home_shard(business_id: str, shards: int) -> int:
    """The platform shard a business takes its share of the cap from first (stable)."""
    return int.from_bytes(hashlib.sha1(business_id.encode()).digest()[:4], "big") % shards


def split(amount: int, parts: int) -> list[int]:
    share, rest = divmod(amount, parts)
    return [share + (1 if part < rest else 0) for part in range(parts)]


@dataclass(frozen=True)
class OpenBlock:
    """A block as its scope lists it: enough to tell when it has expired."""

    amount: int
    taken_at: dt.datetime | None  # the database's time; None until the take is read back
    ttl_seconds: float
    controls_version: int = 0  # the platform controls it was taken under

    def expired(self, now: dt.datetime, grace: float) -> bool:
        return self.taken_at is not None and now > self.taken_at + dt.timedelta(
            seconds=self.ttl_seconds + grace
        )


@dataclass(frozen=True)
class Period:
    """A business's day or month as stored (or as it will be created: `exists` False)."""

    name: str
    kind: Kind
    business_id: str
    period: str
    limit: int
    version: int
    spent: int = 0
    allocated: int = 0
    blocks: dict[str, OpenBlock] = field(default_factory=dict)
    platform: int = 0  # days only: the day's share of the platform cap
    platform_from: dict[int, int] = field(default_factory=dict)  # shard -> nanos of it
    platform_version: int = 0
    platform_cap: int = 0  # the cap the day's share was last taken under
    changes: tuple[dict[str, Any], ...] = ()
    warned: tuple[int, ...] = ()
    exists: bool = False
    update_time: Any = None

    @property
    def room(self) -> int:
        """What new blocks may still take: below the limit and, for a day, below its share of
        the platform's cap."""
        cap = min(self.limit, self.platform) if self.kind == "day" else self.limit
        return cap - self.spent - self.allocated

    def platform_current(self, version: int, cap: int) -> bool:
        """Whether the day's share of the cap is as the controls `version` (and `cap`) want it:
        taken under them, and no block out that was taken under older ones (money such a block
        gives back must go back to the platform first)."""
        return (
            self.platform_version >= version
            and self.platform_cap <= cap
            and all(entry.controls_version >= version for entry in self.blocks.values())
        )

    @property
    def reached(self) -> tuple[int, ...]:
        """The thresholds (`WARNING_LEVELS`) its spending has reached."""
        return tuple(level for level in WARNING_LEVELS if 100 * self.spent >= level * self.limit)

    @property
    def limit_room(self) -> int:
        """What new blocks could take if the platform's share were no constraint."""
        return self.limit - self.spent - self.allocated

    @classmethod
    def of(cls, snapshot: firestore.DocumentSnapshot[Any], kind: Kind) -> Period:
        data = snapshot.to_dict() or {}
        blocks = {
            block_id: OpenBlock(
                int(entry["amount_nanos"]),
                entry.get("taken_at"),
                float(entry["ttl_seconds"]),
                int(entry.get("controls_version", 0)),
            )
            for block_id, entry in (data.get("blocks") or {}).items()
        }
        return cls(
            name=snapshot.id,
            kind=kind,
            business_id=str(data.get("business_id", "")),
            period=str(data.get("period", "")),
            limit=int(data.get("limit_nanos", 0)),
            version=int(data.get("version", 0)),
            spent=int(data.get("spent_nanos", 0)),
            allocated=int(data.get("allocated_nanos", 0)),
            blocks=blocks,
            platform=int(data.get("platform_nanos", 0)),
            platform_from={int(k): int(v) for k, v in (data.get("platform_from") or {}).items()},
            platform_version=int(data.get("platform_version", 0)),
            platform_cap=int(data.get("platform_cap_nanos", 0)),
            changes=tuple(data.get("changes") or ()),
            warned=tuple(int(level) for level in data.get("warned") or ()),
            exists=True,
            update_time=snapshot.update_time,
        )

    def with_limit(self, limit: int, version: int) -> Period:
        """Brought to `version` of the business's limits (never backwards)."""
        if version <= self.version and self.exists:
            return self
        changes = self.changes
        if self.exists and limit != self.limit:
            change = {"version": version, "from_usd": usd(self.limit), "to_usd": usd(limit)}
            changes = (*changes, change)
        return dataclasses.replace(self, limit=limit, version=version, changes=changes)

    def fields(self) -> dict[str, Any]:
        """The document as written by a commit that read it (values, not increments)."""
        data: dict[str, Any] = {
            "kind": self.kind,
            "business_id": self.business_id,
            "period": self.period,
            "limit_nanos": self.limit,
            "version": self.version,
            "spent_nanos": self.spent,
            "allocated_nanos": self.allocated,
            "blocks": {
                block_id: {
                    "amount_nanos": entry.amount,
                    "taken_at": entry.taken_at or firestore.SERVER_TIMESTAMP,
                    "ttl_seconds": entry.ttl_seconds,
                    "controls_version": entry.controls_version,
                }
                for block_id, entry in self.blocks.items()
            },
            "changes": list(self.changes),
            "warned": list(self.warned),
            "updated_at": firestore.SERVER_TIMESTAMP,
        }
        if self.kind == "day":
            data["platform_nanos"] = self.platform
            data["platform_from"] = {str(k): v for k, v in self.platform_from.items()}
            data["platform_version"] = self.platform_version
            data["platform_cap_nanos"] = self.platform_cap
        return data
