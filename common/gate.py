"""The check the workflow makes before each phase: may this run spend money on it now?

Answers with the budget decision; refuses with `Conflict` (409, `run_cancelled`) once a
cancellation was requested and with `PaymentRequired` (402, the budget's reason) when the
phase would not fit in the budget. The workflow ends the run accordingly.
"""

from __future__ import annotations

from common import progress, prompts
from common.budget import BudgetDecision, check_budget_before_task
from common.errors import Conflict, PaymentRequired
from common.models import PhaseName, Strict
from common.phases import PHASES, PhaseRequest, stored_output


class GateRequest(PhaseRequest):
    phase: PhaseName


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
    earlier: dict[PhaseName, Strict] = {}
    for name in spec.needs:
        if (output := stored_output(run_id, name)) is not None:
            earlier[name] = output
    messages = prompts.phase_messages(phase, run.input, dict(earlier))
    allowed, decision = check_budget_before_task(run.business_id, spec.task_type, messages)
    if not allowed:
        raise PaymentRequired(decision.message, code=decision.reason)
    return decision
