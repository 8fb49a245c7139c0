"""A run's append-only event log, `runs/{run_id}/events/{event_id}`, and the one way to write it.

Every event has a deterministic id and is created (precondition: new) in one batch with the run
document's update: a replayed step finds its event already there and changes nothing, so percent
and counters move exactly once. Percent moves by server-side increments only, so concurrent
phases cannot make it go backwards.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from typing import Any

from google.api_core import exceptions
from google.cloud import firestore

from common.budget.status import BudgetWarning
from common.llm.base import FAILURE_TEXT
from common.platform import log
from common.platform.store import db
from common.runs.documents import eta_seconds, run_ref
from common.spend.ledger import Ledger
from common.spend.records import AttemptRecord, ModelTier

EVENTS = "events"
logger = logging.getLogger(__name__)


def add_event(
    batch: firestore.WriteBatch,
    run_id: str,
    event_id: str,
    kind: str,
    *,
    phase: str | None = None,
    step: str | None = None,
    percent: int,
    data: dict[str, Any] | None = None,
) -> None:
    """Create event `event_id` of `run_id` in `batch`, which then fails with AlreadyExists if the
    event was recorded before."""
    batch.create(
        run_ref(run_id).collection(EVENTS).document(event_id),
        {
            "type": kind,
            "phase": phase,
            "step": step,
            "percent": percent,
            "data": data or {},
            "at": firestore.SERVER_TIMESTAMP,
        },
    )


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
    add_event(writes, run_id, event_id, kind, phase=phase, step=step, percent=percent, data=data)
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


def add_warning(
    batch: firestore.WriteBatch, run_id: str, warning: BudgetWarning, phase: str | None = None
) -> None:
    """Record a budget warning on the run in `batch`: an event (once per threshold and period:
    the batch fails with AlreadyExists if it is there) and a line of the run's warnings."""
    add_event(
        batch,
        run_id,
        f"budget.{warning.key}",
        "budget_warning",
        phase=phase,
        percent=0,
        data={"level": warning.level, "kind": warning.kind, "message": warning.message},
    )
    batch.update(run_ref(run_id), {"warnings": firestore.ArrayUnion([warning.message])})


def record_warning(run_id: str, warning: BudgetWarning, phase: str | None = None) -> None:
    """`add_warning` in a batch of its own (nothing happens if the run has it already)."""
    batch = db().batch()
    add_warning(batch, run_id, warning, phase)
    with contextlib.suppress(exceptions.AlreadyExists):
        batch.commit()


class ShownAttempts:
    """A `Ledger` that shows each failed attempt on the run's live step as it happens (the next
    model, a repair or the workflow's retry follows), and passes everything to `ledger`."""

    def __init__(self, ledger: Ledger, run_id: str, phase: str) -> None:
        self._ledger = ledger
        self.run_id = run_id
        self.phase = phase

    def reserve(self, *, key: str, model: str, tier: ModelTier, upper_bound_nanos: int) -> None:
        self._ledger.reserve(key=key, model=model, tier=tier, upper_bound_nanos=upper_bound_nanos)

    def settle(self, attempt: AttemptRecord) -> None:
        self._ledger.settle(attempt)
        if not attempt.ok:
            failed = FAILURE_TEXT.get(attempt.error_code or "", "failed")
            step = f"{self.phase}: {attempt.provider} {attempt.model} {failed}"
            run_ref(self.run_id).update({"step": step, "updated_at": firestore.SERVER_TIMESTAMP})

    def close(self) -> None:
        """Close the ledger underneath, if it has an end (a `BudgetLedger` does)."""
        close = getattr(self._ledger, "close", None)
        if close is not None:
            close()
