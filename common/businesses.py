"""Business documents: `businesses/{business_id}` holds the tier, overrides and members.

`members` lists the uids (Firebase Auth) that may use the business; `owners`, a subset of them,
may also manage the members.
"""

from __future__ import annotations

from google.cloud import firestore
from pydantic import BaseModel, Field, ValidationError

from common.errors import Conflict, NotFound
from common.models import Slug
from common.store import db
from common.tiers import Limits, Overrides, TierName, limits_for, tiers

BUSINESSES = "businesses"


class Business(BaseModel):
    business_id: Slug
    name: str = ""
    tier: TierName
    overrides: Overrides = Field(default_factory=Overrides)
    members: list[str] = Field(default_factory=list)
    owners: list[str] = Field(default_factory=list)

    @property
    def limits(self) -> Limits:
        return limits_for(self.tier, self.overrides)


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
        raise Conflict(
            f"business {business_id} is misconfigured: {error.errors()[0]['msg']} "
            f"(tier {data.get('tier')!r}; tiers: {', '.join(tiers())})",
            code="unknown_tier" if "tier" in str(error.errors()[0]["loc"]) else "invalid_business",
        ) from error


def save_business(business: Business) -> None:
    """Create or replace a business document (operators and the CLI's sample)."""
    data = business.model_dump(mode="json", exclude={"business_id"})
    data["updated_at"] = firestore.SERVER_TIMESTAMP
    db().collection(BUSINESSES).document(business.business_id).set(data)
