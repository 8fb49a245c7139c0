"""A business's members (uids of Firebase Auth users) and, of them, its owners, who manage the
members. Both lists live on `businesses/{business_id}`, the same lists that `firestore.rules`
reads for clients' own reads of runs and budgets.

A change is one transaction that checks, on what it read, that the caller still owns the
business: two owners removing each other, or one removing another while that one re-adds
themselves, end as some order of the two requests would (issue 22: a removed owner stayed an
owner when ownership was checked before the transaction)."""

from __future__ import annotations

from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from pydantic import BaseModel, Field

from common.platform.errors import Conflict, Forbidden, NotFound
from common.platform.store import db, transact
from common.tenants.businesses import BUSINESSES, Business, business_ref

Uid = str


class Members(BaseModel):
    """A business's members, and which of them are owners."""

    business_id: str
    members: list[str]
    owners: list[str]


class MemberChange(BaseModel):
    """Add a member (`owner`: also let them manage members)."""

    model_config = {"extra": "forbid"}

    uid: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    owner: bool = False


def members_of(business: Business) -> Members:
    return Members(
        business_id=business.business_id, members=business.members, owners=business.owners
    )


def _refuse(business_id: str, data: dict[str, Any] | None, by: Uid | None) -> None:
    """Unless `by` (None: the operator) owns the business as the transaction read it, why not."""
    if by is None:
        if data is None:
            raise NotFound(
                f"business {business_id} is not registered",
                code="unknown_business",
                field="business_id",
            )
        return
    if data is None or by not in data.get("members", []):
        # No such business looks the same as someone else's: ids cannot be probed.
        raise Forbidden(f"you are not a member of business {business_id}", code="not_a_member")
    if by not in data.get("owners", []):
        raise Forbidden(
            f"only an owner of business {business_id} manages its members", code="not_an_owner"
        )


def _change(business_id: str, uid: Uid, *, by: Uid | None, member: bool, owner: bool) -> Members:
    """Set `uid`'s membership in one transaction that reads the business, checks that `by`
    still owns it, that `uid` is a member when being removed, and that an owner is left."""

    @firestore.transactional
    def apply(transaction: firestore.Transaction) -> Members:
        ref = business_ref(business_id)
        snapshot = ref.get(transaction=transaction)
        data = (snapshot.to_dict() or {}) if snapshot.exists else None
        _refuse(business_id, data, by)
        assert data is not None
        if not member and uid not in data.get("members", []):
            raise NotFound(
                f"{uid} is not a member of {business_id}", code="not_a_member", field="uid"
            )
        members = [m for m in data.get("members", []) if m != uid] + ([uid] if member else [])
        owners = [o for o in data.get("owners", []) if o != uid] + ([uid] if owner else [])
        if data.get("owners") and not owners:
            raise Conflict(
                f"{uid} is the last owner of {business_id}; add another owner first",
                code="last_owner",
                field="uid",
            )
        transaction.update(
            ref, {"members": members, "owners": owners, "updated_at": firestore.SERVER_TIMESTAMP}
        )
        return Members(business_id=business_id, members=members, owners=owners)

    result: Members = transact(
        lambda: apply(db().transaction()), what=f"changing the members of {business_id}"
    )
    return result


def add_member(business_id: str, change: MemberChange, *, by: Uid | None) -> Members:
    """Make `change.uid` a member, and an owner exactly when `change.owner` (so adding an owner
    again with `owner: false` demotes them).

    Args:
        business_id: The business.
        change: Who, and whether an owner.
        by: The caller, who must own the business when the change is made (checked in the
            same transaction); None for the operator (the CLI, with the project's credentials).

    Raises:
        Forbidden: `by` is not a member (`not_a_member`, also for no such business) or not an
            owner (`not_an_owner`).
        NotFound: no such business (`unknown_business`, for the operator).
        Conflict: that would leave the business without an owner (`last_owner`).
        Contention: too many concurrent changes of the business (429).
    """
    return _change(business_id, change.uid, by=by, member=True, owner=change.owner)


def remove_member(business_id: str, uid: Uid, *, by: Uid | None) -> Members:
    """Remove `uid` from the members (and owners); `by` as for `add_member`.

    Raises:
        Forbidden, NotFound (`unknown_business`), Contention: as for `add_member`.
        NotFound: `uid` is not a member (`not_a_member`).
        Conflict: `uid` is the last owner (a business always keeps one).
    """
    return _change(business_id, uid, by=by, member=False, owner=False)


class Membership(BaseModel):
    business_id: str
    name: str
    tier: str
    owner: bool


def businesses_of(uid: Uid) -> list[Membership]:
    """Every business `uid` is a member of, by id."""
    query = db().collection(BUSINESSES).where(filter=FieldFilter("members", "array_contains", uid))
    found = []
    for snapshot in query.stream():
        data = snapshot.to_dict() or {}
        found.append(
            Membership(
                business_id=snapshot.id,
                name=str(data.get("name", "")),
                tier=str(data.get("tier", "")),
                owner=uid in data.get("owners", []),
            )
        )
    return sorted(found, key=lambda membership: membership.business_id)
