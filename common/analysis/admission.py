"""May a phase start, and what will it cost? The budget's side of a phase's admission, shared
by the phase itself (which checks on its first read, before it takes its lease) and by the
budget check function (which answers the same question for any caller, and writes nothing).

A phase is refused when its run was cancelled (409 `run_cancelled`) or has ended (409
`run_final`), and when what it is expected to cost, or the upper bound of its dearest first
try, does not fit in the business's budget (402, the budget's reason): it stops before its
first call, not after paying for the calls before it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property

from pydantic import BaseModel

from common.analysis import answers, outcomes, prompts
from common.analysis.prompts import EVIDENCE_RESERVE_BYTES
from common.analysis.registry import PHASES, PhaseSpec, SubTaskSpec
from common.budget.check import BudgetDecision, check_budget_before_task
from common.budget.room import Room
from common.llm import Call, estimator
from common.llm.base import Message
from common.models import PHASE_ORDER, BusinessInput, PhaseName, Strict
from common.platform.errors import Conflict, PaymentRequired
from common.runs import documents
from common.spend.records import ModelTier
from common.tenants.tiers import TierName, limits_for

# A task type's first try before its calls' costs are known: a typical answer, and as much
# again for reasoning (never above the call's bound).
COLD_OUTPUT_FACTOR = 2


def evidence_query(spec: PhaseSpec, business: BusinessInput) -> str:
    """What the phase searches the business's evidence for."""
    return f"{business.name}: {prompts.INSTRUCTIONS[spec.name]}"


@dataclass(frozen=True)
class Prepared:
    """What a phase's first model call is built from, for the budget checks before it: the
    phase's first sub-task, its prompt and its answer's schema."""

    run_id: str
    business: BusinessInput
    spec: PhaseSpec
    earlier: dict[PhaseName, Strict]

    @property
    def first(self) -> SubTaskSpec:
        return self.spec.sub_tasks[0]

    @cached_property
    def schema(self) -> type[Strict]:
        if self.spec.name == "icps":
            return answers.icp_segments(self.business.icp_count)
        return self.first.answer

    @cached_property
    def prompt(self) -> list[Message]:
        """The first sub-task's prompt before evidence is found, built once: what the checks
        price."""
        return self.messages()

    @property
    def evidence_query(self) -> str:
        """What the phase searches the business's evidence for."""
        return evidence_query(self.spec, self.business)

    def messages(self, found: list[str] | None = None) -> list[Message]:
        """The first sub-task's prompt, with the evidence `found` for it."""
        sub = self.first
        instruction = sub.instruction.format(
            icp_count=self.business.icp_count, first=1, last=3, must_use=""
        )
        earlier: dict[str, BaseModel | str] = {str(k): v for k, v in self.earlier.items()}
        return prompts.subtask_messages(instruction, self.business, earlier, found)


def refuse_cancelled(run: documents.Run) -> None:
    """Raise `Conflict` (`run_cancelled`) once a cancellation of `run` was requested."""
    if run.cancel_requested:
        raise Conflict(f"run {run.run_id} was cancelled", code="run_cancelled")


def refuse_stopped(run: documents.Run) -> None:
    """Raise `Conflict` when `run` may start no more work: `run_cancelled` once a cancellation
    was requested, `run_final` once it ended."""
    refuse_cancelled(run)
    if run.status in documents.TERMINAL:
        raise Conflict(f"run {run.run_id} already ended {run.status}", code="run_final")


def require_room(
    prepared: Prepared, tier: TierName | None = None, *, room: Room | None = None
) -> BudgetDecision:
    """The budget decision for the prepared phase (against `room` when the caller read it; the
    model tiers `tier` allows), or `PaymentRequired`: whether what the phase is expected to cost
    fits (`expected_cost`), and at least the upper bound of its dearest first try (every model
    call reserves its bound: a phase whose dearest call cannot fit stops here, not after paying
    for the calls before it)."""
    tiers = limits_for(tier).model_tiers if tier is not None else None
    expected, dearest = expected_cost(prepared, tiers)
    return _decide(prepared.business, prepared, max(expected, dearest), room)


def expected_run_cost(business: BusinessInput, tier: TierName) -> int:
    """What a whole run for `business` is expected to cost, in nanos (each phase's
    `expected_cost`; the prompts without the earlier phases' results, which a task type's
    recorded costs include)."""
    return sum(expected for expected, _ in _run_costs(_run_phases("", business), tier).values())


def require_run_room(
    run_id: str, business: BusinessInput, tier: TierName, *, room: Room | None = None
) -> BudgetDecision:
    """Before a run starts: whether what the whole run is expected to cost fits (in `room`,
    when the caller read it), and at least the upper bound of its first phase's dearest first
    try; or `PaymentRequired` naming what it needs, what is left and what work in flight
    holds."""
    phases = _run_phases(run_id, business)
    costs = _run_costs(phases, tier)
    expected = sum(cost for cost, _ in costs.values())
    return _decide(business, phases["research"], max(expected, costs["research"][1]), room)


def _run_phases(run_id: str, business: BusinessInput) -> dict[PhaseName, Prepared]:
    """Every phase of a run, prepared without the earlier phases' results."""
    return {phase: Prepared(run_id, business, PHASES[phase], {}) for phase in PHASE_ORDER}


def _run_costs(
    phases: dict[PhaseName, Prepared], tier: TierName
) -> dict[PhaseName, tuple[int, int]]:
    tiers = limits_for(tier).model_tiers
    return {phase: expected_cost(prepared, tiers) for phase, prepared in phases.items()}


def expected_cost(prepared: Prepared, tiers: frozenset[ModelTier] | None) -> tuple[int, int]:
    """What the phase is expected to cost, and the upper bound of its dearest first try, in
    nanos.

    Each sub-task counts once per call the phase makes of it (per ICP, batch, option) at what
    its calls cost lately (`outcomes.call_cost`: a high percentile, every ask and escalation
    included). A task type not seen enough yet counts its first try as the catalogue prices
    it, on the tier it starts on, answering at most `COLD_OUTPUT_FACTOR` times its typical
    length (a typical answer, and as much again for reasoning).
    """
    messages = prepared.prompt
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
        prepared.prompt,
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
