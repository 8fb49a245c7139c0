"""Questions about a business's budget, which reserve nothing: would a task fit right now, and
where does the business stand."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from pydantic import BaseModel

from common.budget import counters
from common.budget.businesses import Business, get_business
from common.budget.controls import paused_refusal, platform_limit
from common.budget.counters import Scope, Totals
from common.budget.ledger import expired_holds, no_room, release_expired, utc_now
from common.budget.limits import day_key, month_key
from common.budget.status import BudgetStatus, refresh
from common.llm import Call, estimator
from common.llm.base import BudgetDenied, Message
from common.money import format_usd, usd


class BudgetDecision(BaseModel):
    """The answer of a budget check (which reserves nothing)."""

    allowed: bool
    reason: str | None = None
    message: str
    business_id: str
    tier: str
    task_type: str
    model: str
    downgraded_from: str | None = None
    estimate_usd: float
    today_remaining_usd: float | None
    month_remaining_usd: float | None

    @classmethod
    def free(cls, business_id: str, tier: str, task_type: str) -> BudgetDecision:
        """The decision for work already done: replaying it costs nothing."""
        return cls(
            allowed=True,
            message="already done: replaying costs nothing",
            business_id=business_id,
            tier=tier,
            task_type=task_type,
            model="",
            estimate_usd=0.0,
            today_remaining_usd=None,
            month_remaining_usd=None,
        )


def headroom(business: Business, scopes: list[Scope], now: dt.datetime) -> dict[str, Totals]:
    """What each scope could still commit, read without writing anything: a period not used yet
    has its whole limit, and holds past their TTL count as free (the next reservation releases
    them)."""
    found = counters.read(scopes)
    expired = expired_holds(business.business_id, now)
    room = {}
    for scope in scopes:
        totals = found.get(scope.name)
        if totals is None:
            source = (
                business.model_dump(mode="json")
                if scope.kind != "platform"
                else (scope.source.get().to_dict() or {})
            )
            totals = Totals(
                headroom=scope.limit_of(source).nanos, limit=scope.limit_of(source).nanos
            )
        period = month_key(now) if scope.kind == "month" else day_key(now)
        freed = sum(h.amount for h in expired if period in (h.day, h.month))
        room[scope.name] = replace(
            totals, headroom=totals.headroom + freed, reserved=totals.reserved - freed
        )
    return room


def check_budget_before_task(
    business_id: str,
    task_type: str,
    messages: list[Message],
    *,
    allow_downgrade: bool = True,
    amount_nanos: int | None = None,
    schema: type[BaseModel] | None = None,
    unseen_bytes: int = 0,
    now: dt.datetime | None = None,
) -> tuple[bool, BudgetDecision]:
    """Would a task of `task_type` on `messages` fit in the business's budget right now?

    The estimate is `amount_nanos` when given, else the pre-flight upper bound of the task's
    first model call (answering with `schema`, when the task has one; `unseen_bytes` bounds text
    the call will carry that `messages` do not hold yet), from the catalogue alone: whichever
    provider serves it, and with no key.
    With `allow_downgrade=False`, a task that needs a model tier the business may not use is
    refused (`model_tier_restricted`) instead of running on a smaller model.

    A check is a question: it writes nothing.

    Raises:
        NotFound: the business is not registered (code `unknown_business`).
    """
    business = get_business(business_id)
    now = now or utc_now()
    call = Call(
        task_type,
        messages,
        allowed_tiers=business.limits.model_tiers,
        schema=schema,
        unseen_bytes=unseen_bytes,
    )
    decision, bound = estimator().bounded(call)
    estimate = bound if amount_nanos is None else amount_nanos
    scopes = business.scopes(now)
    room = headroom(business, scopes, now)
    platform = platform_limit(scopes[2].source.get().to_dict() or {})
    denial = paused_refusal() if platform.paused else None
    denial = denial or next(
        (
            no_room(
                scope,
                room[scope.name].headroom,
                room[scope.name].limit,
                estimate,
                room[scope.name].reserved,
            )
            for scope in scopes
            if room[scope.name].headroom < estimate
        ),
        None,
    )
    if decision.downgraded_from and not allow_downgrade:
        denial = BudgetDenied(
            "model_tier_restricted",
            f"{task_type} needs {decision.downgraded_from}, "
            f"which the {business.tier} tier may not use",
        )
    day, month = scopes[0], scopes[1]
    result = BudgetDecision(
        allowed=denial is None,
        reason=denial.reason if denial else None,
        message=str(denial)
        if denial
        else f"{task_type} on {decision.model} may cost up to {format_usd(estimate)}",
        business_id=business_id,
        tier=business.tier,
        task_type=task_type,
        model=decision.model,
        downgraded_from=decision.downgraded_from,
        estimate_usd=usd(estimate),
        today_remaining_usd=usd(max(room[day.name].headroom, 0)),
        month_remaining_usd=usd(max(room[month.name].headroom, 0)),
    )
    return result.allowed, result


def get_budget_status(business_id: str, *, now: dt.datetime | None = None) -> BudgetStatus:
    """Where a business stands against its daily and monthly limits (and publish it).

    Raises:
        NotFound: the business is not registered (code `unknown_business`).
    """
    business = get_business(business_id)
    now = now or utc_now()
    release_expired(business_id, now)
    return refresh(business, now)
