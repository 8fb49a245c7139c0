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

import dataclasses
from typing import Annotated, Any

from pydantic import ConfigDict, Field

from common.analysis import outcomes
from common.analysis.phases import (
    PHASES,
    PhaseRequest,
    Prepared,
    found_in,
    prepare,
    read,
    run_refs,
)
from common.analysis.prompts import EVIDENCE_RESERVE_BYTES
from common.analysis.registry import SubTaskSpec
from common.budget.check import BudgetDecision, check_budget_before_task
from common.budget.clock import server_clock
from common.budget.room import Room, read_room
from common.llm import Call, estimator
from common.llm.base import InvalidRequest
from common.models import PHASE_ORDER, BusinessInput, Code, PhaseName, Slug, Strict, UnicodeText
from common.money import nanos
from common.platform.errors import Conflict, InvalidInput, PaymentRequired
from common.platform.http import validate
from common.runs import documents
from common.spend.records import ModelTier
from common.tenants.tiers import TierName, limits_for

# A task type's first try before its calls' costs are known: a typical answer, and as much
# again for reasoning (never above the call's bound).
COLD_OUTPUT_FACTOR = 2


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
    """Allow `phase` of `run_id` to start, or raise why not: one read of the run, the results
    it concerns and (with `business_id`, in the same round trip) the business's budget;
    without it, the budget is read after the run."""
    spec = PHASES[phase]
    room: Room | None = None
    if business_id is None:
        found = read(run_id, spec, parts=False)
    else:
        room, snapshots = read_room(
            business_id, server_clock.now(), shards=False, also=run_refs(run_id, spec, parts=False)
        )
        found = found_in(run_id, spec, snapshots.values(), parts=False, business_id=business_id)
    run = found.run
    if run.cancel_requested:
        raise Conflict(f"run {run_id} was cancelled", code="run_cancelled")
    if run.status in documents.TERMINAL:
        raise Conflict(f"run {run_id} already ended {run.status}", code="run_final")
    if found.stored is not None:
        return BudgetDecision.free(run.business_id, run.tier, spec.task_type)
    prepared = Prepared(run_id, run.input, spec, found.earlier)
    return require_room(run_id, run.input, phase, run.tier, prepared=prepared, room=room)  # type: ignore[arg-type]


def require_room(
    run_id: str,
    business: BusinessInput,
    phase: PhaseName,
    tier: TierName | None = None,
    *,
    prepared: Prepared | None = None,
    room: Room | None = None,
) -> BudgetDecision:
    """The budget decision for the phase (against `room` when the caller read it), or
    `PaymentRequired`: whether what the phase is
    expected to cost fits (`expected_cost`), and at least the upper bound of its dearest first
    try (every model call reserves its bound: a phase whose dearest call cannot fit stops here,
    not after paying for the calls before it)."""
    prepared = prepared or prepare(run_id, business, phase, required=False)
    tiers = limits_for(tier).model_tiers if tier is not None else None
    expected, dearest = expected_cost(prepared, tiers)
    return _decide(business, prepared, max(expected, dearest), room)


def expected_run_cost(business: BusinessInput, tier: TierName) -> int:
    """What a whole run for `business` is expected to cost, in nanos (each phase's
    `expected_cost`; the prompts without the earlier phases' results, which a task type's
    recorded costs include)."""
    return sum(expected for expected, _ in _run_costs("", business, tier).values())


def require_run_room(
    run_id: str, business: BusinessInput, tier: TierName, *, room: Room | None = None
) -> BudgetDecision:
    """Before a run starts: whether what the whole run is expected to cost fits (in `room`,
    when the caller read it), and at least the upper bound of its first phase's dearest first
    try; or `PaymentRequired` naming what it needs, what is left and what work in flight
    holds."""
    costs = _run_costs(run_id, business, tier)
    expected = sum(cost for cost, _ in costs.values())
    first = Prepared(run_id, business, PHASES["research"], {})
    return _decide(business, first, max(expected, costs["research"][1]), room)


def _run_costs(
    run_id: str, business: BusinessInput, tier: TierName
) -> dict[PhaseName, tuple[int, int]]:
    tiers = limits_for(tier).model_tiers
    return {
        phase: expected_cost(Prepared(run_id, business, PHASES[phase], {}), tiers)
        for phase in PHASE_ORDER
    }


def expected_cost(prepared: Prepared, tiers: frozenset[ModelTier] | None) -> tuple[int, int]:
    """What the phase is expected to cost, and the upper bound of its dearest first try, in
    nanos.

    Each sub-task counts once per call the phase makes of it (per ICP, batch, option) at what
    its calls cost lately (`outcomes.call_cost`: a high percentile, every ask and escalation
    included). A task type not seen enough yet counts its first try as the catalogue prices
    it, on the tier it starts on, answering at most `COLD_OUTPUT_FACTOR` times its typical
    length (a typical answer, and as much again for reasoning).
    """
    messages = prepared.messages()
    expected = dearest = 0
    for sub in prepared.spec.sub_tasks:
        call = Call(
            sub.task_type,
            messages,
            allowed_tiers=tiers,
            schema=prepared.schema if sub is prepared.first else sub.answer,
            unseen_bytes=EVIDENCE_RESERVE_BYTES if sub.evidence else 0,
            tier="full" if sub.start in ("strongest", None) else sub.start,  # type: ignore[arg-type]
            profile=sub.profile,
        )
        dearest = max(dearest, estimator().bounded(call)[1])
        per_call = outcomes.call_cost(sub.task_type)
        if per_call is None:
            typical = min(sub.max_output_tokens, COLD_OUTPUT_FACTOR * sub.expected_tokens)
            profile = sub.profile.model_copy(update={"max_output_tokens": typical})
            per_call = estimator().bounded(dataclasses.replace(call, profile=profile))[1]
        expected += per_call * calls_of(sub, prepared.business)
    return expected, dearest


def _decide(
    business: BusinessInput, prepared: Prepared, amount: int, room: Room | None = None
) -> BudgetDecision:
    allowed, decision = check_budget_before_task(
        business.business_id,
        prepared.first.task_type,
        prepared.messages(),
        schema=prepared.schema,
        amount_nanos=amount,
        room=room,
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
