"""The recent outcomes (pass rates, costs per call) are read from the usage records about once per
`router_outcomes_seconds` for the whole platform, not once per instance: the instance that reads
them shares what it found in one document, and the others read that document (counted with a
client hook; each "instance" is a fresh per-process cache)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from google.api_core import exceptions

from common.analysis import outcomes
from common.analysis.phases import run_phase
from common.platform.settings import get_settings
from common.platform.store import db
from common.runs import documents
from tests.counting import counting

pytestmark = pytest.mark.emulator


@pytest.fixture
def instance(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], None]]:
    """Call it to be a new instance of a function: nothing of the outcomes kept in memory."""

    def fresh() -> None:
        cache = outcomes._Cache()
        monkeypatch.setattr(outcomes, "_cache", lambda settings=None: cache)

    fresh()
    outcomes._ref().delete()  # what earlier tests shared
    yield fresh


@pytest.fixture
def recorded(new_run: Callable[..., str]) -> str:
    """A research phase's calls, with their outcomes, in the usage records."""
    run_id = new_run()
    run_phase(run_id, "research")
    return run_id


def test_one_instance_reads_the_records_and_the_others_read_what_it_shared(
    recorded: str, instance: Callable[[], None]
) -> None:
    with counting(db()) as first:
        rates = outcomes.pass_rates()
        cost = outcomes.call_cost("research_facts")
    assert rates  # the research's sub-tasks' first tries
    assert first.rpcs["RunQuery"] == 1 and first.rpcs["Commit"] == 1, dict(first.rpcs)

    for _ in range(3):
        instance()
        with counting(db()) as other:
            assert outcomes.pass_rates() == rates
            assert outcomes.call_cost("research_facts") == cost
            assert outcomes.pass_rates() == rates  # kept: no second read
        # One document, not the records' thousands, and nothing written.
        assert dict(other.rpcs) == {"BatchGetDocuments": 1}, dict(other.rpcs)


def test_a_shared_reading_older_than_the_setting_is_made_again_once(
    recorded: str, instance: Callable[[], None]
) -> None:
    rates = outcomes.pass_rates()
    seconds = get_settings().router_outcomes_seconds
    old = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds + 60)
    outcomes._ref().update({"computed_at": old})

    instance()
    with counting(db()) as stale:
        assert outcomes.pass_rates() == rates
    assert stale.rpcs["RunQuery"] == 1 and stale.rpcs["Commit"] == 1, dict(stale.rpcs)
    instance()
    with counting(db()) as fresh:
        assert outcomes.pass_rates() == rates
    assert dict(fresh.rpcs) == {"BatchGetDocuments": 1}, dict(fresh.rpcs)


def test_an_instance_that_loses_the_race_to_share_uses_what_it_read(
    recorded: str, instance: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    rates = outcomes.pass_rates()
    outcomes._ref().update({"computed_at": dt.datetime(2020, 1, 1, tzinfo=dt.UTC)})
    instance()
    real = outcomes._recent

    def read_while_another_shares(limit: int) -> list[dict[str, Any]]:
        # Another instance found it stale too and shared first.
        outcomes._ref().update({"computed_at": dt.datetime.now(dt.UTC), "rates": []})
        return real(limit)

    monkeypatch.setattr(outcomes, "_recent", read_while_another_shares)

    assert outcomes.pass_rates() == rates  # what it read itself; its write refused, no error
    assert outcomes._ref().get().get("rates") == []  # the other's stays


def test_forget_reads_the_records_again_whatever_is_shared(
    recorded: str, instance: Callable[[], None], new_run: Callable[..., str]
) -> None:
    before = outcomes.pass_rates()
    run_phase(new_run(), "research")  # more first tries, after the shared reading

    outcomes.forget()
    with counting(db()) as calls:
        after = outcomes.pass_rates()

    assert calls.rpcs["RunQuery"] == 1, dict(calls.rpcs)
    assert sum(r.tried for r in after.values()) > sum(r.tried for r in before.values())
    instance()  # and the others now read that reading, not the one before it
    with counting(db()) as shared:
        assert outcomes.pass_rates() == after
    assert dict(shared.rpcs) == {"BatchGetDocuments": 1}, dict(shared.rpcs)


def test_a_caller_that_writes_nothing_reads_the_records_but_shares_nothing(
    recorded: str, instance: Callable[[], None]
) -> None:
    with outcomes.read_only(), counting(db()) as calls:  # as the budget check asks
        rates = outcomes.pass_rates()

    assert rates and calls.rpcs["RunQuery"] == 1 and "Commit" not in calls.rpcs, dict(calls.rpcs)
    assert not outcomes._ref().get().exists


@pytest.mark.parametrize(
    "malformed",
    [
        {"computed_at": "yesterday"},
        {"rates": [{"task_type": "x"}]},
        {"costs": "none"},
        {"limit": None},
    ],
    ids=["time", "rates", "costs", "limit"],
)
def test_a_malformed_shared_reading_is_read_again_and_replaced(
    malformed: dict[str, Any], recorded: str, instance: Callable[[], None]
) -> None:
    rates = outcomes.pass_rates()
    outcomes._ref().update(malformed)  # an operator's hand edit, a partial restore
    instance()

    assert outcomes.pass_rates() == rates  # from the records, not an error in every phase

    instance()
    with counting(db()) as calls:
        assert outcomes.pass_rates() == rates
    assert dict(calls.rpcs) == {"BatchGetDocuments": 1}, dict(calls.rpcs)  # replaced


def test_while_the_index_is_missing_or_building_phases_route_without_outcomes(
    recorded: str,
    instance: Callable[[], None],
    new_run: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A deployment that adds the (shard, created_at) index builds it while the new code already
    # runs: Firestore answers the query FAILED_PRECONDITION until it is ready (the emulator
    # never does: the fault is injected where the query is made).
    clock = [1000.0]
    monkeypatch.setattr(outcomes, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    real, queries = outcomes._recent, []

    def building(limit: int) -> list[dict[str, Any]]:
        queries.append(limit)
        if len(queries) == 1:
            raise exceptions.FailedPrecondition("The query requires an index that is building")  # type: ignore[no-untyped-call]
        return real(limit)

    monkeypatch.setattr(outcomes, "_recent", building)

    assert outcomes.pass_rates() == {}  # no outcomes: each sub-task's own start tier
    run_id = new_run()
    run_phase(run_id, "research")  # the phase runs all the same
    assert documents.get_run(run_id).phases["research"]["status"] == "completed"
    assert len(queries) == 1  # not asked again at every call
    assert not outcomes._ref().get().exists  # nothing shared of it

    clock[0] += outcomes.UNAVAILABLE_SECONDS
    assert outcomes.pass_rates()  # a minute later: read, learned from
    assert len(queries) == 2
