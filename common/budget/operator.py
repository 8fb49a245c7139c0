"""The operator's commands: the kill switch and the platform's daily cap (`raptorflow pause`,
`resume`, the `PLATFORM_DAILY_CAP_USD` setting's override)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from pydantic import TypeAdapter

from common.budget import blocks
from common.budget.controls import Controls, change
from common.budget.periods import day_key
from common.money import nanos
from common.tenants.tiers import Money


def set_paused(is_paused: bool, reason: str = "") -> Controls:
    """Pause or resume every business: while paused, every reservation and check is refused
    (by every instance within `budget_cache_seconds`)."""
    return change({"paused": is_paused, "reason": reason})


def set_platform_cap(usd: Decimal | str) -> int:
    """Set the platform-wide daily cap (validated money); returns it in nanos. What business
    days hold of the old cap and have not used goes back to the platform at once, so they take
    their share again under the new one."""
    cap = nanos(TypeAdapter(Money).validate_python(Decimal(str(usd))))
    controls = change({"daily_cap_nanos": cap})
    now = dt.datetime.now(dt.UTC)
    # Yesterday to tomorrow: instances' clocks and warmed periods may be on either side.
    for offset in (-1, 0, 1):
        blocks.return_platform(day_key(now + dt.timedelta(days=offset)), controls)
    return cap
