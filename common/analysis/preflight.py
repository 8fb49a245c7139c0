"""The router/budget check: may this spend money now?

Two questions, told apart by their fields:
- `{"run_id", "phase"}`: may this phase of this run start? It refuses with `Conflict` (409,
  `run_cancelled`) once a cancellation was requested and with `PaymentRequired` (402, the
  budget's reason) when the phase would not fit in the budget. The phase itself asks the same
  question on its first read (`admission`), so the workflow need not ask it first.
- `{"business_id", "task_type", "input", ...}` is a backend asking whether a task would fit,
  which model it would use and what it may cost (402 with the reason when it would not).

A check is a question: it needs no API key and no embedding model (it estimates from the model
catalogue and the tokenizer, reserving room for the evidence a phase will recall), and it
writes nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field

from common.analysis import outcomes
from common.analysis.admission import Prepared, refuse_stopped, require_room
from common.analysis.phases import PHASES, PhaseRequest, read
from common.budget.check import BudgetDecision, check_budget_before_task
from common.llm.base import InvalidRequest
from common.models import Code, PhaseName, Slug, Strict, UnicodeText
from common.money import nanos
from common.platform.errors import InvalidInput, PaymentRequired
from common.platform.http import validate


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
    """A body with any field only a task check has is one (so its errors name its fields); any
    other body is a phase check (both name a `business_id`)."""
    own = TaskCheck.model_fields.keys() - PhaseCheck.model_fields.keys()
    return TaskCheck if own & body.keys() else PhaseCheck


def answer(body: dict[str, Any]) -> BudgetDecision:
    """Answer either question (see the module docstring) or raise why not."""
    with outcomes.read_only():  # a check writes nothing, not even the outcomes it read
        return _answer(body)


def _answer(body: dict[str, Any]) -> BudgetDecision:
    request = validate(body, request_kind(body))
    if isinstance(request, PhaseCheck):
        return check_phase(request.run_id, request.phase, business_id=request.business_id)
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


def check_phase(run_id: str, phase: PhaseName, *, business_id: str | None = None) -> BudgetDecision:
    """May `phase` of `run_id` start? The question a phase asks itself on its first read
    (`admission`), asked from outside, on the same read: the run, the results it concerns and
    (with `business_id`, in the same round trip) the business's budget; without it, the budget
    is read after the run."""
    spec = PHASES[phase]
    found = read(run_id, spec, parts=False, business_id=business_id)
    run = found.run
    refuse_stopped(run)
    if found.stored is not None:
        return BudgetDecision.free(run.business_id, run.tier, spec.task_type)
    prepared = Prepared(run_id, run.input, spec, found.earlier)
    return require_room(prepared, run.tier, room=found.room)  # type: ignore[arg-type]
