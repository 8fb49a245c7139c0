"""The router/budget check: may this spend money now?

Two questions, told apart by their fields:
- `{"run_id", "phase"}` is the workflow's check before each phase. It refuses with `Conflict`
  (409, `run_cancelled`) once a cancellation was requested and with `PaymentRequired` (402, the
  budget's reason) when the phase would not fit in the budget; the workflow ends the run.
- `{"business_id", "task_type", "input", ...}` is a backend asking whether a task would fit,
  which model it would use and what it may cost (402 with the reason when it would not).

A check is a question: it needs no API key and no embedding model (it estimates from the model
catalogue and the tokenizer, reserving room for the evidence a phase will recall), and it
writes nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field

from common.analysis.phases import PHASES, PhaseRequest, Prepared, prepare, read
from common.analysis.prompts import EVIDENCE_RESERVE_BYTES
from common.analysis.registry import SubTaskSpec
from common.budget.check import BudgetDecision, check_budget_before_task
from common.llm import Call, estimator
from common.llm.base import InvalidRequest
from common.models import BusinessInput, Code, PhaseName, Slug, Strict, UnicodeText
from common.money import nanos
from common.platform.errors import Conflict, InvalidInput, PaymentRequired
from common.platform.http import validate
from common.runs import documents
from common.tenants.tiers import TierName, limits_for


class PhaseCheck(PhaseRequest):
    phase: PhaseName


class TaskCheck(Strict):
    # Types as JSON has them: `true` is no amount and "yes" no boolean.
    model_config = ConfigDict(extra="forbid", strict=True)

    business_id: Slug
    task_type: Code
    input: Annotated[UnicodeText, Field(min_length=1, max_length=1_000_000)]
    # The caller's own upper bound for the task, when it knows better than the router.
    amount_usd: float | None = Field(default=None, ge=0, le=1_000_000, allow_inf_nan=False)
    allow_downgrade: bool = True


def request_kind(body: dict[str, Any]) -> type[PhaseCheck] | type[TaskCheck]:
    """A body with any field of a task check is one (so its errors name its fields); any other
    body is a phase check."""
    return TaskCheck if TaskCheck.model_fields.keys() & body.keys() else PhaseCheck


def answer(body: dict[str, Any]) -> BudgetDecision:
    """Answer either question (see the module docstring) or raise why not."""
    request = validate(body, request_kind(body))
    if isinstance(request, PhaseCheck):
        return check_phase(request.run_id, request.phase)
    try:
        allowed, decision = check_budget_before_task(
            request.business_id,
            request.task_type,
            [{"role": "user", "content": request.input}],
            allow_downgrade=request.allow_downgrade,
            amount_nanos=None if request.amount_usd is None else nanos(str(request.amount_usd)),
        )
    except InvalidRequest as invalid:
        raise InvalidInput(str(invalid), code="invalid_request", field="task_type") from invalid
    if not allowed:
        raise PaymentRequired(decision.message, code=decision.reason)
    return decision


def check_phase(run_id: str, phase: PhaseName) -> BudgetDecision:
    """Allow `phase` of `run_id` to start, or raise why not (one read of the run and the
    results it concerns, then the budget's)."""
    found = read(run_id, PHASES[phase], parts=False)
    run = found.run
    if run.cancel_requested:
        raise Conflict(f"run {run_id} was cancelled", code="run_cancelled")
    if run.status in documents.TERMINAL:
        raise Conflict(f"run {run_id} already ended {run.status}", code="run_final")
    if found.stored is not None:
        return BudgetDecision.free(run.business_id, run.tier, PHASES[phase].task_type)
    prepared = Prepared(run_id, run.input, PHASES[phase], found.earlier)
    return require_room(run_id, run.input, phase, run.tier, prepared=prepared)  # type: ignore[arg-type]


def require_room(
    run_id: str,
    business: BusinessInput,
    phase: PhaseName,
    tier: TierName | None = None,
    *,
    prepared: Prepared | None = None,
) -> BudgetDecision:
    """The budget decision for the phase, or `PaymentRequired`: whether the first try of each
    of its model calls fits (every sub-task, once per ICP or batch, where it starts without
    outcomes, on the tiers `tier` allows; all tiers when unknown). Asks again and escalations
    are paid from what is left; the ledger refuses any call that no longer fits."""
    prepared = prepared or prepare(run_id, business, phase, required=False)
    tiers = limits_for(tier).model_tiers if tier is not None else None
    messages = prepared.messages()
    bound = 0
    for sub in prepared.spec.sub_tasks:
        start = "full" if sub.start in ("strongest", None) else sub.start
        call = Call(
            sub.task_type,
            messages,
            allowed_tiers=tiers,
            schema=prepared.schema if sub is prepared.first else sub.answer,
            unseen_bytes=EVIDENCE_RESERVE_BYTES if sub.evidence else 0,
            tier=start,  # type: ignore[arg-type]
            profile=sub.profile,
        )
        bound += estimator().bounded(call)[1] * calls_of(sub, business)
    allowed, decision = check_budget_before_task(
        business.business_id,
        prepared.first.task_type,
        messages,
        schema=prepared.schema,
        amount_nanos=bound,
    )
    if not allowed:
        raise PaymentRequired(decision.message, code=decision.reason)
    return decision


def calls_of(sub: SubTaskSpec, business: BusinessInput) -> int:
    """How many first tries of `sub` a phase makes (once per ICP, per batch, per option)."""
    if sub.phase == "icps" and sub.name == "profile":
        return business.icp_count
    if sub.name == "critique":
        return 3
    return max(sub.instances)
