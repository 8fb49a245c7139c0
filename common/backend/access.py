"""Who may do what: a business's `members` use it and its runs, its `owners` (members too)
manage members (`common.tenants.members`). Someone else's business is a 403 that looks the same
as no such business; someone else's run is a 404 that looks the same as no such run, so that
neither kind of id can be probed."""

from __future__ import annotations

from common.platform.errors import Forbidden, NotFound
from common.runs import documents
from common.tenants.businesses import Business, get_business
from common.tenants.members import Uid


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


def member_run(uid: Uid, run_id: str) -> documents.Run:
    """The run, if `uid` is a member of its business.

    Raises:
        NotFound: no such run, or a run of a business `uid` is not a member of (the same
            answer, `run_not_found`).
    """
    missing = NotFound(f"run {run_id} does not exist", code="run_not_found", field="run_id")
    try:
        run = documents.get_run(run_id)
        member_business(uid, run.business_id)
    except (NotFound, Forbidden):
        raise missing from None
    return run
