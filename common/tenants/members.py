"""A business's members (uids of Firebase Auth users) and, of them, its owners, who manage the
members. Both lists live on `businesses/{business_id}`, the same lists that `firestore.rules`
reads for clients' own reads of runs and budgets."""

from __future__ import annotations

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from pydantic import BaseModel, Field

from common.platform.errors import Conflict, NotFound
from common.platform.store import db
from common.tenants.businesses import BUSINESSES, Business, get_business

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


def _ref(business_id: str) -> firestore.DocumentReference:
    ref: firestore.DocumentReference = db().collection(BUSINESSES).document(business_id)
    return ref


def _change(business_id: str, uid: Uid, *, member: bool, owner: bool) -> Members:
    """Set `uid`'s membership in one transaction, keeping at least one owner."""

    @firestore.transactional
    def apply(transaction: firestore.Transaction) -> Members:
        snapshot = _ref(business_id).get(transaction=transaction)
        data = snapshot.to_dict() or {}
        members = [m for m in data.get("members", []) if m != uid] + ([uid] if member else [])
        owners = [o for o in data.get("owners", []) if o != uid] + ([uid] if owner else [])
        if data.get("owners") and not owners:
            raise Conflict(
                f"{uid} is the last owner of {business_id}; add another owner first",
                code="last_owner",
                field="uid",
            )
        transaction.update(
            _ref(business_id),
            {"members": members, "owners": owners, "updated_at": firestore.SERVER_TIMESTAMP},
        )
        return Members(business_id=business_id, members=members, owners=owners)

    result: Members = apply(db().transaction())
    return result


def add_member(business_id: str, change: MemberChange) -> Members:
    """Make `change.uid` a member, and an owner exactly when `change.owner` (so adding an owner
    again with `owner: false` demotes them).

    Raises:
        Conflict: that would leave the business without an owner (`last_owner`).
    """
    return _change(business_id, change.uid, member=True, owner=change.owner)


def remove_member(business_id: str, uid: Uid) -> Members:
    """Remove `uid` from the members (and owners).

    Raises:
        NotFound: `uid` is not a member.
        Conflict: `uid` is the last owner (a business always keeps one).
    """
    if uid not in get_business(business_id).members:
        raise NotFound(f"{uid} is not a member of {business_id}", code="not_a_member", field="uid")
    return _change(business_id, uid, member=False, owner=False)


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
