"""Giving a block back at the end of a request, with the status clients see, counted (a gRPC
hook below the client, tests/counting.py): a close or a flush is one read and one commit that
also writes the published status and any threshold first reached, so the status is never older
than the money it shows, with any number of processes taking, flushing and closing at once.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from common.budget import blocks
from common.budget.blocks import BLOCKS
from common.budget.escrow import escrow
from common.budget.ledger import BudgetLedger
from common.budget.periods import day_key, month_key, scope_name
from common.budget.status import ALERTS, BudgetWarning, get_budget_status, publish
from common.platform.settings import get_settings
from common.spend.ledger import BudgetBusy, BudgetDenied
from common.tenants.businesses import Business
from local.emulator import FirestoreEmulator
from tests.budget import charged, period, shows_the_fresh_status
from tests.counting import counting
from tests.spending import attempt

pytestmark = pytest.mark.emulator

ROOT = Path(__file__).resolve().parents[2]
NANOS = 1_000_000_000
CENT = NANOS // 100


def spend(ledger: BudgetLedger, nanos: int) -> None:
    key = f"call-{uuid.uuid4().hex}"
    ledger.reserve(key=key, model="gpt-5-mini", tier="mini", upper_bound_nanos=nanos)
    ledger.settle(attempt(key, nanos))


@pytest.mark.parametrize("cache_seconds", ["60", "0"], ids=["limits-cached", "limits-read"])
def test_a_close_and_the_status_it_publishes_take_two_firestore_calls(
    register: Callable[..., Business],
    db: firestore.Client,
    monkeypatch: pytest.MonkeyPatch,
    cache_seconds: str,
) -> None:
    # Whether this process's copy of the business and the controls is fresh or not, they come
    # with the close's own read.
    monkeypatch.setenv("BUDGET_CACHE_SECONDS", cache_seconds)
    get_settings.cache_clear()
    business = register("closing", "pro")
    ledger = BudgetLedger(business)
    for _ in range(3):  # a request's calls, then its end
        spend(ledger, 3 * CENT)
        with counting(db) as calls:
            ledger.close()
        assert dict(calls.rpcs) == {"BatchGetDocuments": 1, "Commit": 1}
        shows_the_fresh_status(db, business.business_id)
    today = period(business.business_id, day_key(dt.datetime.now(dt.UTC)))
    assert today.spent == 9 * CENT and today.allocated == 0 and not today.blocks


def test_a_flush_and_the_status_it_publishes_take_two_firestore_calls(
    register: Callable[..., Business], db: firestore.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUDGET_FLUSH_PERCENT", "1")
    get_settings.cache_clear()
    business = register("flushing", "pro", overrides={"daily_limit_usd": "5"})
    ledger = BudgetLedger(business)
    spend(ledger, CENT)
    key = "over-one-percent"
    ledger.reserve(key=key, model="gpt-5-mini", tier="mini", upper_bound_nanos=6 * CENT)
    time.sleep(1.1)  # a block flushes at most once a second
    with counting(db) as calls:
        ledger.settle(attempt(key, 6 * CENT))  # 7 cents settled: over 1 % of $5, so it flushes
    # The settle's own write (a BatchWrite), then the flush: a read and a commit.
    assert dict(calls.rpcs) == {"BatchWrite": 1, "BatchGetDocuments": 1, "Commit": 1}
    shows_the_fresh_status(db, business.business_id)
    today = period(business.business_id, day_key(dt.datetime.now(dt.UTC)))
    assert today.spent == 7 * CENT and today.allocated > 0  # the block is still open


def test_a_close_that_crosses_75_percent_records_one_alert_and_the_ledger_hears_of_it(
    register: Callable[..., Business], db: firestore.Client
) -> None:
    business = register("nearly", "pro", overrides={"daily_limit_usd": "1"})
    heard: list[BudgetWarning] = []
    ledger = BudgetLedger(business, on_warning=heard.append)
    spend(ledger, 70 * CENT)
    ledger.close()
    assert heard == [] and not list(db.collection(ALERTS).stream())

    spend(ledger, 6 * CENT)  # 76 %
    with counting(db) as calls:
        ledger.close()
    assert calls.total <= 2, dict(calls.rpcs)  # the alert is written in the close's commit
    today = day_key(dt.datetime.now(dt.UTC))
    alerts = [snapshot.id for snapshot in db.collection(ALERTS).stream()]
    assert alerts == [f"{scope_name('nearly', today)}:75"]
    assert [(warning.kind, warning.level) for warning in heard] == [("day", 75)]
    shows_the_fresh_status(db, business.business_id)
    assert get_budget_status("nearly").warning_level == 75

    spend(ledger, 2 * CENT)  # 78 %: nothing new to say
    ledger.close()
    assert len(heard) == 1 and len(list(db.collection(ALERTS).stream())) == 1


def half_spent_then_lowered(
    register: Callable[..., Business],
    monkeypatch: pytest.MonkeyPatch,
    business_id: str,
    heard: list[BudgetWarning],
) -> Business:
    """A business that spent $0.50 of a $1 day (closed: 50 %, nothing to announce), then had its
    limit lowered to $0.60 (83 %) with no close since; limits read afresh by every ledger."""
    monkeypatch.setenv("BUDGET_CACHE_SECONDS", "0")
    get_settings.cache_clear()
    business = register(business_id, "pro", overrides={"daily_limit_usd": "1"})
    ledger = BudgetLedger(business, on_warning=heard.append)
    spend(ledger, 50 * CENT)
    ledger.close()
    return register(business_id, "pro", overrides={"daily_limit_usd": "0.60"})


def test_a_threshold_reached_by_a_lower_limit_is_announced_by_the_next_close(
    register: Callable[..., Business], db: firestore.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No close crossed it: the limit moved. The next close finds it reached and not announced."""
    heard: list[BudgetWarning] = []
    business = half_spent_then_lowered(register, monkeypatch, "lowered", heard)
    ledger = BudgetLedger(business, on_warning=heard.append)
    spend(ledger, CENT)
    ledger.close()
    assert [warning.level for warning in heard] == [75]
    assert len(list(db.collection(ALERTS).stream())) == 1
    shows_the_fresh_status(db, "lowered")


def test_a_threshold_an_operator_s_publish_recorded_is_not_announced_again_by_a_close(
    register: Callable[..., Business], db: firestore.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator lowers the limit and publishes the status (`local.businesses`): the threshold
    it finds reached is recorded then, once; a run's close after it has nothing new to say."""
    heard: list[BudgetWarning] = []
    business = half_spent_then_lowered(register, monkeypatch, "republished", heard)
    recorded = publish("republished")
    [alert] = list(db.collection(ALERTS).stream())
    assert recorded.warning_level == 75

    ledger = BudgetLedger(business, on_warning=heard.append)
    spend(ledger, CENT)
    ledger.close()

    # The publish's warning (this process published it), and nothing from the close.
    assert [(warning.level, warning.message) for warning in heard] == [
        (75, "republished passed 75% of its daily budget today: $0.5000 of $0.60 spent")
    ]
    [again] = list(db.collection(ALERTS).stream())
    assert again.update_time == alert.update_time  # not written a second time
    shows_the_fresh_status(db, "republished")


def test_a_close_that_keeps_losing_races_still_gives_the_money_back_and_publishes(
    register: Callable[..., Business], db: firestore.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its attempts a close moves the money blindly, then publishes from a fresh read."""
    monkeypatch.setattr(blocks, "OWNER_ATTEMPTS", 0)
    business = register("contended", "pro")
    ledger = BudgetLedger(business)
    spend(ledger, 4 * CENT)
    with counting(db) as calls:
        ledger.close()
    assert dict(calls.rpcs) == {"Commit": 2, "BatchGetDocuments": 1}  # as every close once did
    today = period("contended", day_key(dt.datetime.now(dt.UTC)))
    assert today.spent == 4 * CENT and today.allocated == 0 and not today.blocks
    shows_the_fresh_status(db, "contended")


# --- many takers and closers at once -------------------------------------------------------


def worker(config: dict[str, Any], env: dict[str, str]) -> subprocess.Popen[str]:
    """A separate process reserving and settling through its own escrow (budget_worker.py)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.budget_worker", json.dumps(config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_processes_and_threads_closing_at_once_leave_the_status_and_the_money_exact(
    register: Callable[..., Business],
    db: firestore.Client,
    project_id: str,
    firestore_emulator: FirestoreEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Blocks live a third of a second and go back when idle for a fifth: takes, flushes and
    # closes of the same day and month race all the time. Blocks expire long after the test
    # (no vanished owner here: that is test_budget_processes.py).
    fast = {"BUDGET_BLOCK_ACTIVE_SECONDS": "0.3", "BUDGET_IDLE_SECONDS": "0.2"}
    for name, value in fast.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    business = register("crowded", "pro", overrides={"daily_limit_usd": "1.5"})
    env = {
        **os.environ,
        **fast,
        "FIRESTORE_EMULATOR_HOST": firestore_emulator.host,
        "GOOGLE_CLOUD_PROJECT": project_id,
    }
    config = {"businesses": ["crowded"], "amount": 2 * CENT, "hold": 0.02, "threads": 4}
    processes = [
        worker({**config, "first": 1000 * (n + 1), "count": 40, "seed": n}, env) for n in range(2)
    ]

    def requests(thread: int) -> None:
        """Requests of this process: a few calls each, then the request's end."""
        for _ in range(6):
            ledger = BudgetLedger(business)
            for _ in range(3):
                try:
                    spend(ledger, CENT + thread * 100_000)
                except (BudgetDenied, BudgetBusy):
                    break
            ledger.close()

    threads = [threading.Thread(target=requests, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    escrow.release()
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err[-2000:]
        assert json.loads(out.splitlines()[-1])["event"] == "done"

    now = dt.datetime.now(dt.UTC)
    day, month = period("crowded", day_key(now)), period("crowded", month_key(now))
    for found, key in ((day, day_key(now)), (month, month_key(now))):
        assert found.spent == charged("crowded", key)  # each settled record, once, to the nano
        assert found.allocated == 0 and not found.blocks  # nothing is held any more
    assert day.spent <= day.limit
    shows_the_fresh_status(db, "crowded")
    # Each threshold the day has reached is recorded once, and none it has not.
    levels = [
        int(snapshot.id.rsplit(":", 1)[1])
        for snapshot in db.collection(ALERTS).stream()
        if snapshot.id.startswith(scope_name("crowded", day_key(now)))
    ]
    assert sorted(levels) == list(day.reached) and len(day.reached) >= 2
    closed = (
        db.collection(BLOCKS)
        .where(filter=FieldFilter("business_id", "==", "crowded"))
        .where(filter=FieldFilter("state", "==", "closed"))
    )
    assert len(list(closed.stream())) >= 10  # many blocks were given back, by three processes
