"""Platform controls: `platform/controls` holds the operator's kill switch (`paused`, `reason`)
and the platform-wide daily cap (`daily_cap_nanos`, all businesses together), with a `version`
every change increments.

Both reach the budget through the platform scope's shards (`common.budget.counters.sync`): a
change is applied to every shard of the open platform scopes at once, and every reservation
reads the pause flag from its own shard in the same write that takes its amount, so nothing is
granted once `set_paused` has returned.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from google.cloud import firestore
from pydantic import TypeAdapter

from common.budget import counters
from common.budget.counters import Limit, Scope
from common.budget.limits import Money, day_key, default_platform_cap_nanos, platform_limits
from common.llm.base import BudgetDenied
from common.money import nanos
from common.platform.store import db


def controls_ref() -> firestore.DocumentReference:
    ref: firestore.DocumentReference = db().collection("platform").document("controls")
    return ref


def platform_limit(data: dict[str, Any]) -> Limit:
    """The platform day's limit as `platform/controls` states it (`data`)."""
    cap = data.get("daily_cap_nanos")
    return Limit(
        nanos=int(cap) if cap is not None else default_platform_cap_nanos(),
        version=int(data.get("version", 0)),
        paused=bool(data.get("paused", False)),
    )


def platform_scope(now: dt.datetime) -> Scope:
    return Scope(
        f"platform:{day_key(now)}",
        "platform",
        platform_limits().counter_shards,
        "platform_cap_reached",
        controls_ref(),
        platform_limit,
    )


def paused_refusal() -> BudgetDenied:
    data = controls_ref().get().to_dict() or {}
    return BudgetDenied(
        "platform_paused", f"RaptorFlow is paused by an operator: {data.get('reason', '')}"
    )


def set_paused(is_paused: bool, reason: str = "") -> None:
    """Pause or resume every business: while paused, every reservation and check is refused."""
    _change({"paused": is_paused, "reason": reason})


def set_platform_cap(usd: Decimal | str) -> int:
    """Set the platform-wide daily cap (validated money); returns it in nanos."""
    cap = nanos(TypeAdapter(Money).validate_python(Decimal(str(usd))))
    _change({"daily_cap_nanos": cap})
    return cap


def _change(fields: dict[str, Any]) -> None:
    controls_ref().set(
        {**fields, "version": firestore.Increment(1), "updated_at": firestore.SERVER_TIMESTAMP},
        merge=True,
    )
    # Every platform day from yesterday on (instances' clocks may be a little ahead or behind);
    # a day created later reads the controls when it is made.
    since = day_key(dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    for name in counters.open_scopes("platform", since):
        day = dt.datetime.strptime(name.split(":", 1)[1], "%Y-%m-%d").replace(tzinfo=dt.UTC)
        counters.sync(platform_scope(day))
