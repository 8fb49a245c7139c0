"""The budget across separate OS processes, with faults (issues 11 and 24).

Each worker process (tests/integration/budget_worker.py) is an instance with its own escrow
blocks. The scenarios: workers killed (SIGKILL) and frozen (SIGSTOP) while holding blocks and
reservations, kept frozen past their blocks' expiry while others proceed, then resumed, with a
lower limit half-way; instance clocks minutes apart around midnight and month end; a tier change
with twenty and more reservations in flight; fifty businesses at once, some calls billed above
their hold. Afterwards each period's totals equal the sum of its usage records to the nano,
nothing stays held, and no limit is exceeded by anything granted.

Blocks here expire within about two seconds of the database's clock; waits are liveness limits
on a loaded machine, not measurements.
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter

from common.budget import blocks
from common.budget.blocks import BLOCKS, USAGE
from common.budget.periods import day_key
from common.platform.settings import get_settings
from common.platform.store import db
from common.tenants.businesses import Business
from local.emulator import FirestoreEmulator
from tests.budget import charged, period

ROOT = Path(__file__).resolve().parents[2]
REASONS = {
    "daily_budget_exceeded",
    "monthly_budget_exceeded",
    "platform_cap_reached",
    "budget_held",
    "budget_contention",
    "model_tier_restricted",
}
SHORT = {  # blocks that expire within about two seconds; limits re-read every 0.2 s
    "LLM_TIMEOUT_SECONDS": "0.5",
    "DEADLINE_MARGIN_SECONDS": "0.25",
    "BUDGET_BLOCK_ACTIVE_SECONDS": "0.5",
    "BUDGET_RECONCILE_GRACE_SECONDS": "0.25",
    "BUDGET_CACHE_SECONDS": "0.2",
}


class Worker:
    def __init__(self, index: int, config: dict[str, Any], env: dict[str, str], logs: Path):
        self.index = index
        self.events: list[dict[str, Any]] = []
        self.stderr = logs / f"worker-{index}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.budget_worker", json.dumps(config)],
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


@pytest.fixture
def workers(
    firestore_emulator: FirestoreEmulator,
    project_id: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Callable[..., list[Worker]]]:
    """Start worker processes on this test's project with short blocks; stops what is left."""
    for name, value in SHORT.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    started: list[Worker] = []
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": firestore_emulator.host, **SHORT}
    env["GOOGLE_CLOUD_PROJECT"] = project_id

    def start(configs: list[dict[str, Any]]) -> list[Worker]:
        made = [Worker(len(started) + i, c, env, tmp_path) for i, c in enumerate(configs)]
        started.extend(made)
        return made

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGCONT)
            worker.process.kill()


def wait_for(condition: Callable[[], bool], timeout: float, what: str, pool: list[Worker]) -> None:
    """Wait for `condition`; on a timeout, or when every worker has ended, fail with what the
    workers wrote on stderr (a liveness limit on a loaded machine, not a time measurement)."""
    deadline = time.monotonic() + timeout
    while not condition():
        ended = all(w.process.poll() is not None for w in pool)
        if ended or time.monotonic() > deadline:
            tails = "\n".join(
                f"worker {w.index} (exit {w.process.poll()}): {w.stderr.read_text()[-600:]}"
                for w in pool
            )
            raise AssertionError(
                f"{'workers ended' if ended else 'timed out'} before {what}\n{tails}"
            )
        time.sleep(0.02)


def expiry() -> float:
    settings = get_settings()
    return settings.budget_block_ttl_seconds + settings.budget_reconcile_grace_seconds + 0.5


def close_what_was_left(business_id: str, key: str) -> None:
    """After their TTL, reconcile the blocks of vanished workers (as the next taker would)."""
    time.sleep(expiry())
    for block_id in list(period(business_id, key).blocks):
        assert blocks.reconcile(block_id), block_id


def records(business_id: str) -> list[dict[str, Any]]:
    query = db().collection(USAGE).where(filter=FieldFilter("business_id", "==", business_id))
    return [snapshot.to_dict() or {} for snapshot in query.stream()]


def assert_settled_exactly(business_id: str, key: str) -> None:
    """Nothing held any more, and the period's total is the sum of its usage records."""
    found = period(business_id, key)
    assert found.allocated == 0 and not found.blocks, found
    assert found.spent == charged(business_id, key)
    held = [r for r in records(business_id) if r["state"] == "held"]
    assert not held, held


@pytest.mark.emulator
def test_processes_killed_frozen_and_a_lower_limit_never_overspend(
    workers: Callable[..., list[Worker]], register: Callable[..., Business]
) -> None:
    register("crowded", "pro", overrides={"daily_limit_usd": "0.50"})
    pool = workers([{"businesses": ["crowded"], "first": i * 10, "count": 10} for i in range(10)])

    def events() -> list[dict[str, Any]]:
        return [e for w in pool for e in w.events]

    wait_for(lambda: sum(e["event"] == "settled" for e in events()) >= 2, 240, "two settles", pool)
    frozen: list[Worker] = []
    killed: list[Worker] = []
    holding: dict[int, str] = {}  # worker -> the key it held when stopped
    for group, count in ((frozen, 2), (killed, 2)):
        deadline = time.monotonic() + 30
        while len(group) < count and time.monotonic() < deadline:
            for worker in pool:
                if worker.holding and worker not in frozen and worker not in killed:
                    worker.process.send_signal(
                        signal.SIGSTOP if group is frozen else signal.SIGKILL
                    )
                    holding[worker.index] = f"task-{worker.events[-1]['task']}"
                    group.append(worker)
                    break
            time.sleep(0.01)
    assert len(frozen) == 2 and len(killed) == 2, "no worker was holding a reservation"
    frozen_at = time.time()
    register("crowded", "pro", overrides={"daily_limit_usd": "0.30"})
    today = day_key(dt.datetime.now(dt.UTC))
    at_decrease = period("crowded", today)
    time.sleep(expiry())  # the frozen blocks expire; others reconcile them and go on
    thawed_at = time.time()
    for worker in frozen:
        worker.process.send_signal(signal.SIGCONT)
    for worker in pool:
        if worker not in killed:
            worker.finish(timeout=120)
    close_what_was_left("crowded", today)

    final = period("crowded", today)
    assert_settled_exactly("crowded", today)
    # Nothing granted after the decrease exceeds the new limit or what was committed then, and
    # the frozen holders' late settles spend nothing above it: zero, not a bound.
    assert final.spent <= max(final.limit, at_decrease.spent + at_decrease.allocated)
    refused = [e for e in events() if e["event"] == "refused"]
    assert refused and {e["reason"] for e in refused} <= REASONS
    assert len([e for e in events() if e["event"] == "settled"]) >= 2
    # The killed holders' calls are charged their upper bound (they may have been billed).
    stored = {r["key"]: r for r in records("crowded")}
    for worker in killed:
        assert stored[holding[worker.index]]["state"] == "abandoned"
        assert stored[holding[worker.index]]["charged_nanos"] == 50_000_000
    # The frozen ones wrote nothing from stale state: their blocks were closed by a reconciler
    # (an owner's write would have been refused), and their holds settled late, once.
    assert all(stored[holding[w.index]]["state"] == "settled_late" for w in frozen)
    closed = [s.to_dict() or {} for s in db().collection(BLOCKS).stream()]
    assert all(block["state"] == "closed" for block in closed)
    # Liveness: nobody else waited on the frozen instances longer than their blocks' expiry
    # (no locks or leases; only their blocks' money is held until then).
    others = [w for w in pool if w not in frozen and w not in killed]
    for worker in others:
        times = [e["at"] for e in worker.events if frozen_at <= e["at"] <= thawed_at + 5]
        gaps = [b - a for a, b in zip([frozen_at, *times], [*times, thawed_at], strict=True)]
        assert max(gaps) <= expiry() + 30, (worker.index, max(gaps))


@pytest.mark.emulator
def test_clocks_minutes_apart_around_midnight_and_month_end(
    workers: Callable[..., list[Worker]], register: Callable[..., Business]
) -> None:
    """Instances whose clocks say 23:58, 23:59:20, 00:00:40 and 00:02 of a month's last night:
    each puts its calls in its own day and month, and each period stays within its limits."""
    register("midnight", "pro", overrides={"daily_limit_usd": "0.20", "monthly_limit_usd": "0.30"})
    midnight = dt.datetime(2026, 11, 30, 23, 59, 59, tzinfo=dt.UTC)
    pool = workers(
        [
            {
                "businesses": ["midnight"],
                "first": i * 12,
                "count": 12,
                "amount": 20_000_000,
                "hold": 0.2,
                "clock": (midnight + dt.timedelta(seconds=offset)).isoformat(),
            }
            for i, offset in enumerate((-120, -40, 40, 120))
        ]
    )
    for worker in pool:
        worker.finish(timeout=240)
    assert all(w.process.returncode == 0 for w in pool), [w.stderr.read_text()[-300:] for w in pool]
    for key in ("2026-11-30", "2026-12-01", "2026-11", "2026-12"):
        found = period("midnight", key)
        assert found.spent <= found.limit, key
        assert_settled_exactly("midnight", key)
    assert period("midnight", "2026-11-30").spent + period("midnight", "2026-12-01").spent > 0


@pytest.mark.emulator
def test_a_tier_change_with_reservations_in_flight_reaches_every_instance(
    workers: Callable[..., list[Worker]], register: Callable[..., Business]
) -> None:
    register("upscale", "enterprise")
    config = {"businesses": ["upscale"], "count": 60, "amount": 2_000_000, "hold": 1.0}
    pool = workers(
        [
            {**config, "first": i * 60, "threads": 8, "tier": "full", "model": "gpt-5"}
            for i in range(4)
        ]
    )

    def in_flight() -> int:
        events = [e for w in pool for e in w.events]
        granted = sum(e["event"] == "granted" for e in events)
        return int(granted - sum(e["event"] == "settled" for e in events))

    wait_for(lambda: in_flight() >= 20, 240, "twenty reservations in flight", pool)
    held_at_change = in_flight()
    saved = register("upscale", "basic")  # no full models from now on
    assert saved.tier == "basic"
    changed = db().collection("businesses").document("upscale").get().update_time
    for worker in pool:
        worker.finish(timeout=240)

    propagation = dt.timedelta(seconds=get_settings().budget_cache_seconds + 1)
    stored = records("upscale")
    late_full = [
        r for r in stored if r["model_tier"] == "full" and r["created_at"] > changed + propagation
    ]
    assert not late_full, f"{len(late_full)} full-model holds after the change reached everyone"
    refusals = [e for w in pool for e in w.events if e["event"] == "refused"]
    assert held_at_change >= 20 and any(e["reason"] == "model_tier_restricted" for e in refusals)
    assert all(r["state"] in ("settled", "settled_late") for r in stored if r["state"] != "void")
    assert_settled_exactly("upscale", day_key(dt.datetime.now(dt.UTC)))


@pytest.mark.emulator
def test_fifty_businesses_at_once_add_up_to_the_nano(
    workers: Callable[..., list[Worker]], register: Callable[..., Business]
) -> None:
    """Fifty businesses, five processes of four threads; one call in ten is billed twice its
    hold. Each business's day equals the sum of its usage records exactly; what was granted
    never exceeds a limit (the part above a limit is what calls cost above their holds)."""
    businesses = [f"shop-{n:02d}" for n in range(50)]
    for business_id in businesses:
        register(business_id, "basic", overrides={"daily_limit_usd": "0.10"})
    pool = workers(
        [
            {
                "businesses": businesses,
                "first": i * 100,
                "count": 100,
                "amount": 20_000_000,
                "hold": 0.05,
                "threads": 4,
                "over": 0.1,
            }
            for i in range(5)
        ]
    )
    for worker in pool:
        worker.finish(timeout=300)
    assert all(w.process.returncode == 0 for w in pool), [w.stderr.read_text()[-300:] for w in pool]
    today = day_key(dt.datetime.now(dt.UTC))
    for business_id in businesses:
        assert_settled_exactly(business_id, today)
        found = period(business_id, today)
        above_holds = sum(
            max(0, int(r["charged_nanos"]) - int(r["bound_nanos"])) for r in records(business_id)
        )
        assert found.spent - above_holds <= found.limit, business_id
