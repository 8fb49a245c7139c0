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

from common.analysis.phases import PHASES, PhaseRequest, prepare, stored_output
from common.analysis.prompts import EVIDENCE_RESERVE_BYTES
from common.budget.check import BudgetDecision, check_budget_before_task
from common.llm.base import InvalidRequest
from common.models import BusinessInput, Code, PhaseName, Slug, Strict, UnicodeText
from common.money import nanos
from common.platform.errors import Conflict, InvalidInput, PaymentRequired
from common.platform.http import validate
from common.runs import documents


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
    """Allow `phase` of `run_id` to start, or raise why not."""
    run = documents.get_run(run_id)
    if run.cancel_requested:
        raise Conflict(f"run {run_id} was cancelled", code="run_cancelled")
    if run.status in documents.TERMINAL:
        raise Conflict(f"run {run_id} already ended {run.status}", code="run_final")
    if stored_output(run_id, phase) is not None:
        return BudgetDecision.free(run.business_id, run.tier, PHASES[phase].task_type)
    return require_room(run_id, run.input, phase)


def require_room(run_id: str, business: BusinessInput, phase: PhaseName) -> BudgetDecision:
    """The budget decision for the phase's first model call, or `PaymentRequired`."""
    prepared = prepare(run_id, business, phase, required=False)
    allowed, decision = check_budget_before_task(
        business.business_id,
        prepared.spec.task_type,
        prepared.messages(),
        schema=prepared.schema,
        unseen_bytes=EVIDENCE_RESERVE_BYTES,
    )
    if not allowed:
        raise PaymentRequired(decision.message, code=decision.reason)
    return decision
