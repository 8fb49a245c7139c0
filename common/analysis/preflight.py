"""The router/budget check: may this spend money now?

Two questions, told apart by the body:
- `{"run_id", "phase"}` is the workflow's check before each phase. It refuses with `Conflict`
  (409, `run_cancelled`) once a cancellation was requested and with `PaymentRequired` (402, the
  budget's reason) when the phase would not fit in the budget; the workflow ends the run.
- `{"business_id", "task_type", "input", ...}` is a backend asking whether a task would fit,
  which model it would use and what it may cost (402 with the reason when it would not).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from common.analysis.phases import (
    PHASES,
    PhaseRequest,
    earlier_outputs,
    messages_for,
    output_model,
    stored_output,
)
from common.budget.ledger import BudgetDecision, check_budget_before_task
from common.llm.base import InvalidRequest
from common.models import PhaseName, Slug, Strict
from common.platform.errors import Conflict, InvalidInput, PaymentRequired
from common.platform.http import validate
from common.runs import documents as progress


class GateRequest(PhaseRequest):
    phase: PhaseName


class TaskCheckRequest(Strict):
    business_id: Slug
    task_type: str = Field(min_length=1, max_length=64)
    input: str = Field(min_length=1, max_length=1_000_000)
    # The caller's own upper bound for the task, when it knows better than the router.
    amount_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    allow_downgrade: bool = True


def answer(body: dict[str, Any]) -> BudgetDecision:
    """Answer either question (see the module docstring) or raise why not."""
    if "run_id" in body or "business_id" not in body:
        gate = validate(body, GateRequest)
        return check_phase(gate.run_id, gate.phase)
    task = validate(body, TaskCheckRequest)
    try:
        allowed, decision = check_budget_before_task(
            task.business_id,
            task.task_type,
            [{"role": "user", "content": task.input}],
            allow_downgrade=task.allow_downgrade,
            amount_nanos=None if task.amount_usd is None else round(task.amount_usd * 1e9),
        )
    except InvalidRequest as invalid:
        raise InvalidInput(str(invalid), code="invalid_request", field="task_type") from invalid
    if not allowed:
        raise PaymentRequired(decision.message, code=decision.reason)
    return decision


def check_phase(run_id: str, phase: PhaseName) -> BudgetDecision:
    """Allow `phase` of `run_id` to start, or raise why not."""
    run = progress.get_run(run_id)
    if run.cancel_requested:
        raise Conflict(f"run {run_id} was cancelled", code="run_cancelled")
    if run.status in progress.TERMINAL:
        raise Conflict(f"run {run_id} already ended {run.status}", code="run_final")
    spec = PHASES[phase]
    if stored_output(run_id, phase) is not None:
        return BudgetDecision.free(run.business_id, run.tier, spec.task_type)
    messages = messages_for(run, spec, earlier_outputs(run_id, spec, required=False))
    allowed, decision = check_budget_before_task(
        run.business_id, spec.task_type, messages, schema=output_model(phase, run.input)
    )
    if not allowed:
        raise PaymentRequired(decision.message, code=decision.reason)
    return decision
