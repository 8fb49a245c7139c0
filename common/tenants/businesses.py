"""Business documents: `businesses/{business_id}` holds the tier, overrides and members, and a
`limits_version` that every change of the tier or the overrides increments: the budget applies
a business's limits only forwards in that version, so an instance holding an old copy can never
take a lowered limit back up.

`members` lists the uids (Firebase Auth) that may use the business; `owners`, a subset of them,
may also manage the members."""

from __future__ import annotations

from typing import Any

from google.cloud import firestore
from pydantic import BaseModel, Field, ValidationError, model_validator

from common.models import Slug
from common.platform.errors import Conflict, NotFound, problems
from common.platform.store import db, transact
from common.tenants.tiers import Limits, Overrides, TierName, limits_for, tiers

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


def business_ref(business_id: str) -> firestore.DocumentReference:
    ref: firestore.DocumentReference = db().collection(BUSINESSES).document(business_id)
    return ref


def get_business(business_id: str) -> Business:
    """The business, or `NotFound` with code `unknown_business`."""
    return business_of(business_id, business_ref(business_id).get())


def business_of(business_id: str, snapshot: firestore.DocumentSnapshot[Any]) -> Business:
    """The business a read of its document found.

    Raises:
        NotFound: there is none (code `unknown_business`).
        Conflict: the document is not a valid business (`unknown_tier`, `invalid_business`).
    """
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

    saved: Business = transact(
        lambda: write(db().transaction()), what=f"saving business {business.business_id}"
    )
    return saved
