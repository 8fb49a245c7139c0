"""Business documents: `businesses/{business_id}` holds the tier, overrides and members."""

from __future__ import annotations

import datetime as dt

from google.cloud import firestore
from pydantic import BaseModel, Field, ValidationError

from common.budget.counters import Scope
from common.budget.limits import Limits, Overrides, TierName, limits_for, scopes_for, tiers
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

    @property
    def limits(self) -> Limits:
        return limits_for(self.tier, self.overrides)

    def scopes(self, now: dt.datetime) -> list[Scope]:
        """Its day, its month and the platform's day at `now`, with their current limits."""
        return scopes_for(self.business_id, self.limits, now)


def get_business(business_id: str) -> Business:
    """The business, or `NotFound` with code `unknown_business`."""
    snapshot = db().collection(BUSINESSES).document(business_id).get()
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


def save_business(business: Business) -> None:
    """Create or replace a business document (operators and the CLI's sample)."""
    data = business.model_dump(mode="json", exclude={"business_id"})
    data["updated_at"] = firestore.SERVER_TIMESTAMP
    db().collection(BUSINESSES).document(business.business_id).set(data)
