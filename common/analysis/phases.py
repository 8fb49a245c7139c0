"""The six analysis phases: what each needs, and `run_phase`, which one Cloud Function runs.

A phase builds its prompt from the business and the earlier results it needs, asks the router
for a structured answer (every model call reserves and settles budget), validates it, stores it
under `runs/{run_id}/phases/{phase}` and reports progress. Replaying a finished phase returns the
stored result and charges nothing; a second instance arriving while the first still works gets
`Busy` (503), which the workflow retries.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions
from google.cloud import firestore
from pydantic import BaseModel, Field, create_model

from common.analysis import evidence, prompts
from common.budget.ledger import BudgetLedger
from common.llm import Completion, Router, get_router
from common.llm.base import FAILURE_TEXT, AllProvidersFailed, Message
from common.models import (
    PHASE_OUTPUTS,
    BusinessInput,
    Icp,
    IcpOutput,
    PhaseName,
    ResearchOutput,
    RunId,
    Strict,
)
from common.money import usd
from common.platform.errors import AppError, Busy, Conflict, PaymentRequired
from common.platform.settings import get_settings
from common.platform.store import db
from common.runs import documents, events
from common.runs.events import ShownAttempts, record_warning
from common.spend.ledger import BudgetBusy, BudgetDenied
from common.tenants.businesses import Business, get_business

LEASES = "leases"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Phase:
    name: PhaseName
    title: str
    weight: int  # points of the run's percent
    needs: tuple[PhaseName, ...]
    task_type: str  # the router's task type: its default complexity and output bound


PHASES: dict[PhaseName, Phase] = {
    phase.name: phase
    for phase in (
        Phase("research", "Researching the market", 20, (), "research_analysis"),
        Phase("positioning", "Choosing a positioning", 15, ("research",), "positioning_analysis"),
        Phase(
            "icps", "Profiling ideal customers", 15, ("research", "positioning"), "icp_generation"
        ),
        Phase(
            "strategy", "Setting the strategy", 15, ("research", "positioning"), "strategy_analysis"
        ),
        Phase(
            "content",
            "Planning 12 weeks of content",
            15,
            ("positioning", "icps"),
            "content_calendar",
        ),
        Phase(
            "analytics",
            "Designing measurement",
            15,
            ("positioning", "icps", "strategy"),
            "analytics_projection",
        ),
    )
}
PHASE_TASKS: dict[PhaseName, str] = {name: phase.task_type for name, phase in PHASES.items()}
# Steps of a phase and their share (in tenths) of its weight; the model call is the long one.
STEPS: tuple[tuple[str, int], ...] = (
    ("started", 1),
    ("context", 1),
    ("answered", 6),
    ("stored", 2),
)


class PhaseRequest(Strict):
    run_id: RunId


class PhaseResult(BaseModel):
    """What a phase function answers (the output itself stays in Firestore)."""

    run_id: str
    phase: PhaseName
    replayed: bool
    model: str
    provider: str
    cost_usd: float
    input_tokens: int
    output_tokens: int
    duration_ms: float
    stored_at: str


def step_delta(weight: int, index: int) -> int:
    """Percent points step `index` adds; a phase's steps add up to exactly its weight."""
    done_before = sum(share for _, share in STEPS[:index])
    done_after = done_before + STEPS[index][1]
    return round(weight * done_after / 10) - round(weight * done_before / 10)


def output_model(phase: PhaseName, business: BusinessInput) -> type[Strict]:
    """The schema the model must answer with (ICPs: exactly the number asked for)."""
    if phase != "icps":
        return PHASE_OUTPUTS[phase]
    count = business.icp_count
    return create_model(
        "IcpOutput",
        __base__=IcpOutput,
        icps=(list[Icp], Field(min_length=count, max_length=count)),
    )


def phase_ref(run_id: str, phase: str) -> firestore.DocumentReference:
    ref: firestore.DocumentReference = (
        documents.run_ref(run_id).collection(documents.PHASES).document(phase)
    )
    return ref


def stored_output(run_id: str, phase: PhaseName) -> Strict | None:
    """The validated output of a finished phase, or None."""
    snapshot = phase_ref(run_id, phase).get()
    if not snapshot.exists:
        return None
    return PHASE_OUTPUTS[phase].model_validate((snapshot.to_dict() or {})["output"])


def _result(run_id: str, phase: PhaseName, stored: dict[str, Any], replayed: bool) -> PhaseResult:
    return PhaseResult(
        run_id=run_id,
        phase=phase,
        replayed=replayed,
        model=stored["model"],
        provider=stored["provider"],
        cost_usd=usd(stored["cost_nanos"]),
        input_tokens=stored["usage"]["input_tokens"],
        output_tokens=stored["usage"]["output_tokens"],
        duration_ms=stored["duration_ms"],
        stored_at=phase_ref(run_id, phase).path,
    )


@contextlib.contextmanager
def _lease(run_id: str, phase: PhaseName) -> Iterator[None]:
    """Hold this phase of this run for one instance at a time (expires if the holder dies)."""
    ref = documents.run_ref(run_id).collection(LEASES).document(phase)
    now = dt.datetime.now(dt.UTC)
    lease = {
        "holder": uuid.uuid4().hex,
        "expires_at": now + dt.timedelta(seconds=get_settings().phase_lease_seconds),
    }
    try:
        acquired = ref.create(lease)
    except exceptions.AlreadyExists:
        held = ref.get()
        if held.exists and (held.to_dict() or {})["expires_at"] > now:
            raise Busy(
                f"phase {phase} of run {run_id} is already running", code="phase_in_progress"
            ) from None
        try:  # the holder died: take over, unless another instance just did
            acquired = ref.update(
                lease, option=db().write_option(last_update_time=held.update_time)
            )
        except (exceptions.FailedPrecondition, exceptions.NotFound):
            raise Busy(
                f"phase {phase} of run {run_id} is already running", code="phase_in_progress"
            ) from None
    try:
        yield
    finally:
        with contextlib.suppress(exceptions.FailedPrecondition, exceptions.NotFound):
            ref.delete(option=db().write_option(last_update_time=acquired.update_time))


def _report_step(run_id: str, spec: Phase, index: int, **kwargs: Any) -> bool:
    name = STEPS[index][0]
    return events.report(
        run_id,
        f"{spec.name}.{index:02d}.{name}",
        kwargs.pop("kind", f"{spec.name}_progress"),
        phase=spec.name,
        percent_delta=step_delta(spec.weight, index),
        **kwargs,
    )


def run_phase(run_id: str, phase: PhaseName, *, router: Router | None = None) -> PhaseResult:
    """Run one phase of a run, or return its stored result if it already ran.

    Raises:
        NotFound: the run does not exist.
        Conflict: the run is not running, or an earlier phase this one needs has not finished.
        PaymentRequired: the budget refused a model call (the code is the budget's reason).
        Busy: another instance is running this phase, or every provider failed: retry later.
        AppError: every provider refused its API key (500 `providers_refused_key`, not
            retried: a refused key stays refused).
    """
    started = time.monotonic()
    spec = PHASES[phase]
    run = documents.get_run(run_id)
    stored = phase_ref(run_id, phase).get()
    if stored.exists:
        return _result(run_id, phase, stored.to_dict() or {}, replayed=True)
    if run.status != "running":
        raise Conflict(f"run {run_id} is {run.status}", code="run_not_running")
    prepared = prepare(run_id, run.input, phase, required=True)

    with _lease(run_id, phase):
        _report_step(
            run_id,
            spec,
            0,
            step=f"{spec.title}: retrieving evidence",
            updates={f"phases.{phase}.status": "running"},
        )
        found = evidence.recall(run.business_id, prepared.evidence_query)
        business = get_business(run.business_id)
        _report_step(run_id, spec, 1, step=f"{spec.title}: asking the model")
        completion = _ask(router or get_router(), prepared, business, prepared.messages(found))
        if isinstance(completion.parsed, ResearchOutput):
            evidence.remember(run_id, run.input, completion.parsed)
        _report_step(
            run_id,
            spec,
            2,
            step=f"{spec.title}: answer from {completion.model_used} validated",
            data={"model": completion.model_used, "provider": completion.provider},
        )
        duration_ms = (time.monotonic() - started) * 1000
        return _store(run_id, spec, completion, duration_ms)


@dataclass(frozen=True)
class Prepared:
    """What one phase's model call is built from: the same for the phase itself, the budget
    check before it and the check before a run starts."""

    run_id: str
    business: BusinessInput
    spec: Phase
    earlier: dict[PhaseName, Strict]
    schema: type[Strict]

    @property
    def evidence_query(self) -> str:
        """What the phase searches the business's evidence for."""
        return f"{self.business.name}: {prompts.INSTRUCTIONS[self.spec.name]}"

    def messages(self, found: list[str] | None = None) -> list[Message]:
        """The phase's prompt, with the evidence `found` for it (at most
        `prompts.EVIDENCE_MAX_BYTES` of it)."""
        return prompts.phase_messages(self.spec.name, self.business, self.earlier, found)


def prepare(run_id: str, business: BusinessInput, phase: PhaseName, *, required: bool) -> Prepared:
    """The phase's schema and the stored outputs of the phases it builds on (`Conflict` if one
    is missing and `required`; otherwise the missing ones are left out)."""
    spec = PHASES[phase]
    earlier: dict[PhaseName, Strict] = {}
    for name in spec.needs:
        output = stored_output(run_id, name)
        if output is not None:
            earlier[name] = output
        elif required:
            raise Conflict(
                f"phase {spec.name} needs {name} to finish first", code="phase_out_of_order"
            )
    return Prepared(run_id, business, spec, earlier, output_model(phase, business))


def _ask(
    router: Router, prepared: Prepared, business: Business, messages: list[Message]
) -> Completion[Strict]:
    spec = prepared.spec
    ledger = BudgetLedger(
        business,
        run_id=prepared.run_id,
        phase=spec.name,
        on_warning=lambda warning: record_warning(prepared.run_id, warning, spec.name),
    )
    try:
        return router.execute(
            spec.task_type,
            messages,
            schema=prepared.schema,
            allowed_tiers=business.limits.model_tiers,
            ledger=ShownAttempts(ledger, prepared.run_id, spec.name),
            call_key=f"{prepared.run_id}:{spec.name}",
        )
    except BudgetDenied as denied:
        raise PaymentRequired(str(denied), code=denied.reason) from denied
    except BudgetBusy as busy:
        raise Busy(str(busy), code=busy.reason) from busy
    except AllProvidersFailed as failed:
        causes = ", ".join(
            f"{f.provider} {f.model} {FAILURE_TEXT.get(f.code, 'failed')}" for f in failed.failures
        )
        if failed.refused_keys:
            # A refused key stays refused: no retry, the run fails now and says why.
            _show(prepared.run_id, f"{spec.title}: {causes}")
            raise AppError(str(failed), code="providers_refused_key") from failed
        _show(prepared.run_id, f"{spec.title}: {causes}; the workflow retries")
        raise Busy(str(failed), code="providers_unavailable") from failed
    finally:
        ledger.close()  # blocks this request took and no longer uses go back now


def _show(run_id: str, step: str) -> None:
    """Put `step` on the run's live state (no event: retries of a phase would repeat it)."""
    documents.run_ref(run_id).update({"step": step, "updated_at": firestore.SERVER_TIMESTAMP})


def _store(
    run_id: str, spec: Phase, completion: Completion[Strict], duration_ms: float
) -> PhaseResult:
    assert completion.parsed is not None  # the router validated it against the schema
    stored = {
        "phase": spec.name,
        "output": completion.parsed.model_dump(mode="json"),
        "model": completion.model_used,
        "provider": completion.provider,
        "downgraded_from": completion.decision.downgraded_from,
        "routing_reason": completion.decision.reason,
        "fallback_used": completion.fallback_used,
        "attempts": len(completion.attempts),
        "usage": completion.usage.model_dump(),
        "cost_nanos": completion.cost_nanos,
        "duration_ms": duration_ms,
        "completed_at": firestore.SERVER_TIMESTAMP,
    }
    summary = {
        **{k: stored[k] for k in ("model", "provider", "cost_nanos", "duration_ms")},
        "input_tokens": completion.usage.input_tokens,
        "output_tokens": completion.usage.output_tokens + completion.usage.reasoning_tokens,
    }
    batch = db().batch()
    batch.create(phase_ref(run_id, spec.name), stored)
    # If another instance stored this phase first, nothing here is written and its result counts.
    recorded = _report_step(
        run_id,
        spec,
        3,
        kind="phase_completed",
        step=f"{spec.title}: done",
        data={**summary, "cost_usd": usd(completion.cost_nanos)},
        updates={
            f"phases.{spec.name}": {**summary, "status": "completed"},
            # The live totals (the final summary is summed from the usage records).
            "cost_nanos": firestore.Increment(completion.cost_nanos),
            "models_used": firestore.ArrayUnion([completion.model_used]),
            "providers_used": firestore.ArrayUnion([completion.provider]),
        },
        batch=batch,
    )
    snapshot = phase_ref(run_id, spec.name).get()
    return _result(run_id, spec.name, snapshot.to_dict() or {}, replayed=not recorded)
