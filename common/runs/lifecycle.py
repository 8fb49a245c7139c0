"""A run's lifecycle: queued → running → one final status, with totals at the end.

Each transition is a compare-and-set on the run document (an `update_time` precondition, retried
on a race) written together with its event, so replaying a transition changes nothing.

When the workflow says whose run it is, a transition makes two Firestore calls: one read of the
run with the business's budget alerts, one commit. Its totals come from the run document (each
phase's end commit puts its cost, model and provider there), and from the usage records only
where that document cannot hold them: a phase that did not complete (stopped by a cancellation,
failed) leaves its own cost, models and providers off it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import random
import re
import time
from typing import Annotated, Any, Literal

from google.api_core import exceptions
from google.cloud import firestore
from pydantic import AfterValidator, BaseModel

from common.budget import status, usage
from common.budget.periods import day_key, month_key
from common.budget.status import BudgetWarning
from common.models import PHASE_ORDER, CleanedText, Code, RunId, Slug, Strict
from common.money import usd
from common.platform import log
from common.platform.errors import Conflict, Contention, InvalidInput
from common.platform.secrets import redact
from common.platform.store import db
from common.runs.documents import (
    PHASES,
    RUNS,
    TERMINAL,
    Run,
    RunStatus,
    get_run,
    run_from,
    run_ref,
)
from common.runs.documents import (
    START_WEIGHT as START_WEIGHT,  # re-exported: the lifecycle adds these points
)
from common.runs.events import add_event, add_warning

Transition = Literal["start", "succeed", "cancel", "budget_exceeded", "fail"]
FINAL_STATUS: dict[Transition, RunStatus] = {
    "succeed": "succeeded",
    "cancel": "cancelled",
    "budget_exceeded": "budget_exceeded",
    "fail": "failed",
}
FINAL_EVENT: dict[RunStatus, str] = {
    "succeeded": "run_completed",
    "cancelled": "run_cancelled",
    "budget_exceeded": "budget_exceeded",
    "failed": "run_failed",
}
MESSAGE_MAX_CHARS = 64_000  # of the workflow's error, read to find its cause
ERROR_MAX_CHARS = 4000  # of the readable error a run keeps
# The budget's refusal when an operator paused the platform: not the business's budget.
PAUSED = "platform_paused"
_FAILED_IN = re.compile(r"failed in (\[[^\]]*\]): (.*)", re.DOTALL)
logger = logging.getLogger(__name__)


class LifecycleRequest(Strict):
    run_id: RunId
    transition: Transition
    reason: Code | None = None
    # The workflow's error, whatever it holds (a whole HTTP body, an engine's message): always
    # recorded, so cleaned and cut rather than refused; `transition` keeps a readable line.
    message: (
        Annotated[CleanedText, AfterValidator(lambda text: text[:MESSAGE_MAX_CHARS])] | None
    ) = None
    # Whose run it is: lets the run and the business's budget alerts be read at once (a run of
    # another business is refused).
    business_id: Slug | None = None


class PhaseTotal(BaseModel):
    model: str | None
    provider: str | None
    cost_usd: float
    duration_ms: float | None


class RunSummary(BaseModel):
    """The run's tracking totals: what the workflow returns and the CLI prints."""

    run_id: str
    status: RunStatus
    percent: int
    reason: str | None
    total_cost_usd: float
    duration_seconds: float | None
    models_used: list[str]
    providers_used: list[str]
    phases: dict[str, PhaseTotal]
    warnings: list[str]
    results_path: str


def summarize(run: Run) -> RunSummary:
    """Totals of a run from its usage records: every settled model call counts, per phase and
    overall (one query; a transition reads them from the run document where it can)."""
    return _summary(run, usage.run_totals(run.run_id))


def _summary(run: Run, totals: usage.RunTotals) -> RunSummary:
    cost_by_phase = totals.cost_by_phase
    phases = {
        name: PhaseTotal(
            model=run.phases.get(name, {}).get("model"),
            provider=run.phases.get(name, {}).get("provider"),
            cost_usd=usd(cost_by_phase.get(name, 0)),
            duration_ms=run.phases.get(name, {}).get("duration_ms"),
        )
        for name in PHASE_ORDER
        if name in run.phases or name in cost_by_phase
    }
    return RunSummary(
        run_id=run.run_id,
        status=run.status,
        percent=run.percent,
        reason=run.stop_reason,
        total_cost_usd=usd(totals.cost_nanos),
        duration_seconds=run.duration_seconds,
        models_used=totals.models,
        providers_used=totals.providers,
        phases=phases,
        warnings=run.warnings,
        results_path=f"{RUNS}/{run.run_id}/{PHASES}",
    )


def _totals(run: Run) -> usage.RunTotals:
    """What the run was charged: from the run document when every phase on it completed (its
    end commit put its cost, models and providers there, and the run's cost is their sum);
    otherwise from its usage records (one query).

    The run document misses what an instance of a phase paid outside its stored sub-tasks when
    it ended without its end commit (a failure the workflow retried, a crash): the usage
    records count it, the run document does not (common/analysis would have to put it there).
    """
    # Each phase completed by the one instance that started it: a phase started again (after a
    # failure the workflow retried, a crash) may have paid for more than its end commit counts.
    once = all(
        phase.get("status") == "completed" and phase.get("starts") == 1
        for phase in run.phases.values()
    )
    if once:
        costs = {name: int(phase.get("cost_nanos", 0)) for name, phase in run.phases.items()}
        if sum(costs.values()) == run.cost_nanos:
            return usage.RunTotals(costs, sorted(run.models_used), sorted(run.providers_used))
    return usage.run_totals(run.run_id)


def readable_error(message: str) -> str:
    """One redacted line saying what failed and why.

    The workflow reports a failure as `failed in ["research"]: {its error as JSON}`, where the
    error of a function's answer holds the answer's body (`{"error": {"code", "message"}}`) and
    that of a parallel step each branch's error: the causes are those bodies' messages. Any
    other text is kept as it is, on one line.
    """
    found = _FAILED_IN.fullmatch(message)
    text = message
    if found:
        try:
            phases, error = json.loads(found[1]), json.loads(found[2])
        except ValueError:
            pass  # cut or not ours: keep it as it came
        else:
            where = ", ".join(str(phase) for phase in phases) or "the workflow"
            text = f"{where} failed: {'; '.join(_causes(error))}"
    return " ".join(redact(text).split())[:ERROR_MAX_CHARS]


def _causes(error: Any) -> list[str]:
    """The messages of the function answers (or engine errors) inside a workflow error."""
    if not isinstance(error, dict):
        return [str(error)]
    body = error.get("body")
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        answer = body["error"]
        return [f"{answer.get('message', '')} (HTTP {error.get('code')} {answer.get('code', '')})"]
    causes = []
    for branch in error.get("branches") or []:
        payload = (branch.get("error") or {}).get("payload") if isinstance(branch, dict) else None
        try:
            causes += _causes(json.loads(payload) if isinstance(payload, str) else payload)
        except ValueError:
            causes.append(str(payload))
    return causes or [str(error.get("message") or json.dumps(error))]


def _changes(
    run: Run,
    transition: Transition,
    reason: str | None,
    message: str | None,
    now: dt.datetime,
) -> tuple[str, str, dict[str, Any]] | None:
    """(event id, event kind, run fields) for this transition, or None if it already happened."""
    if transition == "start":
        if run.status == "running":
            return None
        if run.status != "queued":
            raise Conflict(f"run {run.run_id} is {run.status}; it cannot start", code="run_final")
        fields = {
            "status": "running",
            "started_at": now,
            "step": "started",
            "percent": firestore.Increment(START_WEIGHT),
        }
        return "run.started", "run_started", fields
    status = FINAL_STATUS[transition]
    if run.status == status:
        return None
    if run.status in TERMINAL:
        raise Conflict(f"run {run.run_id} already ended {run.status}", code="run_final")
    if transition == "succeed":
        missing = [
            name for name in PHASE_ORDER if run.phases.get(name, {}).get("status") != "completed"
        ]
        if missing:
            raise Conflict(
                f"run {run.run_id} has unfinished phases: {', '.join(missing)}",
                code="phases_missing",
            )
    started = run.started_at or now
    stopped = "stopped: budget exceeded"
    if reason == PAUSED:
        stopped = "stopped: RaptorFlow is paused by an operator"
    fields = {
        "status": status,
        "finished_at": now,
        "duration_seconds": round((now - started).total_seconds(), 3),
        "eta_seconds": 0 if status == "succeeded" else None,
        "step": {"succeeded": "done", "cancelled": "cancelled", "failed": "failed"}.get(
            status, stopped
        ),
        "stop_reason": reason,
        "error": None if message is None else readable_error(message),
    }
    if status == "succeeded":
        fields["percent"] = 100
    return "run.finished", FINAL_EVENT[status], fields


def transition(
    run_id: str,
    to: Transition,
    *,
    reason: str | None = None,
    message: str | None = None,
    business_id: str | None = None,
) -> RunSummary:
    """Move a run to its next state (idempotent) and return its totals.

    Args:
        business_id: Whose run it is, if the caller knows: then the run and the business's
            budget alerts are read at once (otherwise one after the other).

    Raises:
        NotFound: no such run.
        Conflict: the run belongs to another business than `business_id`, is already in another
            final state, or `succeed` with phases missing.
    """
    alerts: list[BudgetWarning] | None = [] if to == "start" else None  # None: not read yet
    for attempt in range(8):
        now = dt.datetime.now(dt.UTC)
        ref = run_ref(run_id)
        if business_id is not None and to != "start":
            snapshot, alerts = _read(ref, business_id, now)
        else:
            snapshot = ref.get()
        run = run_from(snapshot)
        if business_id is not None and run.business_id != business_id:
            raise InvalidInput(
                f"run {run_id} does not belong to business_id {business_id}",
                code="business_mismatch",
                field="business_id",
            )
        change = _changes(run, to, reason, message, now)
        if change is None:
            return _summary(run, _totals(run))
        if alerts is None:
            alerts = status.alerts(run.business_id, [day_key(now), month_key(now)])
        # The business's budget warnings that other work crossed go in before the final event,
        # so that they come before it (a watcher stops at that event).
        new = [warning for warning in alerts if warning.message not in run.warnings]
        event_id, kind, fields = change
        batch = db().batch()
        batch.update(
            ref,
            {**fields, "updated_at": firestore.SERVER_TIMESTAMP},
            option=db().write_option(last_update_time=snapshot.update_time),
        )
        add_event(
            batch,
            run_id,
            event_id,
            kind,
            step=str(fields["step"]),
            percent={"start": run.percent + START_WEIGHT, "succeed": 100}.get(to, run.percent),
            data={"reason": reason, "message": fields.get("error")},
        )
        for warning in new:
            add_warning(batch, run_id, warning)
        try:
            batch.commit()
        except (exceptions.FailedPrecondition, exceptions.AlreadyExists):
            # Lost a race, or an event is there already (another delivery of this transition):
            # look again. At once the first time: the usual other writer is one write that is
            # done (the launch linking the run to its execution as the start reads it; a
            # phase's last progress); then with a growing pause.
            if attempt:
                time.sleep(random.uniform(0.01, 0.05) * attempt)
            continue
        if to == "start":
            # Nothing is spent before a run starts: its totals need no read (the start is on the
            # run's critical path).
            return _started(run)
        warnings = list(run.warnings)  # as the commit's array unions leave them
        for warning in new:
            if warning.message not in warnings:
                warnings.append(warning.message)
        # The run as this commit left it: as read (the precondition held) with what it wrote.
        ended = run.model_copy(update={**fields, "warnings": warnings})
        summary = _summary(ended, _totals(ended))
        logger.log(
            logging.ERROR if kind == "run_failed" else logging.INFO,
            f"run {kind.removeprefix('run_')}",
            extra=log.fields(
                event=kind,
                run_id=run_id,
                business_id=ended.business_id,
                status=ended.status,
                reason=reason,
                cost_usd=summary.total_cost_usd,
                duration_seconds=ended.duration_seconds,
            ),
        )
        return summary
    raise Contention(f"run {run_id} is changing too fast; try again")


def _read(
    ref: firestore.DocumentReference, business_id: str, now: dt.datetime
) -> tuple[firestore.DocumentSnapshot[Any], list[BudgetWarning]]:
    """The run and the warnings recorded for the business's day and month, in one read."""
    alert_refs = status.alert_refs(business_id, [day_key(now), month_key(now)])
    found = list(db().get_all([ref, *alert_refs]))
    run = next(snapshot for snapshot in found if snapshot.reference.path == ref.path)
    return run, status.alerts_in(alert_refs, found)


def _started(run: Run) -> RunSummary:
    """The totals of `run` as its start leaves it."""
    logger.info(
        "run started",
        extra=log.fields(
            event="run_started", run_id=run.run_id, business_id=run.business_id, status="running"
        ),
    )
    return RunSummary(
        run_id=run.run_id,
        status="running",
        percent=run.percent + START_WEIGHT,
        reason=None,
        total_cost_usd=0.0,
        duration_seconds=None,
        models_used=[],
        providers_used=[],
        phases={},
        warnings=run.warnings,
        results_path=f"{RUNS}/{run.run_id}/{PHASES}",
    )


def request_cancel(run_id: str) -> Run:
    """Ask a run to stop: it ends `cancelled` at its next check, keeping finished phases.

    Raises:
        NotFound: no such run.
        Conflict: the run already ended (`run_final`).
    """
    run = get_run(run_id)
    if run.status in TERMINAL:
        raise Conflict(f"run {run_id} already ended {run.status}", code="run_final")
    batch = db().batch()
    # `cancel_requests` is what a phase learns between its sub-tasks from its own commits'
    # transform results (a Maximum(0) of it), without a read: it stops there.
    batch.update(
        run_ref(run_id),
        {
            "cancel_requested": True,
            "cancel_requests": firestore.Increment(1),
            "updated_at": firestore.SERVER_TIMESTAMP,
        },
    )
    add_event(
        batch,
        run_id,
        "run.cancel_requested",
        "cancel_requested",
        step="cancel requested",
        percent=run.percent,
    )
    with contextlib.suppress(exceptions.AlreadyExists):  # asked before
        batch.commit()
    return get_run(run_id)
