"""Who may do what: a business's `members` use it, its `owners` (members too) manage members
(`common.tenants.members`)."""

from __future__ import annotations

from common.platform.errors import AppError, NotFound
from common.tenants.businesses import Business, get_business
from common.tenants.members import Uid


class Forbidden(AppError):
    """Signed in, but not allowed: not a member (or not an owner) of the business."""

    status = 403
    code = "forbidden"


def member_business(uid: Uid, business_id: str) -> Business:
    """The business, if `uid` is one of its members.

    Raises:
        Forbidden: not a member, or no such business (the same answer, so that non-members
            cannot probe which businesses exist).
    """
    try:
        business = get_business(business_id)
    except NotFound:
        business = None
    if business is None or uid not in business.members:
        raise Forbidden(f"you are not a member of business {business_id}", code="not_a_member")
    return business


def owned_business(uid: Uid, business_id: str) -> Business:
    """The business, if `uid` owns it.

    Raises:
        Forbidden: not a member (`not_a_member`) or a member but no owner (`not_an_owner`).
    """
    business = member_business(uid, business_id)
    if uid not in business.owners:
        raise Forbidden(
            f"only an owner of business {business_id} manages its members", code="not_an_owner"
        )
    return business
