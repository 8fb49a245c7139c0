"""Run documents and their append-only event log, the only thing clients listen to.

`runs/{run_id}` holds the live state (status, percent, phase, step, ETA, cost so far, models,
warnings, timestamps); `runs/{run_id}/events/{event_id}` holds one document per event.

Every event has a deterministic id and is written in one batch with the run document's update,
with a create precondition on the event: a replayed step finds its event already there and
changes nothing, so percent and counters move exactly once. Percent moves by server-side
increments only, so concurrent phases cannot make it go backwards.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Literal

from google.api_core import exceptions
from google.cloud import firestore
from pydantic import BaseModel, Field

from common.models import BusinessInput
from common.platform import log
from common.platform.errors import NotFound
from common.platform.store import db

RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "budget_exceeded"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "budget_exceeded"})
RUNS = "runs"
EVENTS = "events"
PHASES = "phases"
logger = logging.getLogger(__name__)


class Run(BaseModel):
    """A run document as stored (and as clients read it)."""

    run_id: str
    business_id: str
    tier: str
    input: BusinessInput
    status: RunStatus
    percent: int = Field(ge=0, le=100)
    phase: str | None = None
    step: str | None = None
    eta_seconds: int | None = None
    cost_nanos: int = 0
    models_used: list[str] = Field(default_factory=list)
    providers_used: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    cancel_requested: bool = False
    execution: str | None = None
    error: str | None = None
    stop_reason: str | None = None
    created_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    duration_seconds: float | None = None
    phases: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @property
    def cost_usd(self) -> float:
        return self.cost_nanos / 1e9


def run_ref(run_id: str) -> firestore.DocumentReference:
    ref: firestore.DocumentReference = db().collection(RUNS).document(run_id)
    return ref


def get_run(run_id: str) -> Run:
    """The run document, or `NotFound`."""
    return run_from(run_ref(run_id).get())


def run_from(snapshot: firestore.DocumentSnapshot[Any]) -> Run:
    """The run in a document snapshot, or `NotFound` if the document does not exist."""
    if not snapshot.exists:
        raise NotFound(f"run {snapshot.id} does not exist", code="run_not_found", field="run_id")
    return Run.model_validate({"run_id": snapshot.id, **(snapshot.to_dict() or {})})


def new_run_document(run_id: str, business: BusinessInput, tier: str) -> dict[str, Any]:
    """The fields of a freshly queued run."""
    return {
        "run_id": run_id,
        "business_id": business.business_id,
        "tier": tier,
        "input": business.model_dump(mode="json"),
        "status": "queued",
        "percent": 0,
        "phase": None,
        "step": "queued",
        "eta_seconds": None,
        "cost_nanos": 0,
        "models_used": [],
        "providers_used": [],
        "warnings": [],
        "cancel_requested": False,
        "created_at": firestore.SERVER_TIMESTAMP,
        "updated_at": firestore.SERVER_TIMESTAMP,
        "phases": {},
    }


def eta_seconds(started_at: dt.datetime | None, percent: int, now: dt.datetime) -> int | None:
    """Remaining seconds if the rest goes as fast as what is done (None until 5% is done)."""
    if started_at is None or percent < 5 or percent >= 100:
        return None if percent < 100 else 0
    elapsed = (now - started_at).total_seconds()
    return max(0, round(elapsed * (100 - percent) / percent))


def event_document(
    kind: str, *, phase: str | None, step: str | None, percent: int, data: dict[str, Any]
) -> dict[str, Any]:
    return {
        "type": kind,
        "phase": phase,
        "step": step,
        "percent": percent,
        "data": data,
        "at": firestore.SERVER_TIMESTAMP,
    }


def report(
    run_id: str,
    event_id: str,
    kind: str,
    *,
    phase: str | None = None,
    step: str | None = None,
    percent_delta: int = 0,
    data: dict[str, Any] | None = None,
    updates: dict[str, Any] | None = None,
    batch: firestore.WriteBatch | None = None,
) -> bool:
    """Record one event and move the run's live state, exactly once per `event_id`.

    Args:
        run_id: The run.
        event_id: Deterministic id of this event (e.g. ``research.03.answered``).
        kind: Event type (``research_progress``, ``phase_completed``, ...).
        phase: Phase the event belongs to, if any; becomes the run's current phase.
        step: Human-readable current step.
        percent_delta: Points this step adds to the run's percent (never negative).
        data: Event payload.
        updates: Extra run-document fields to write with it (dotted paths allowed).
        batch: Other writes that must land atomically with this event.

    Returns:
        True if recorded now, False if this event had been recorded before (a replay).
    """
    if percent_delta < 0:
        raise ValueError("percent only moves forward")
    ref = run_ref(run_id)
    current = ref.get(field_paths=["percent", "started_at"]).to_dict() or {}
    percent = min(100, int(current.get("percent", 0)) + percent_delta)
    now = dt.datetime.now(dt.UTC)
    fields: dict[str, Any] = {
        "percent": firestore.Increment(percent_delta),
        "eta_seconds": eta_seconds(current.get("started_at"), percent, now),
        "updated_at": firestore.SERVER_TIMESTAMP,
    }
    if phase is not None:
        fields["phase"] = phase
    if step is not None:
        fields["step"] = step
    fields.update(updates or {})
    writes = batch or db().batch()
    writes.create(
        ref.collection(EVENTS).document(event_id),
        event_document(kind, phase=phase, step=step, percent=percent, data=data or {}),
    )
    writes.update(ref, fields)
    try:
        writes.commit()
    except exceptions.AlreadyExists:
        return False
    logger.info(
        step or kind,
        extra=log.fields(**(data or {}), event=kind, run_id=run_id, phase=phase, percent=percent),
    )
    return True


def events(run_id: str) -> list[dict[str, Any]]:
    """Every event of a run, oldest first (for `watch` catch-up and tests)."""
    query = run_ref(run_id).collection(EVENTS).order_by("at")
    return [{"id": snap.id, **(snap.to_dict() or {})} for snap in query.stream()]
