"""A phase's settles ride on its own commits (issue 19): each model call's usage record is written
twice (its hold before the call, its settle with the sub-task's end), and a settle not written yet
leaves the call counted at its upper bound, never at less."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from common.analysis.phases import run_phase
from common.budget import blocks, usage
from common.budget.blocks import USAGE, Block, View, usage_ref
from common.budget.ledger import BudgetLedger
from common.budget.periods import day_key, scope_name, scope_ref
from common.platform.store import db
from common.runs import documents, events
from common.tenants.businesses import Business
from tests.budget import charged, period, settle_all
from tests.counting import counting
from tests.spending import attempt

pytestmark = pytest.mark.emulator

MILLI = 1_000_000


def test_a_phase_writes_each_calls_record_twice_and_settles_with_its_commits(
    new_run: Callable[..., str],
) -> None:
    run_id = new_run()
    business_id = documents.get_run(run_id).business_id
    run_phase(run_id, "research", business_id=business_id)

    with counting(db()) as calls:
        result = run_phase(run_id, "positioning", business_id=business_id)  # parallel critiques

    records = {path: n for path, n in calls.writes.items() if path.startswith(f"{USAGE}/")}
    assert len(records) >= 4, records
    # The hold before the call and the settle after it: nothing else writes a usage record.
    assert set(records.values()) == {2}, records
    # Holds go out on their own (parallel ones share a batch); a settle goes with the next
    # commit of the phase (a sub-task's end, or the phase's end), unless its thread's next call
    # of the same sub-task (asked again, escalated) reserves first: then it goes just before;
    # or the phase's end lost a race for its periods: then its last settle goes on its own.
    on_their_own = sum(calls.batched[path] for path in records) - len(records)
    attempts = Counter(path.rsplit(":", 1)[0] for path in records)  # by sub-task call
    allowed = sum(n - 1 for n in attempts.values()) + 1
    assert on_their_own <= allowed, (dict(calls.batched), attempts)
    states = {(usage_ref(path.split("/", 1)[1]).get().to_dict() or {})["state"] for path in records}
    assert states == {"settled"}
    phase_cost = usage.run_totals(run_id).cost_by_phase["positioning"]
    assert phase_cost == documents.get_run(run_id).phases["positioning"]["cost_nanos"]
    assert result.cost_usd == pytest.approx(phase_cost / 1e9)


def test_a_settle_not_written_yet_keeps_the_call_at_its_bound(
    register: Callable[..., Business],
) -> None:
    business = register()
    ledger = BudgetLedger(business, defer_settles=True)
    ledger.reserve(key="deferred", model="gpt-5-mini", tier="mini", upper_bound_nanos=15 * MILLI)

    ledger.settle(attempt("deferred", 3 * MILLI))
    settle_all()  # the process gives back its idle blocks: the call is still in flight

    record = usage_ref("deferred").get().to_dict() or {}
    assert record["state"] == "held" and record["charged_nanos"] == 0
    today = day_key(dt.datetime.now(dt.UTC))
    held = period(business.business_id, today)
    assert held.spent == 0 and held.allocated >= 15 * MILLI  # its bound stays counted

    ledger.close()  # what is left is written, then counted, then the block goes back

    record = usage_ref("deferred").get().to_dict() or {}
    assert record["state"] == "settled" and record["charged_nanos"] == 3 * MILLI
    day = period(business.business_id, today)
    assert day.spent == 3 * MILLI == charged(business.business_id, today)
    assert day.allocated == 0


def test_a_threads_next_reservation_writes_its_earlier_settle_first(
    register: Callable[..., Business],
) -> None:
    # Near the limit, a call after another in the same thread finds the room the first freed.
    business = register("tight", "basic", overrides={"daily_limit_usd": "0.02"})
    ledger = BudgetLedger(business, defer_settles=True)
    ledger.reserve(key="first", model="gpt-5-mini", tier="mini", upper_bound_nanos=15 * MILLI)
    ledger.settle(attempt("first", 2 * MILLI))

    with counting(db()) as calls:
        ledger.reserve(key="second", model="gpt-5-mini", tier="mini", upper_bound_nanos=15 * MILLI)

    assert calls.writes[f"{USAGE}/first"] == 1  # its settle, before the second hold
    assert (usage_ref("first").get().to_dict() or {})["state"] == "settled"
    ledger.settle(attempt("second", 2 * MILLI))
    ledger.close()
    today = day_key(dt.datetime.now(dt.UTC))
    assert period("tight", today).spent == 4 * MILLI == charged("tight", today)


def test_a_phases_end_closes_its_budget_block_in_the_same_commit(
    new_run: Callable[..., str],
) -> None:
    run_id = new_run()
    business_id = documents.get_run(run_id).business_id

    with counting(db()) as calls:
        run_phase(run_id, "research", business_id=business_id)

    [end] = [paths for paths in calls.commits if f"runs/{run_id}/phases/research" in paths]
    blocks_closed = [path for path in end if path.startswith("budget_blocks/")]
    # The result, the last settles and the block's close (its day, month, the status) at once:
    # the next phase's budget check finds the money back as soon as the phase is stored.
    assert len(blocks_closed) == 1, end
    assert any(path.startswith(f"{USAGE}/") for path in end), end
    assert f"budget_status/{business_id}" in end
    block = db().document(blocks_closed[0]).get().to_dict() or {}
    assert block["state"] == "closed" and block["closed_by"] == "owner"
    today = day_key(dt.datetime.now(dt.UTC))
    day = period(business_id, today)
    assert not day.blocks and day.allocated == 0  # nothing left held
    assert day.spent == charged(business_id, today)  # every settled cost has its record


def test_a_phases_end_that_loses_a_race_on_its_day_reads_again_and_commits_everything_once_more(
    new_run: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = new_run()
    business_id = documents.get_run(run_id).business_id
    today = day_key(dt.datetime.now(dt.UTC))
    real = blocks.close_in
    raced: list[str] = []

    def close_in(block: Block, spent: int, view: View) -> blocks.Prepared | None:
        prepared = real(block, spent, view)
        if not raced:
            # A sibling phase of the same business takes or closes a block right now: the day
            # this close was prepared from is no longer the day.
            raced.append(block.block_id)
            scope_ref(scope_name(business_id, block.day)).update({"raced": firestore.Increment(1)})
        return prepared

    monkeypatch.setattr(blocks, "close_in", close_in)
    with counting(db()) as calls:
        run_phase(run_id, "research", business_id=business_id)

    assert raced
    ends = [paths for paths in calls.commits if f"runs/{run_id}/phases/research" in paths]
    # The end that lost the race, then the same end with the close read again: the result, the
    # last settles and the close still in one commit, not each on its own.
    assert len(ends) == 2, ends
    assert ends[0] == ends[1]
    assert any(path.startswith("budget_blocks/") for path in ends[1]), ends[1]
    day = period(business_id, today)
    assert not day.blocks and day.allocated == 0
    assert day.spent == charged(business_id, today)
    assert documents.get_run(run_id).phases["research"]["status"] == "completed"


def test_a_phases_end_whose_commit_cannot_be_built_still_writes_its_settles_and_closes(
    new_run: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = new_run()
    business_id = documents.get_run(run_id).business_id
    real = events.add_event

    def add_event(
        batch: firestore.WriteBatch, run: str, event_id: str, kind: str, **kw: Any
    ) -> None:
        if kind == "phase_completed":
            raise RuntimeError("the end's batch could not be built")
        real(batch, run, event_id, kind, **kw)

    monkeypatch.setattr(events, "add_event", add_event)
    with pytest.raises(RuntimeError):
        run_phase(run_id, "research", business_id=business_id)

    # Nothing of the end was committed; every call's record is settled and the block went back.
    states = Counter(
        (snapshot.to_dict() or {})["state"]
        for snapshot in db()
        .collection(USAGE)
        .where(filter=FieldFilter("run_id", "==", run_id))
        .stream()
    )
    assert states and set(states) == {"settled"}, states
    today = day_key(dt.datetime.now(dt.UTC))
    day = period(business_id, today)
    assert not day.blocks and day.allocated == 0
    assert day.spent == charged(business_id, today)
