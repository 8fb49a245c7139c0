"""Subscription tiers (from `tiers.yaml`), a business's effective limits, and the scopes they
make: a business's UTC day and calendar month, and the platform's day."""

from __future__ import annotations

import datetime as dt
import functools
from decimal import Decimal
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from common.budget.counters import Scope
from common.llm.base import ModelTier
from common.money import nanos
from common.platform.settings import get_settings

TierName = Literal["basic", "pro", "enterprise"]
_TIERS_FILE = Path(__file__).with_name("tiers.yaml")


class Limits(BaseModel):
    """What a tier (or a business's overrides of it) allows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    daily_limit_usd: Decimal = Field(gt=0)
    monthly_limit_usd: Decimal = Field(gt=0)
    max_icps: int = Field(ge=3, le=9)
    model_tiers: frozenset[ModelTier]
    counter_shards: int = Field(ge=1, le=64)

    @property
    def daily_limit_nanos(self) -> int:
        return nanos(self.daily_limit_usd)

    @property
    def monthly_limit_nanos(self) -> int:
        return nanos(self.monthly_limit_usd)


class Overrides(BaseModel):
    """Per-business exceptions to its tier's limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    daily_limit_usd: Decimal | None = Field(default=None, gt=0)
    monthly_limit_usd: Decimal | None = Field(default=None, gt=0)
    max_icps: int | None = Field(default=None, ge=3, le=9)


class PlatformLimits(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    daily_cap_usd: Decimal = Field(gt=0)
    counter_shards: int = Field(ge=1, le=64)

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
    return base.model_copy(update=overrides.model_dump(exclude_none=True))


def day_key(now: dt.datetime) -> str:
    return now.strftime("%Y-%m-%d")


def month_key(now: dt.datetime) -> str:
    return now.strftime("%Y-%m")


def platform_cap_nanos() -> int:
    """All businesses together per UTC day: the setting, else tiers.yaml's cap."""
    cap = get_settings().platform_daily_cap_usd
    return nanos(cap) if cap is not None else platform_limits().daily_cap_nanos


def scopes_for(business_id: str, limits: Limits, now: dt.datetime) -> list[Scope]:
    """The business's day and month, and the platform's day, with their current limits."""
    return [
        Scope(
            f"{business_id}:{day_key(now)}",
            "day",
            limits.daily_limit_nanos,
            limits.counter_shards,
            "daily_budget_exceeded",
        ),
        Scope(
            f"{business_id}:{month_key(now)}",
            "month",
            limits.monthly_limit_nanos,
            limits.counter_shards,
            "monthly_budget_exceeded",
        ),
        Scope(
            f"platform:{day_key(now)}",
            "platform",
            platform_cap_nanos(),
            platform_limits().counter_shards,
            "platform_cap_reached",
        ),
    ]
