"""Business documents: `businesses/{business_id}` holds the tier, overrides and members, and a
`limits_version` that every change of the tier or the overrides increments: the budget applies
a business's limits only forwards in that version, so an instance holding an old copy can never
take a lowered limit back up.

`members` lists the uids (Firebase Auth) that may use the business; `owners`, a subset of them,
may also manage the members."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from google.cloud import firestore
from pydantic import BaseModel, Field, ValidationError, model_validator

from common.budget import counters
from common.budget.controls import platform_scope
from common.budget.counters import Limit, Scope
from common.budget.limits import Limits, Overrides, TierName, day_key, limits_for, month_key, tiers
from common.models import Slug
from common.platform.errors import Conflict, NotFound, problems
from common.platform.store import db

BUSINESSES = "businesses"


class Business(BaseModel):
    business_id: Slug
    name: str = ""
    tier: TierName
    overrides: Overrides = Field(default_factory=Overrides)
    members: list[str] = Field(default_factory=list)
    owners: list[str] = Field(default_factory=list)  # of the members, those who manage them
    limits_version: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _limits_hold_together(self) -> Business:
        try:
            limits_for(self.tier, self.overrides)
        except ValidationError as error:
            _, message = problems(error)[0]
            raise ValueError(f"overrides: {message.removeprefix('Value error, ')}") from None
        return self

    @property
    def limits(self) -> Limits:
        return limits_for(self.tier, self.overrides)

    def scopes(self, now: dt.datetime) -> list[Scope]:
        """Its day, its month and the platform's day at `now`."""
        ref = business_ref(self.business_id)
        shards = self.limits.counter_shards
        return [
            Scope(
                f"{self.business_id}:{day_key(now)}",
                "day",
                shards,
                "daily_budget_exceeded",
                ref,
                _limit_of(self.business_id, "daily"),
                self.limits_version,
            ),
            Scope(
                f"{self.business_id}:{month_key(now)}",
                "month",
                shards,
                "monthly_budget_exceeded",
                ref,
                _limit_of(self.business_id, "monthly"),
                self.limits_version,
            ),
            platform_scope(now),
        ]


def _limit_of(business_id: str, period: str) -> Callable[[dict[str, Any]], Limit]:
    def limit(data: dict[str, Any]) -> Limit:
        stored = Business.model_validate({"business_id": business_id, **data})
        amount = getattr(stored.limits, f"{period}_limit_nanos")
        return Limit(nanos=amount, version=stored.limits_version)

    return limit


def business_ref(business_id: str) -> firestore.DocumentReference:
    ref: firestore.DocumentReference = db().collection(BUSINESSES).document(business_id)
    return ref


def get_business(business_id: str) -> Business:
    """The business, or `NotFound` with code `unknown_business`."""
    snapshot = business_ref(business_id).get()
    if not snapshot.exists:
        raise NotFound(
            f"business {business_id} is not registered",
            code="unknown_business",
            field="business_id",
        )
    data = snapshot.to_dict() or {}
    try:
        return Business.model_validate({"business_id": business_id, **data})
    except ValidationError as error:
        field, message = problems(error)[0]
        raise Conflict(
            f"business {business_id} is misconfigured: {field}: {message} "
            f"(tier {data.get('tier')!r}; tiers: {', '.join(tiers())})",
            code="unknown_tier" if field.startswith("tier") else "invalid_business",
        ) from error


def save_business(business: Business) -> Business:
    """Create or replace a business document; a change of its tier or overrides gets the next
    `limits_version` and reaches its open budget periods at once. Returns what was stored."""

    @firestore.transactional
    def write(transaction: firestore.Transaction) -> Business:
        ref = business_ref(business.business_id)
        snapshot = ref.get(transaction=transaction)
        version = 0
        if snapshot.exists:
            old = snapshot.to_dict() or {}
            version = int(old.get("limits_version", 0))
            same = (
                old.get("tier") == business.tier
                and Overrides.model_validate(old.get("overrides") or {}) == business.overrides
            )
            version += 0 if same else 1
        saved = business.model_copy(update={"limits_version": version})
        data = saved.model_dump(mode="json", exclude={"business_id"})
        transaction.set(ref, {**data, "updated_at": firestore.SERVER_TIMESTAMP})
        return saved

    saved: Business = counters.retrying(
        lambda: write(db().transaction()), what=f"saving business {business.business_id}"
    )
    # Every open period of the business, from yesterday's month on (instances' clocks may be
    # a little ahead or behind); a period created later reads the business when it is made.
    since = month_key(dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    for name in counters.open_scopes(saved.business_id, since):
        period = name.rsplit(":", 1)[1]
        when = dt.datetime.strptime(period if len(period) > 7 else f"{period}-01", "%Y-%m-%d")
        day, month, _ = saved.scopes(when.replace(tzinfo=dt.UTC))
        counters.sync(day if len(period) > 7 else month)
    return saved
