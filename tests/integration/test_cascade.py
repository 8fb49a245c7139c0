"""Phases as validated sub-tasks on the emulator: weak answers asked again, then escalated one
tier within what the business may use; a cancellation between sub-tasks; a phase started again
after a failure paying for nothing twice; live progress that never moves back."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.cloud import firestore

from common.analysis.phases import phase_ref, run_phase, stored_output
from common.analysis.registry import FINISH_WEIGHT, MAX_STEP, STAGES
from common.analysis.work import PARTS
from common.budget import usage
from common.budget.blocks import USAGE
from common.llm import CircuitBreaker, OfflineProvider, Router
from common.llm.base import ProviderRequest, ProviderResponse, RateLimited
from common.platform.errors import Busy, Conflict
from common.platform.settings import get_settings
from common.runs import documents, events, lifecycle
from tests.cancelling import Cancelling


@pytest.fixture
def weak(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Make the offline provider's answers weak at the given rates (JSON by tier)."""

    def _weak(rates: str) -> None:
        monkeypatch.setenv("OFFLINE_WEAK_RATES", rates)
        get_settings.cache_clear()

    return _weak


def _attempts(db: firestore.Client, run_id: str, task_type: str) -> list[dict[str, Any]]:
    found = [
        record
        for record in (s.to_dict() or {} for s in db.collection(USAGE).stream())
        if record.get("run_id") == run_id and record.get("task_type") == task_type
    ]
    return sorted(found, key=lambda record: record["created_at"])


@pytest.mark.emulator
def test_a_weak_answer_is_asked_again_then_escalated_one_tier(
    new_run: Callable[..., str], db: firestore.Client, weak: Callable[[str], None]
) -> None:
    weak('{"nano": 1.0}')  # every nano answer is weak; mini's are sound
    run_id = new_run(tier="pro")
    run_phase(run_id, "research")

    facts = _attempts(db, run_id, "research_facts")
    # Asked three times in all (CASCADE_ASKS), each time told why, then one tier up.
    assert [(a["model_tier"], a["outcome"], a["error_code"]) for a in facts] == [
        ("nano", "failed", "check_failed"),
        ("nano", "failed", "check_failed"),
        ("nano", "escalated", "check_failed"),
        ("mini", "first_try", None),
    ]
    assert "merely repeats the business's own description" in facts[0]["check_failure"]
    assert facts[3]["escalated_from"] == "nano"
    # The re-ask named the failure; each attempt reserved and settled its own record.
    assert all(a["state"] == "settled" for a in facts)
    stored = phase_ref(run_id, "research").get().to_dict() or {}
    assert stored["escalations"] >= 1 and stored["unresolved"] == []
    [step] = [e for e in events.events(run_id) if e["id"] == "research.01.facts"]
    assert step["data"]["escalations"][0]["from"] == "gpt-5-nano"
    assert "escalated gpt-5-nano → gpt-5-mini" in step["step"]

    report = {
        (row.task_type, row.tier): row for row in usage.router_report("tidewater-coffee").rows
    }
    assert report[("research_facts", "nano")].outcomes["escalated"] == 1
    assert report[("research_synthesis", "mini")].outcomes["first_try"] == 1


@pytest.mark.emulator
def test_a_basic_business_never_reaches_the_full_model_however_weak_the_answers(
    new_run: Callable[..., str], db: firestore.Client, weak: Callable[[str], None]
) -> None:
    weak('{"nano": 1.0, "mini": 1.0}')  # nothing a basic business may use answers well
    run_id = new_run(tier="basic")
    run_phase(run_id, "research")

    records = [
        r for r in (s.to_dict() or {} for s in db.collection(USAGE).stream())
        if r.get("run_id") == run_id
    ]  # fmt: skip
    assert {r["model_tier"] for r in records} == {"nano", "mini"}
    facts = _attempts(db, run_id, "research_facts")
    assert [(a["model_tier"], a["outcome"]) for a in facts] == [
        ("nano", "failed"),
        ("nano", "failed"),
        ("nano", "escalated"),
        ("mini", "failed"),
        ("mini", "failed"),
        ("mini", "failed"),
        ("mini", "failed"),  # the top of the tiers allowed: one ask more, nothing above it
    ]
    # The phase is stored with what its answers still fail, said where a person sees it.
    stored = phase_ref(run_id, "research").get().to_dict() or {}
    assert stored["unresolved"] and documents.get_run(run_id).phases["research"]["unresolved"]


@pytest.mark.emulator
def test_replaying_a_cascaded_phase_charges_nothing(
    new_run: Callable[..., str], db: firestore.Client, weak: Callable[[str], None]
) -> None:
    weak('{"nano": 0.5}')
    run_id = new_run()
    first = run_phase(run_id, "research")
    records = {s.id: s.to_dict() for s in db.collection(USAGE).stream()}
    run = documents.get_run(run_id)
    assert run.cost_nanos == usage.run_totals(run_id).cost_nanos > 0

    again = run_phase(run_id, "research")

    assert again.replayed and again.cost_usd == first.cost_usd
    assert {s.id: s.to_dict() for s in db.collection(USAGE).stream()} == records
    assert documents.get_run(run_id).cost_nanos == run.cost_nanos


@pytest.mark.emulator
def test_a_cancellation_between_sub_tasks_stops_the_phase_and_keeps_what_was_paid_for(
    new_run: Callable[..., str], db: firestore.Client
) -> None:
    run_id = new_run()
    run_phase(run_id, "research")
    run_phase(run_id, "positioning")
    provider = Cancelling(run_id, after=1)  # cancel once the segments are answered
    router = Router({"openai": provider}, breaker=CircuitBreaker(cooldown_seconds=0))

    with pytest.raises(Conflict) as stopped:
        run_phase(run_id, "icps", router=router)

    assert stopped.value.code == "run_cancelled"
    assert provider.answers == 1  # no profile was asked for after the cancellation
    assert stored_output(run_id, "icps") is None
    parts = phase_ref(run_id, "icps").collection(PARTS).stream()
    assert [part.id for part in parts] == ["segments"]  # what was paid for is kept
    run = documents.get_run(run_id)
    assert run.phases["icps"]["status"] == "cancelled"
    # The run's cost counts every call made, the stopped phase's too, once.
    assert run.cost_nanos == usage.run_totals(run_id).cost_nanos
    kinds = [e["type"] for e in events.events(run_id)]
    assert kinds[-2:] == ["subtask_completed", "phase_stopped"]
    assert lifecycle.transition(run_id, "cancel").status == "cancelled"


@pytest.mark.emulator
def test_parallel_sub_tasks_under_way_finish_when_the_run_is_cancelled(
    new_run: Callable[..., str], db: firestore.Client
) -> None:
    run_id = new_run()
    provider = Cancelling(run_id, after=1)
    router = Router({"openai": provider}, breaker=CircuitBreaker(cooldown_seconds=0))

    with pytest.raises(Conflict):
        run_phase(run_id, "research", router=router)

    # Facts and the ladder ran at once: both were paid for and both are kept; no synthesis.
    assert provider.answers == 2
    parts = {p.id for p in phase_ref(run_id, "research").collection(PARTS).stream()}
    assert parts == {"facts", "ladder"}
    assert _attempts(db, run_id, "research_synthesis") == []


class FailingOn:
    """The offline provider, rate limited for one task (its prompt's TASK) for a while."""

    def __init__(self, task: str) -> None:
        self.name = "offline"
        self._inner = OfflineProvider()
        self._task = task
        self.failing = True
        self.tasks: list[str] = []

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        task = request.messages[-1]["content"].rsplit("TASK: ", 1)[-1]
        self.tasks.append(task)
        if self.failing and task.startswith(self._task):
            raise RateLimited("slow down", provider="offline", model=request.model)
        return self._inner.complete(request)


@pytest.mark.emulator
def test_a_phase_started_again_reuses_its_stored_sub_tasks_and_pays_for_none_twice(
    new_run: Callable[..., str], db: firestore.Client
) -> None:
    run_id = new_run()
    provider = FailingOn("From the facts and the competitor ladder")  # the synthesis
    router = Router({"openai": provider}, breaker=CircuitBreaker(cooldown_seconds=0))
    with pytest.raises(Busy):
        run_phase(run_id, "research", router=router)  # the workflow retries a 503
    facts_before = _attempts(db, run_id, "research_facts")
    assert len(facts_before) == 1

    provider.failing = False
    provider.tasks.clear()
    result = run_phase(run_id, "research", router=router)

    assert not result.replayed
    assert [t.startswith("From the facts") for t in provider.tasks] == [True]  # only that
    assert _attempts(db, run_id, "research_facts") == facts_before
    run = documents.get_run(run_id)
    assert run.cost_nanos == usage.run_totals(run_id).cost_nanos
    assert run.percent == 2 + 18


@pytest.fixture
def streaming(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Offline answers take a moment and stream; progress may be written every 50 ms."""
    monkeypatch.setenv("OFFLINE_LATENCY_MS", "120")
    monkeypatch.setenv("PROGRESS_WRITE_SECONDS", "0.05")
    monkeypatch.setenv("OFFLINE_WEAK_RATES", '{"nano": 0.3, "mini": 0.1}')
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.emulator
def test_progress_never_moves_back_and_streams_in_steps_of_at_most_five(
    new_run: Callable[..., str], db: firestore.Client, streaming: None
) -> None:
    run_id = new_run()
    seen: list[int] = []
    ended = threading.Event()

    def record(snapshots: list[Any], _changes: Any, _read_time: Any) -> None:
        for snapshot in snapshots:
            seen.append(int((snapshot.to_dict() or {})["percent"]))

    listener = documents.run_ref(run_id).on_snapshot(record)
    try:
        for stage in STAGES:  # as the workflow runs them: parallel phases at once
            threads = [threading.Thread(target=run_phase, args=(run_id, p)) for p in stage]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        lifecycle.transition(run_id, "succeed")
        documents.run_ref(run_id).on_snapshot(lambda s, c, t: ended.set() if s else None)
        ended.wait(10)
    finally:
        listener.unsubscribe()

    assert seen == sorted(seen), seen
    assert seen[-1] == 100
    jumps = [after - before for before, after in itertools.pairwise(seen)]
    assert max(jumps) <= MAX_STEP, seen
    # Streamed tokens moved the bar between sub-tasks' ends, not only at them.
    stepped = {e["percent"] for e in events.events(run_id)}
    assert set(seen) - stepped - {100}
    assert 100 - FINISH_WEIGHT in seen


@pytest.mark.emulator
def test_where_a_sub_task_starts_is_learned_from_recorded_outcomes_read_once(
    new_run: Callable[..., str],
    db: firestore.Client,
    weak: Callable[[str], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from common.analysis import outcomes
    from tests.counting import counting

    monkeypatch.setenv("ROUTER_MIN_SAMPLES", "2")
    monkeypatch.setenv("ROUTER_PASS_TARGET", "0.9")  # two failures in two: surely short of it
    monkeypatch.setenv("ROUTER_EXPLORE_RATE", "0")
    weak('{"nano": 1.0}')  # nano's first tries all fail: the cascade should learn to skip it
    first, second = new_run(), new_run()
    run_phase(first, "research")
    run_phase(second, "research")
    assert _attempts(db, second, "research_facts")[0]["model_tier"] == "nano"

    outcomes.forget()  # the process read the outcomes before these runs: read them again
    third = new_run()
    with counting(db) as calls:
        run_phase(third, "research")
        run_phase(third, "positioning")
    facts = _attempts(db, third, "research_facts")
    assert [(a["model_tier"], a["outcome"]) for a in facts] == [("mini", "first_try")]
    rates = outcomes.pass_rates()
    assert rates[("research_facts", "nano")].passed == 0
    assert rates[("research_facts", "nano")].tried >= 2
    # One query of the usage records for both phases (the cache), beside the evidence searches.
    assert calls.rpcs["RunQuery"] == 1 + 2
