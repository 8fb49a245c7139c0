"""100 tasks from ten OS processes against one business with room for a few (issue 11).

Half-way the daily limit is lowered; two workers are killed with SIGKILL while they hold a
reservation (their holds must expire and be released), two are frozen with SIGSTOP past the
reservation TTL and resumed (their late settles are the one documented way to spend above a
limit, by at most their own reservations). Afterwards: the spend is within the bound, nothing
stays reserved, every refusal has a reason, and the counters agree with the usage records.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter

from common.budget import counters, usage
from common.budget.ledger import RESERVATIONS, release_expired
from common.platform.settings import get_settings
from common.platform.store import db
from common.tenants.businesses import Business, get_business
from local.emulator import FirestoreEmulator

ROOT = Path(__file__).resolve().parents[2]
WORKERS, TASKS = 10, 10
REASONS = {"daily_budget_exceeded", "monthly_budget_exceeded", "platform_cap_reached"}


class Worker:
    def __init__(self, index: int, business_id: str, env: dict[str, str], logs: Path) -> None:
        self.index = index
        self.events: list[dict[str, object]] = []
        self.stderr = logs / f"worker-{index}.log"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.budget_worker",
                business_id,
                str(index * TASKS),
                str(TASKS),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.stderr.open("w"),
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.events.append(json.loads(line))

    @property
    def holding(self) -> bool:
        return bool(self.events) and self.events[-1]["event"] == "granted"

    def finish(self, timeout: float) -> None:
        self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, workers: list[Worker]
) -> None:
    """Wait for `condition`; on a timeout, or when every worker has ended, fail with what the
    workers wrote on stderr (a liveness limit on a loaded machine, not a time measurement)."""
    deadline = time.monotonic() + timeout
    while not condition():
        ended = all(w.process.poll() is not None for w in workers)
        if ended or time.monotonic() > deadline:
            tails = "\n".join(
                f"worker {w.index} (exit {w.process.poll()}): {w.stderr.read_text()[-600:]}"
                for w in workers
            )
            raise AssertionError(
                f"{'workers ended' if ended else 'timed out'} before {what}\n{tails}"
            )
        time.sleep(0.02)


@pytest.mark.emulator
def test_processes_killed_frozen_and_a_lower_limit_never_overspend(
    firestore_emulator: FirestoreEmulator,
    register: Callable[..., Business],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Short calls, so the holds expire within the test: the TTL derives from the call timeout.
    monkeypatch.setenv("LLM_TIMEOUT_SECONDS", "0.5")
    monkeypatch.setenv("DEADLINE_MARGIN_SECONDS", "0.5")
    get_settings.cache_clear()
    ttl = get_settings().reservation_ttl_seconds
    business = register("crowded", "pro", overrides={"daily_limit_usd": "0.50"})
    env = {
        **os.environ,
        "FIRESTORE_EMULATOR_HOST": firestore_emulator.host,
        "GOOGLE_CLOUD_PROJECT": get_settings().project_id,
        "LLM_TIMEOUT_SECONDS": "0.5",
        "DEADLINE_MARGIN_SECONDS": "0.5",
    }
    workers = [Worker(i, business.business_id, env, tmp_path) for i in range(WORKERS)]

    def events() -> list[dict[str, object]]:
        return [e for w in workers for e in w.events]

    wait_for(
        lambda: sum(e["event"] == "settled" for e in events()) >= 2, 240, "two settles", workers
    )
    frozen: list[Worker] = []
    killed: list[Worker] = []
    for group, count in ((frozen, 2), (killed, 2)):
        deadline = time.monotonic() + 30
        while len(group) < count and time.monotonic() < deadline:
            for worker in workers:
                if worker.holding and worker not in frozen and worker not in killed:
                    worker.process.send_signal(
                        signal.SIGSTOP if group is frozen else signal.SIGKILL
                    )
                    group.append(worker)
                    break
            time.sleep(0.01)
    assert len(frozen) == 2 and len(killed) == 2, "no worker was holding a reservation"
    register("crowded", "pro", overrides={"daily_limit_usd": "0.30"})
    day = get_business("crowded").scopes(dt.datetime.now(dt.UTC))[0]
    at_decrease = counters.read([day])[day.name]
    committed_at_decrease = at_decrease.spent + at_decrease.reserved
    time.sleep(ttl + 2)  # the frozen holds expire; others sweep and use the room
    for worker in frozen:
        worker.process.send_signal(signal.SIGCONT)
    for worker in workers:
        worker.finish(timeout=120)
    release_expired("crowded", dt.datetime.now(dt.UTC) + dt.timedelta(seconds=ttl + 1))

    final = counters.read([day])[day.name]
    late = {
        snapshot.id
        for snapshot in db()
        .collection(RESERVATIONS)
        .where(filter=FieldFilter("business_id", "==", "crowded"))
        .stream()
        if (snapshot.to_dict() or {}).get("state") == "settled_late"
    }
    late_cost = sum(int((usage.usage_ref(key).get().to_dict() or {})["cost_nanos"]) for key in late)
    # The bound (docs/decisions/006): after the decrease nothing is granted above the new limit
    # or what was already committed then; late settles add at most their own reservations.
    limit = get_business("crowded").limits.daily_limit_nanos
    assert final.spent <= max(limit, committed_at_decrease) + late_cost
    assert late_cost <= 2 * 50_000_000
    assert final.reserved == 0
    refused = [e for e in events() if e["event"] == "refused"]
    assert refused and {e["reason"] for e in refused} <= REASONS
    settled = [e for e in events() if e["event"] == "settled"]
    assert len(settled) >= 2 and len(events()) >= 60
    records = (
        db()
        .collection(usage.USAGE)
        .where(filter=FieldFilter("business_id", "==", "crowded"))
        .stream()
    )
    assert sum(int((r.to_dict() or {})["cost_nanos"]) for r in records) == final.spent
