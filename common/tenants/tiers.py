"""Subscription tiers (from `tiers.yaml`) and a business's effective limits (per UTC day and
calendar month).

Limits are money people type: `Money` is from $0.01 to $1,000,000 with at most 9 decimals (a
whole number of nano-dollars), and a business's effective daily limit may not exceed its
effective monthly one.
"""

from __future__ import annotations

import functools
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.money import nanos
from common.platform.settings import get_settings
from common.spend.records import ModelTier

TierName = Literal["basic", "pro", "enterprise"]
Money = Annotated[
    Decimal,
    Field(ge=Decimal("0.01"), le=Decimal("1000000"), decimal_places=9, allow_inf_nan=False),
]
_TIERS_FILE = Path(__file__).with_name("tiers.yaml")


class Limits(BaseModel):
    """What a tier (or a business's overrides of it) allows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    daily_limit_usd: Money
    monthly_limit_usd: Money
    max_icps: int = Field(ge=3, le=9)
    model_tiers: frozenset[ModelTier]

    @model_validator(mode="after")
    def _daily_within_monthly(self) -> Limits:
        if self.daily_limit_usd > self.monthly_limit_usd:
            raise ValueError(
                f"daily_limit_usd ${self.daily_limit_usd} exceeds monthly_limit_usd "
                f"${self.monthly_limit_usd}"
            )
        return self

    @property
    def daily_limit_nanos(self) -> int:
        return nanos(self.daily_limit_usd)

    @property
    def monthly_limit_nanos(self) -> int:
        return nanos(self.monthly_limit_usd)


class Overrides(BaseModel):
    """Per-business exceptions to its tier's limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    daily_limit_usd: Money | None = None
    monthly_limit_usd: Money | None = None
    max_icps: int | None = Field(default=None, ge=3, le=9)


class PlatformLimits(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    daily_cap_usd: Money
    # How many documents the day's cap is split over (each written only when a business's day
    # takes a share of the cap; production sustains about one write per second per document).
    shards: int = Field(ge=1, le=256)

    @property
    def daily_cap_nanos(self) -> int:
        return nanos(self.daily_cap_usd)


class _TierFile(BaseModel):
    version: str
    tiers: dict[TierName, Limits]
    platform: PlatformLimits


@functools.cache
def _tier_file() -> _TierFile:
    return _TierFile.model_validate(yaml.safe_load(_TIERS_FILE.read_text()))


def tiers() -> dict[TierName, Limits]:
    """Every tier's limits, read once from tiers.yaml."""
    return _tier_file().tiers


def platform_limits() -> PlatformLimits:
    """The platform-wide daily cap across all businesses."""
    return _tier_file().platform


def limits_for(tier: TierName, overrides: Overrides | None = None) -> Limits:
    """The effective limits of a business on `tier` with its `overrides`."""
    base = tiers()[tier]
    if overrides is None:
        return base
    # Validated again: overrides may be fine alone and not together with the tier's values.
    return Limits.model_validate({**base.model_dump(), **overrides.model_dump(exclude_none=True)})


def default_platform_cap_nanos() -> int:
    """All businesses together per UTC day, until an operator sets the cap: the setting, else
    tiers.yaml's."""
    cap = get_settings().platform_daily_cap_usd
    return nanos(cap) if cap is not None else platform_limits().daily_cap_nanos
