"""Run documents: `runs/{run_id}` holds a run's live state (status, percent, phase, step, ETA,
cost so far, models, warnings, timestamps), which clients listen to; its event log is
`common.runs.events`."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any, Literal

from google.cloud import firestore
from pydantic import BaseModel, Field

from common.models import BusinessInput
from common.money import usd
from common.platform.errors import NotFound
from common.platform.store import db
from common.runs.watcher import Subscription, Watcher

RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "budget_exceeded"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "budget_exceeded"})
RUNS = "runs"
PHASES = "phases"
# Percent points for starting (the lifecycle's); the phases hold most of the rest and finishing
# the last few (common/analysis/registry.py: FINISH_WEIGHT).
START_WEIGHT = 2


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
        return usd(self.cost_nanos)


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


# One Firestore listener per run in this process, shared by every consumer (CLI, tests, benches).
run_watcher: Watcher[Run] = Watcher(run_from)


def subscribe(run_id: str) -> Subscription[Run]:
    """A live view of the run: its state now, then every new one (`get` or iterate; close it).

    Every consumer of a run in this process shares one Firestore listener, and each state is
    decoded once for all of them (`common.runs.watcher`); a run that does not exist (or was
    deleted) is a `NotFound` in its place.
    """
    return run_watcher.subscribe(run_ref(run_id))


def watch(
    run_id: str,
    on_change: Callable[[Run], None],
    *,
    timeout: float | None = None,
) -> Run:
    """Call `on_change` with every new state of the run until it ends; return the final state.

    `on_change` runs on the caller's thread, never on Firestore's.

    Raises:
        NotFound: the run does not exist, or was deleted.
        ListenerFailed: Firestore's listener failed and could not be re-established.
        TimeoutError: the run did not end within `timeout` seconds.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    with subscribe(run_id) as states:
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                run = states.get(timeout=left)
            except TimeoutError:
                raise TimeoutError(f"run {run_id} did not end within {timeout:g} s") from None
            on_change(run)
            if run.status in TERMINAL:
                return run
