"""The six analysis phases: `run_phase`, which one Cloud Function runs.

A phase reads what it needs in one round trip (the run, its own result if any, the results it
builds on, the parts an earlier instance stored, the business's budget), checks on what it read
that the run was not cancelled (409 `run_cancelled`) and that the budget can pay for it (402,
the budget's reason: `admission`, before any model call), takes its lease (one commit that also
puts it on the run: running, its start points), recalls the business's evidence, runs its
pipeline of sub-tasks (`common.analysis.pipelines`: every model call reserves and settles
budget, every answer is checked, every sub-task's end is one commit) and ends with one commit:
its result, its last progress and the run's totals. Replaying a finished phase returns the
stored result and charges nothing; a second instance arriving while the first still works gets
`Busy` (503), which the workflow retries; a cancellation stops the phase between sub-tasks (409
`run_cancelled`), keeping what was paid for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions
from google.cloud import firestore
from pydantic import BaseModel, Field, create_model

from common.analysis import evidence
from common.analysis.admission import Prepared, evidence_query, refuse_cancelled, require_room
from common.analysis.pipelines import PIPELINES, Built, part_keys
from common.analysis.progress import PhaseProgress
from common.analysis.registry import PHASE_TASKS, PHASES, PhaseSpec
from common.analysis.work import Cancelled, Tally, Work, deadline, part_ref
from common.budget import blocks, sources
from common.budget.clock import server_clock
from common.budget.ledger import BudgetLedger
from common.budget.periods import day_key, month_key
from common.budget.room import Room, room_in, room_refs
from common.llm import Router, get_router
from common.llm.base import FAILURE_TEXT, AllProvidersFailed, OutOfTime
from common.llm.catalogue import TIERS
from common.models import (
    PHASE_OUTPUTS,
    BusinessInput,
    Icp,
    IcpOutput,
    PhaseName,
    ResearchOutput,
    RunId,
    Slug,
    Strict,
)
from common.money import usd
from common.platform.errors import AppError, Busy, Conflict, InvalidInput, PaymentRequired
from common.platform.settings import get_settings
from common.platform.store import db
from common.runs import documents, events
from common.runs.events import ShownAttempts, record_warning
from common.spend.ledger import BudgetBusy, BudgetDenied

LEASES = "leases"
# On a stored result: the vectors of what later phases search the evidence for (`_searching`).
QUERIES = "queries"
logger = logging.getLogger(__name__)
__all__ = [
    "LEASES",
    "PHASES",
    "PHASE_TASKS",
    "PhaseRequest",
    "PhaseResult",
    "answer",
    "run_phase",
]


class PhaseRequest(Strict):
    run_id: RunId
    # The workflow's argument: the business's documents are then read with the run's.
    business_id: Slug | None = None


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


def output_model(phase: PhaseName, business: BusinessInput) -> type[Strict]:
    """The schema of a phase's output (ICPs: exactly the number asked for)."""
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


def lease_ref(run_id: str, phase: str) -> firestore.DocumentReference:
    ref: firestore.DocumentReference = documents.run_ref(run_id).collection(LEASES).document(phase)
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


@dataclass(frozen=True)
class Found:
    """What a phase reads before it starts, in one round trip."""

    run: documents.Run
    stored: dict[str, Any] | None
    earlier: dict[PhaseName, Strict]
    missing: list[PhaseName]
    parts: dict[str, dict[str, Any]]
    room: Room | None = None  # the business's budget, when read with the run
    # The vector of what this phase searches the evidence for, if a phase it needs stored it.
    ahead: dict[str, Any] | None = None


def read(
    run_id: str, spec: PhaseSpec, *, parts: bool = True, business_id: str | None = None
) -> Found:
    """The run, the phase's result if stored, the results it builds on and (with `parts`) the
    parts stored before, in one round trip; with `business_id`, also what the budget needs: the
    business, the platform controls and its day and month (the `room` the phase's admission is
    decided in; the business and the controls are kept by `sources` for this process's
    reservations) and the platform shard its first block is taken from (`blocks.prime`).

    Raises:
        NotFound: no such run (or, with `business_id`, no such business).
        InvalidInput: the run is not `business_id`'s (`business_mismatch`).
    """
    refs = _run_refs(run_id, spec, parts=parts)
    if business_id is None:
        return _found_in(run_id, spec, db().get_all(refs), parts=parts)
    read_at = time.monotonic()
    now = server_clock.now()
    budget = {
        ref.path: ref
        for ref in [
            *room_refs(business_id, now, shards=False),
            *blocks.take_refs(business_id, day_key(now), month_key(now)),
        ]
    }
    snapshots = list(db().get_all([*refs, *budget.values()]))
    found = _found_in(run_id, spec, snapshots, parts=parts, business_id=business_id)
    by_path = {snapshot.reference.path: snapshot for snapshot in snapshots}
    room = room_in(business_id, now, by_path, shards=False)
    sources.remember(business_id, snapshots, read_at)
    blocks.prime(snapshots)  # the phase's first take needs no read of its own
    return dataclasses.replace(found, room=room)


def _run_refs(run_id: str, spec: PhaseSpec, *, parts: bool) -> list[firestore.DocumentReference]:
    """The documents `read` reads of the run."""
    refs = [documents.run_ref(run_id), phase_ref(run_id, spec.name)]
    refs += [phase_ref(run_id, name) for name in spec.needs]
    refs += [part_ref(run_id, spec.name, key) for key in (part_keys(spec.name) if parts else [])]
    return refs


def _found_in(
    run_id: str,
    spec: PhaseSpec,
    snapshots: Iterable[Any],
    *,
    parts: bool,
    business_id: str | None = None,
) -> Found:
    """What `snapshots` (read from `_run_refs` and maybe more) say of the phase.

    Raises:
        NotFound: no such run.
        InvalidInput: the run is not `business_id`'s (`business_mismatch`).
    """
    found = {snapshot.reference.path: snapshot for snapshot in snapshots}
    run = documents.run_from(found[documents.run_ref(run_id).path])
    if business_id is not None and run.business_id != business_id:
        raise InvalidInput(
            f"run {run_id} is not a run of business {business_id}",
            code="business_mismatch",
            field="business_id",
        )
    stored = found[phase_ref(run_id, spec.name).path]
    earlier: dict[PhaseName, Strict] = {}
    missing: list[PhaseName] = []
    ahead = None
    for name in spec.needs:
        snapshot = found[phase_ref(run_id, name).path]
        if snapshot.exists:
            earlier[name] = PHASE_OUTPUTS[name].model_validate(snapshot.get("output"))
            with contextlib.suppress(KeyError):  # a result stored before queries were
                ahead = ahead or snapshot.get(f"{QUERIES}.{spec.name}")
        else:
            missing.append(name)
    keys = part_keys(spec.name) if parts else []
    stored_parts = {
        key: found[part_ref(run_id, spec.name, key).path].to_dict() or {}
        for key in keys
        if found[part_ref(run_id, spec.name, key).path].exists
    }
    return Found(
        run=run,
        stored=stored.to_dict() if stored.exists else None,
        earlier=earlier,
        missing=missing,
        parts=stored_parts,
        ahead=ahead,
    )


@dataclass
class Lease:
    """This instance's hold on a phase (its version, for a conditional delete)."""

    ref: firestore.DocumentReference
    update_time: Any
    ended: bool = False


@contextlib.contextmanager
def _lease(run_id: str, spec: PhaseSpec, progress: PhaseProgress) -> Iterator[Lease]:
    """Hold this phase of this run for one instance at a time (expires if the holder dies). The
    hold is written with the phase's start on the run: running, its start points, its event."""
    phase = spec.name
    ref = lease_ref(run_id, phase)
    now = dt.datetime.now(dt.UTC)
    lease = {
        "holder": uuid.uuid4().hex,
        "expires_at": now + dt.timedelta(seconds=get_settings().phase_lease_seconds),
    }
    progress.add(spec.start_points)
    step = f"{spec.title}: recalling evidence" if spec.uses_evidence else f"{spec.title}: started"

    def start(batch: firestore.WriteBatch, event: bool) -> None:
        fields, percent = progress.fields(step=step)
        fields[f"phases.{phase}.status"] = "running"
        # How many instances started it: more than one may have paid for more than the phase's
        # end counts (the run's summary then reads its usage records).
        fields[f"phases.{phase}.starts"] = firestore.Increment(1)
        batch.update(documents.run_ref(run_id), fields)
        if event:
            events.add_event(
                batch, run_id, f"{phase}.00.started", f"{phase}_progress",
                phase=phase, step=step, percent=percent,
            )  # fmt: skip

    acquired = None
    for event in (True, False):
        batch = db().batch()
        batch.create(ref, lease)
        start(batch, event)
        try:
            acquired = progress.commit(batch)[0]
            break
        except exceptions.AlreadyExists:
            if ref.get().exists:
                break  # held, by a live instance or a dead one
            # The phase started before (an instance that stopped early): no second event.
    if acquired is None:
        held = ref.get()
        if held.exists and (held.to_dict() or {})["expires_at"] > now:
            raise Busy(
                f"phase {phase} of run {run_id} is already running", code="phase_in_progress"
            )
        try:  # the holder died: take over, unless another instance just did
            batch = db().batch()
            batch.update(ref, lease, option=db().write_option(last_update_time=held.update_time))
            start(batch, False)
            acquired = progress.commit(batch)[0]
        except (exceptions.FailedPrecondition, exceptions.NotFound):
            raise Busy(
                f"phase {phase} of run {run_id} is already running", code="phase_in_progress"
            ) from None
    held_lease = Lease(ref, acquired.update_time)
    try:
        yield held_lease
    finally:
        if not held_lease.ended:
            with contextlib.suppress(exceptions.FailedPrecondition, exceptions.NotFound):
                ref.delete(option=db().write_option(last_update_time=held_lease.update_time))


def answer(request: PhaseRequest, phase: PhaseName) -> PhaseResult:
    """What a phase function answers to `request`."""
    return run_phase(request.run_id, phase, business_id=request.business_id)


def run_phase(
    run_id: str,
    phase: PhaseName,
    *,
    router: Router | None = None,
    business_id: str | None = None,
) -> PhaseResult:
    """Run one phase of a run, or return its stored result if it already ran.

    Raises:
        NotFound: the run does not exist.
        InvalidInput: `business_id` is given and the run is not that business's.
        Conflict: the run is not running (`run_not_running`), was cancelled while the phase
            ran (`run_cancelled`: it stopped between sub-tasks), or an earlier phase this one
            needs has not finished.
        PaymentRequired: the budget refused a model call (the code is the budget's reason).
        Busy: another instance is running this phase, every provider failed, or the phase ran
            out of time; retry later (what was done is kept).
        AppError: every provider refused its API key (500 `providers_refused_key`, not
            retried: a refused key stays refused).
    """
    started = time.monotonic()
    settings = get_settings()
    spec = PHASES[phase]
    found = read(run_id, spec, business_id=business_id)
    run = found.run
    refuse_cancelled(run)
    if found.stored is not None:
        return _result(run_id, phase, found.stored, replayed=True)
    if run.status != "running":
        raise Conflict(f"run {run_id} is {run.status}", code="run_not_running")
    if found.missing:
        raise Conflict(
            f"phase {phase} needs {found.missing[0]} to finish first", code="phase_out_of_order"
        )
    # The budget check, on what the first read found (without a business id, the room is read
    # now): a phase that cannot fit stops before its first call.
    checking = time.monotonic()
    require_room(Prepared(run_id, run.input, spec, found.earlier), run.tier, room=found.room)  # type: ignore[arg-type]
    check_ms = (time.monotonic() - checking) * 1000
    business = sources.current(run.business_id).business
    progress = PhaseProgress(run, phase, write_every=settings.progress_write_seconds)
    with _lease(run_id, spec, progress) as lease:
        recalled = (
            evidence.recall(run.business_id, evidence_query(spec, run.input), ahead=found.ahead)
            if spec.uses_evidence
            else []  # none of its sub-tasks reads evidence: no query, no embedding
        )
        budget = BudgetLedger(
            business,
            run_id=run_id,
            phase=phase,
            on_warning=lambda warning: record_warning(run_id, warning, phase),
            defer_settles=True,  # the sub-tasks' commits write them
        )
        ledger = Tally(ShownAttempts(budget, run_id, phase))
        work = Work(
            run_id=run_id,
            business=run.input,
            router=router or get_router(),
            ledger=ledger,
            progress=progress,
            settings=settings,
            allowed=business.limits.model_tiers,
            deadline=deadline(started, settings),
            evidence=recalled,
            parts=found.parts,
            budget=budget,
        )
        try:
            built = _build(work, spec, found.earlier)
            if phase == "research":
                assert isinstance(built.output, ResearchOutput)
                evidence.remember(run_id, run.input, built.output)
            # What the phases after it will search for, embedded while its model is loaded.
            queries = evidence.queries_ahead(
                {name: evidence_query(PHASES[name], run.input) for name in _searching(phase)}
            )
            duration_ms = (time.monotonic() - started) * 1000
            return _store(work, spec, built, lease, duration_ms, check_ms, queries)
        finally:
            ledger.close()  # what is left unwritten, then the blocks this request took go back


def _build(work: Work, spec: PhaseSpec, earlier: dict[PhaseName, Strict]) -> Built:
    """Run the phase's pipeline, turning what stops it into the function's answer."""
    run_id = work.run_id
    try:
        return PIPELINES[spec.name](work, earlier)
    except Cancelled as cancelled:
        _stopped(work, spec)
        raise Conflict(str(cancelled), code="run_cancelled") from cancelled
    except OutOfTime as late:
        _show(run_id, f"{spec.title}: out of time; the workflow retries, keeping what is done")
        raise Busy(f"phase {spec.name} ran out of time: {late}", code="phase_out_of_time") from late
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
            _show(run_id, f"{spec.title}: {causes}")
            raise AppError(str(failed), code="providers_refused_key") from failed
        _show(run_id, f"{spec.title}: {causes}; the workflow retries")
        raise Busy(str(failed), code="providers_unavailable") from failed


def _show(run_id: str, step: str) -> None:
    """Put `step` on the run's live state (no event: retries of a phase would repeat it)."""
    documents.run_ref(run_id).update({"step": step, "updated_at": firestore.SERVER_TIMESTAMP})


def _stopped(work: Work, spec: PhaseSpec) -> None:
    """The phase stops for a cancellation: its event and the cost of what it paid for that no
    part has counted yet, once."""
    batch = db().batch()
    step = f"{spec.title}: stopped, the run was cancelled"
    fields, percent = work.progress.fields(step=step)
    fields[f"phases.{spec.name}.status"] = "cancelled"
    fields["cost_nanos"] = firestore.Increment(work.ledger.nanos - work.counted_nanos)
    events.add_event(
        batch,
        work.run_id,
        f"{spec.name}.99.stopped",
        "phase_stopped",
        phase=spec.name,
        step=step,
        percent=percent,
        data={"parts": [done.key for done in work.done], "cost_usd": usd(work.ledger.nanos)},
    )
    batch.update(documents.run_ref(work.run_id), fields)
    with contextlib.suppress(exceptions.AlreadyExists):
        work.progress.commit(batch)


def _searching(phase: PhaseName) -> list[PhaseName]:
    """The phases that need `phase` and search the evidence."""
    return [name for name, spec in PHASES.items() if phase in spec.needs and spec.uses_evidence]


def _store(
    work: Work,
    spec: PhaseSpec,
    built: Built,
    lease: Lease,
    duration_ms: float,
    check_ms: float,
    queries: dict[str, Any],
) -> PhaseResult:
    """The phase's end, one commit: its result (with the `queries` of later phases it
    embedded), its last sub-tasks' events, its progress, the run's totals, the usage records of
    its last calls and the closes of the budget blocks the request took; the lease goes with
    it."""
    run_id = work.run_id
    done = sorted(work.done, key=lambda d: (TIERS.index(d.tier), -d.cost_nanos))
    lead = done[-1]  # the strongest tier's answer: the phase's model
    unresolved = (built.unresolved + [u for d in work.done for u in d.unresolved])[:10]
    escalations = sum(len(d.escalations) for d in work.done)
    input_tokens = sum(d.input_tokens for d in work.done)
    output_tokens = sum(d.output_tokens for d in work.done)
    # Reviews inside checks are paid but no part: their cost is the phase's beyond its parts.
    cost = sum(d.cost_nanos for d in work.done) + work.ledger.nanos - _own_parts(work)
    sub_tasks = [d.summary() for d in work.done]
    stored = {
        "phase": spec.name,
        "output": built.output.model_dump(mode="json"),
        "model": lead.model,
        "provider": lead.provider,
        "models": sorted({d.model for d in work.done}),
        "sub_tasks": sub_tasks,
        "escalations": escalations,
        "unresolved": unresolved,
        "attempts": sum(d.attempts for d in work.done),
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        "cost_nanos": cost,
        "duration_ms": duration_ms,
        "check_ms": check_ms,  # of duration_ms, the budget check's
        "completed_at": firestore.SERVER_TIMESTAMP,
    }
    if queries:
        stored[QUERIES] = queries
    summary = {
        "model": lead.model,
        "provider": lead.provider,
        "cost_nanos": cost,
        "duration_ms": duration_ms,
        "check_ms": check_ms,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "status": "completed",
        "models": stored["models"],
        "escalations": escalations,
        "unresolved": unresolved,
        "sub_tasks": [
            {k: s[k] for k in ("key", "title", "model", "tier", "escalations", "cost_nanos")}
            for s in sub_tasks
        ],
    }
    step = f"{spec.title}: done"
    fields, percent = work.progress.fields(step=step, final=True)
    fields.update({f"phases.{spec.name}.{key}": value for key, value in summary.items()})
    fields["cost_nanos"] = firestore.Increment(work.ledger.nanos - work.counted_nanos)
    # Every model that answered a call of this instance (critics' too), as its usage records say.
    answered = [a for a in work.ledger.attempts if a.ok]
    fields["models_used"] = firestore.ArrayUnion(
        sorted({*(d.model for d in work.done), *(a.model for a in answered)})
    )
    fields["providers_used"] = firestore.ArrayUnion(
        sorted({*(d.provider for d in work.done), *(a.provider for a in answered)})
    )

    def batch() -> firestore.WriteBatch:
        batch = db().batch()
        # If another instance stored this phase first, nothing here is written and its result
        # counts.
        batch.create(phase_ref(run_id, spec.name), stored)
        for final, label in work.final:
            events.add_event(
                batch,
                run_id,
                work.event_id(final.sub, final.key),
                "subtask_completed",
                phase=spec.name,
                step=final.step(spec.title, label),
                percent=percent,
                data=work.event_data(final),
            )
        events.add_event(
            batch,
            run_id,
            f"{spec.name}.99.completed",
            "phase_completed",
            phase=spec.name,
            step=step,
            percent=percent,
            data={
                **{k: summary[k] for k in ("model", "provider", "cost_nanos", "duration_ms")},
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cost_usd": usd(cost),
                "escalations": escalations,
                "unresolved": unresolved,
            },
        )
        batch.update(documents.run_ref(run_id), fields)
        batch.delete(lease.ref)
        return batch

    try:
        work.commit_with_settles(batch, closing=True)
        lease.ended = True
        replayed = False
    except exceptions.AlreadyExists:
        replayed = True
    else:
        work.progress.catch_up()
    if unresolved:
        logger.warning(
            "phase stored with checks still failing",
            extra={"json_fields": {"run_id": run_id, "phase": spec.name, "unresolved": unresolved}},
        )
    if replayed:  # another instance stored it first: its result counts
        stored = phase_ref(run_id, spec.name).get().to_dict() or {}
    return _result(run_id, spec.name, stored, replayed=replayed)


def _own_parts(work: Work) -> int:
    """What this instance's own (not reused) sub-tasks cost."""
    return sum(d.cost_nanos for d in work.done if not d.reused)


# --- What the budget check needs ---------------------------------------------------------------


def prepare(run_id: str, business: BusinessInput, phase: PhaseName, *, required: bool) -> Prepared:
    """The stored outputs of the phases `phase` builds on (`Conflict` if one is missing and
    `required`; otherwise the missing ones are left out)."""
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
    return Prepared(run_id, business, spec, earlier)
