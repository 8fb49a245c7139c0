"""A phase's live progress on its run document, written without reading it first.

Each phase owns a span of the run's percent: it starts where the phases of earlier stages end
(`registry.base_points`) and adds its own points as its sub-tasks finish, and as streamed tokens
arrive (tokens so far against the sub-task's expected length, never past `STREAM_CAP` of its
points before it finishes). A phase running beside another (icps with strategy) adds what it
last learned of its sibling's points.

Every write is Firestore transforms, so nothing is read first:
- `percent` and `phases.{phase}.points` are `Maximum`s: they never move back, however writes of
  parallel phases, retries and replays interleave;
- the sibling's `phases.{sibling}.points` and the run's `cancel_requests` get `Maximum(0)`, which
  changes nothing and whose transform result tells this phase their values after the commit;
- `updated_at` is the server's time.

Streamed writes are throttled (at most one per `progress_write_seconds` per phase after its last
write of any kind, the start and the sub-tasks' ends included, and only when the percent moves);
sub-task boundaries are one commit each, shared with what the boundary must write anyway
(`Work`).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1 import _helpers

from common.analysis.registry import MAX_STEP, PHASES, base_points, siblings
from common.llm.base import OutputSink
from common.models import PhaseName
from common.platform.store import db
from common.runs.documents import Run, eta_seconds, run_ref

# How far streamed tokens may move a sub-task's points before it has finished.
STREAM_CAP = 0.9
CANCEL_REQUESTS = "cancel_requests"
logger = logging.getLogger(__name__)


class PhaseProgress:
    """One phase's progress within one run (thread-safe: parallel sub-tasks share it)."""

    def __init__(self, run: Run, phase: PhaseName, *, write_every: float = 1.0) -> None:
        self.run_id = run.run_id
        self.phase = phase
        self.spec = PHASES[phase]
        self.base = base_points(phase)
        self.siblings = siblings(phase)
        self.percent = run.percent  # the run's, as last seen
        self.cancelled = run.cancel_requested
        self._started_at = run.started_at
        self._write_every = write_every
        self._sibling_points = {
            name: int(run.phases.get(name, {}).get("points") or 0) for name in self.siblings
        }
        self._done = 0
        self._flowing: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()
        self._last_write = -math.inf
        self._writing = False

    # --- points ----------------------------------------------------------------------------

    def add(self, points: int, key: str | None = None) -> None:
        """`points` are done (a sub-task finished, or was found done before); `key` stops
        streaming into the bar."""
        with self._lock:
            self._done += points
            if key is not None:
                self._flowing.pop(key, None)

    @property
    def own(self) -> int:
        """This phase's points so far, streamed fractions included."""
        with self._lock:
            return self._own()

    def _own(self) -> int:
        streamed = sum(points * fraction for points, fraction in self._flowing.values())
        return min(self.spec.weight, self._done + math.floor(streamed))

    def _percent(self, own: int) -> int:
        return min(100, self.base + own + sum(self._sibling_points.values()))

    # --- writes ----------------------------------------------------------------------------

    def fields(self, *, step: str | None = None, final: bool = False) -> tuple[dict[str, Any], int]:
        """The run document's progress fields for a write now, and the percent they propose.

        `final`: the phase is done (its whole weight)."""
        with self._lock:
            own = self.spec.weight if final else self._own()
            # Never more than MAX_STEP past what the run showed last: a burst (answers that
            # arrived faster than the throttle let them show) catches up over later writes.
            percent = max(min(self._percent(own), self.percent + MAX_STEP), self.percent)
        now = dt.datetime.now(dt.UTC)
        fields: dict[str, Any] = {
            "percent": firestore.Maximum(percent),
            f"phases.{self.phase}.points": firestore.Maximum(own),
            CANCEL_REQUESTS: firestore.Maximum(0),
            "eta_seconds": eta_seconds(self._started_at, percent, now),
            "phase": self.phase,
            "updated_at": firestore.SERVER_TIMESTAMP,
        }
        for name in self.siblings:
            fields[f"phases.{name}.points"] = firestore.Maximum(0)
        if step is not None:
            fields["step"] = step
        return fields, percent

    def commit(self, batch: firestore.WriteBatch) -> list[Any]:
        """Commit `batch` (which holds an update of the run with `fields`) and learn from its
        transform results what the run's percent, the sibling's points and the cancellation
        requests are now. Raises what the commit raises (a replay's AlreadyExists)."""
        writes = list(batch._write_pbs)  # the commit forgets them
        results = batch.commit()
        with self._lock:
            # Every write shows progress: streamed ones wait `write_every` after any of them.
            self._last_write = max(self._last_write, time.monotonic())
        path = run_ref(self.run_id)._document_path
        for write, result in zip(writes, results, strict=True):
            name = write.update.name or write.transform.document
            if name != path or not write.update_transforms:
                continue
            found: dict[str, Any] = {
                transform.field_path: _helpers.decode_value(value, db())
                for transform, value in zip(
                    write.update_transforms, result.transform_results, strict=True
                )
            }
            with self._lock:
                self.percent = max(self.percent, int(found.get("percent", self.percent)))
                for sibling in self.siblings:
                    key = f"phases.{sibling}.points"
                    if key in found:
                        self._sibling_points[sibling] = int(found[key])
                if int(found.get(CANCEL_REQUESTS, 0) or 0) > 0:
                    self.cancelled = True
        return list(results)

    def catch_up(self) -> int:
        """After the phase's end: the writes (at most MAX_STEP points each) that bring the run
        to where this phase ends, if a burst left it behind. Returns how many it made."""
        writes = 0
        while writes < 100 // MAX_STEP:
            with self._lock:
                behind = self._percent(self.spec.weight) > self.percent
            if not behind:
                break
            fields, _ = self.fields(final=True)
            batch = db().batch()
            batch.update(run_ref(self.run_id), fields)
            self.commit(batch)
            writes += 1
        return writes

    def sink(self, key: str, points: int, expected_tokens: int) -> OutputSink:
        """What hears a streamed answer of sub-task instance `key` (worth `points`)."""

        def heard(tokens: int) -> None:
            fraction = min(tokens / max(expected_tokens, 1), STREAM_CAP)
            with self._lock:
                before = self._flowing.get(key, (points, 0.0))[1]
                if fraction <= before:
                    return  # an answer asked again starts from 0: the bar holds still
                self._flowing[key] = (points, fraction)
                due = not self._writing and time.monotonic() - self._last_write >= self._write_every
                if not due or self._percent(self._own()) <= self.percent:
                    return
                self._writing = True
                self._last_write = time.monotonic()
            try:
                self._write_streamed()
            finally:
                with self._lock:
                    self._writing = False

        return heard

    def _write_streamed(self) -> None:
        fields, _ = self.fields()
        batch = db().batch()
        batch.update(run_ref(self.run_id), fields)
        try:
            self.commit(batch)
        except Exception as error:  # a progress write never fails the model call it reports
            logger.warning(
                "streamed progress not written",
                extra={"json_fields": {"run_id": self.run_id, "error": str(error)[:200]}},
            )
