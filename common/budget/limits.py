"""Subscription tiers, loaded from `tiers.yaml`, and a business's effective limits."""

from __future__ import annotations

import functools
from decimal import Decimal
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from common.llm.base import NANOS_PER_USD, ModelTier

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
        return int(self.daily_limit_usd * NANOS_PER_USD)

    @property
    def monthly_limit_nanos(self) -> int:
        return int(self.monthly_limit_usd * NANOS_PER_USD)


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
        return int(self.daily_cap_usd * NANOS_PER_USD)


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
