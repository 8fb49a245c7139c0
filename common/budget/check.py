"""Would a task fit in a business's budget right now? A question: it reserves nothing and writes
nothing, and reads everything it needs in one round trip (the business, the platform controls,
its day and month; the platform's shards too, in a second, only when the day's own share of the
platform's cap would not do)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel

from common.budget.clock import server_clock
from common.budget.room import Room, read_room
from common.llm import Call, estimator
from common.llm.base import Message
from common.money import format_usd, usd
from common.spend.ledger import BudgetDenied


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
    room: Room | None = None,
) -> tuple[bool, BudgetDecision]:
    """Would a task of `task_type` on `messages` fit in the business's budget right now?

    The estimate is `amount_nanos` when given, else the pre-flight upper bound of the task's
    first model call (answering with `schema`, when the task has one; `unseen_bytes` bounds text
    the call will carry that `messages` do not hold yet), from the catalogue alone: whichever
    provider serves it, and with no key.
    With `allow_downgrade=False`, a task that needs a model tier the business may not use is
    refused (`model_tier_restricted`) instead of running on a smaller model.

    A check is a question: it writes nothing. It reads the business's budget unless the caller
    read it (`room`, at `now`) with its own documents.

    Raises:
        NotFound: the business is not registered (code `unknown_business`).
    """
    now = now or server_clock.now()
    # The day's own share of the platform's cap is on its document; the cap's shards (sixteen
    # more documents) are read only when that share alone would not do.
    if room is None:
        room, _ = read_room(business_id, now, shards=False)
    business = room.business
    call = Call(
        task_type,
        messages,
        allowed_tiers=business.limits.model_tiers,
        schema=schema,
        unseen_bytes=unseen_bytes,
    )
    decision, bound = estimator().bounded(call)
    estimate = bound if amount_nanos is None else amount_nanos
    denial = room.refusal(estimate)
    if isinstance(denial, BudgetDenied) and denial.reason == "platform_cap_reached":
        room, _ = read_room(business_id, now)
        denial = room.refusal(estimate)
    if decision.downgraded_from and not allow_downgrade:
        denial = BudgetDenied(
            "model_tier_restricted",
            f"{task_type} needs {decision.downgraded_from}, "
            f"which the {business.tier} tier may not use",
        )
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
        today_remaining_usd=usd(max(room.day.limit_room, 0)),
        month_remaining_usd=usd(max(room.month.limit_room, 0)),
    )
    return result.allowed, result
