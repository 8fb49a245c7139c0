"""The run lifecycle's transitions in Firestore calls, counted with the client hook, and the
totals they answer held to what the run was charged (its usage records, `usage.run_totals`).

When the workflow says whose run it is (`business_id`), a final transition reads the run and the
business's budget alerts at once and commits once; its totals come from the run document,
unless a phase on it did not complete (then its usage records are read too)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import flask.testing
import pytest
from google.cloud.firestore_v1.base_query import FieldFilter

from common.analysis.phases import run_phase
from common.budget import status, usage
from common.budget.blocks import USAGE
from common.budget.ledger import BudgetLedger
from common.budget.periods import day_key, month_key
from common.llm import CircuitBreaker, OfflineProvider, Router
from common.llm.base import ProviderRequest, ProviderResponse, ProviderTimeout, RateLimited
from common.models import PHASE_ORDER
from common.money import NANOS_PER_USD, usd
from common.platform.errors import Busy, Conflict
from common.platform.settings import get_settings
from common.platform.store import db
from common.runs import documents, events, lifecycle
from common.runs.lifecycle import RunSummary
from common.tenants.businesses import Business
from tests.cancelling import Cancelling
from tests.counting import counting
from tests.spending import attempt

pytestmark = pytest.mark.emulator
FunctionClient = Callable[[str], flask.testing.FlaskClient]
# The last research sub-task: it runs alone, after the facts and the competitor ladder.
SYNTHESIS = "From the facts and the competitor ladder"


def business_of(run_id: str) -> str:
    return documents.get_run(run_id).business_id


def assert_charged(summary: RunSummary, run_id: str) -> None:
    """The summary's totals are what the run's usage records charged, to the nano."""
    charged = usage.run_totals(run_id)
    assert charged.cost_nanos > 0
    assert summary.total_cost_usd == usd(charged.cost_nanos)
    assert set(charged.cost_by_phase) <= set(summary.phases)
    assert {name: phase.cost_usd for name, phase in summary.phases.items()} == {
        name: usd(charged.cost_by_phase.get(name, 0)) for name in summary.phases
    }
    assert summary.models_used == charged.models
    assert summary.providers_used == charged.providers


def task_of(request: ProviderRequest) -> str:
    return str(request.messages[-1]["content"]).rsplit("TASK: ", 1)[-1]


class TimesOutOnce:
    """The offline provider, whose first answer to `task` is cut by a timeout after its tokens
    were billed: a failed attempt that is charged, then the chain falls back."""

    def __init__(self, task: str) -> None:
        self.name = "offline"
        self._inner = OfflineProvider()
        self._task = task
        self.timed_out = False

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        answer = self._inner.complete(request)
        if not self.timed_out and task_of(request).startswith(self._task):
            self.timed_out = True
            raise ProviderTimeout(
                "cut after streaming", provider="offline", model=request.model, usage=answer.usage
            )
        return answer


def test_succeed_reads_once_commits_once_and_answers_what_was_charged(
    new_run: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OFFLINE_WEAK_RATES", '{"nano": 0.5, "mini": 0.3}')  # asked again, paid
    get_settings.cache_clear()
    run_id = new_run()
    provider = TimesOutOnce(SYNTHESIS)
    router = Router(
        {"openai": provider, "gemini": OfflineProvider()},
        breaker=CircuitBreaker(cooldown_seconds=0),
    )
    run_phase(run_id, "research", router=router)
    for phase in PHASE_ORDER[1:]:
        run_phase(run_id, phase)
    records = [
        snapshot.to_dict() or {}
        for snapshot in db()
        .collection(USAGE)
        .where(filter=FieldFilter("run_id", "==", run_id))
        .stream()
    ]
    # The run paid for answers it did not use: a cut one, before its fallback answered.
    assert any(not r["ok"] and r["charged_nanos"] > 0 for r in records)
    assert any(r["ok"] and r["fallback_used"] for r in records)

    business_id = business_of(run_id)
    with counting(db()) as calls:
        summary = lifecycle.transition(run_id, "succeed", business_id=business_id)

    assert calls.total <= 2, dict(calls.rpcs)  # the run with its alerts, then the commit
    assert summary.status == "succeeded" and summary.percent == 100
    assert set(summary.phases) == set(PHASE_ORDER)
    assert_charged(summary, run_id)
    run = documents.get_run(run_id)
    assert run.duration_seconds is not None and run.duration_seconds > 0
    assert summary.duration_seconds == run.duration_seconds  # what the commit wrote, not read
    assert summary.total_cost_usd == run.cost_usd
    assert events.events(run_id)[-1]["type"] == "run_completed"

    with counting(db()) as calls:  # the workflow's retry of it: the same answer, no write
        again = lifecycle.transition(run_id, "succeed", business_id=business_id)
    assert again == summary
    assert calls.total == 1 and calls.rpcs["Commit"] == 0, dict(calls.rpcs)
    assert documents.get_run(run_id).updated_at == run.updated_at


@pytest.mark.parametrize("with_business", [True, False], ids=["business_id", "no_business_id"])
def test_a_failure_makes_two_calls_with_the_business_three_without(
    new_run: Callable[..., str], with_business: bool
) -> None:
    run_id = new_run()
    run_phase(run_id, "research")
    business_id = business_of(run_id) if with_business else None

    with counting(db()) as calls:
        summary = lifecycle.transition(
            run_id, "fail", reason="workflow_error", message="boom", business_id=business_id
        )

    # Without the business, the alerts can only be read once the run says whose it is.
    assert calls.total <= (2 if with_business else 3), dict(calls.rpcs)
    assert summary.status == "failed" and summary.reason == "workflow_error"
    assert_charged(summary, run_id)
    run = documents.get_run(run_id)
    assert run.status == "failed" and run.error == "boom"
    assert summary.duration_seconds == run.duration_seconds
    assert lifecycle.transition(run_id, "fail", message="boom", business_id=business_id) == summary


def test_deliveries_at_once_end_the_run_once_and_answer_the_same(
    new_run: Callable[..., str],
) -> None:
    run_id = new_run()
    run_phase(run_id, "research")
    business_id = business_of(run_id)
    answers: list[RunSummary] = []
    lock = threading.Lock()

    def deliver() -> None:
        summary = lifecycle.transition(
            run_id, "fail", reason="workflow_error", message="boom", business_id=business_id
        )
        with lock:
            answers.append(summary)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(answers) == 4 and all(answer == answers[0] for answer in answers)
    assert answers[0].status == "failed"
    assert_charged(answers[0], run_id)
    kinds = [e["type"] for e in events.events(run_id)]
    assert kinds.count("run_failed") == 1


def test_start_makes_at_most_two_calls_and_its_replay_one(new_run: Callable[..., str]) -> None:
    run_id = new_run(start=False)
    business_id = business_of(run_id)

    with counting(db()) as calls:
        started = lifecycle.transition(run_id, "start", business_id=business_id)
    assert calls.total <= 2, dict(calls.rpcs)
    assert started.status == "running" and started.percent == lifecycle.START_WEIGHT

    with counting(db()) as calls:
        again = lifecycle.transition(run_id, "start", business_id=business_id)
    assert calls.total == 1, dict(calls.rpcs)
    assert again == started
    assert [e["type"] for e in events.events(run_id)] == ["run_started"]


def test_a_run_cancelled_mid_phase_answers_what_was_charged_its_stopped_phase_included(
    new_run: Callable[..., str],
) -> None:
    run_id = new_run()
    router = Router({"openai": Cancelling(run_id)}, breaker=CircuitBreaker(cooldown_seconds=0))
    with pytest.raises(Conflict):
        run_phase(run_id, "research", router=router)  # facts and the ladder paid, then stopped
    assert documents.get_run(run_id).phases["research"]["status"] == "cancelled"

    business_id = business_of(run_id)
    with counting(db()) as calls:
        summary = lifecycle.transition(
            run_id, "cancel", reason="run_cancelled", business_id=business_id
        )

    # The stopped phase's own cost, models and providers are not on the run document: its
    # usage records are read for them.
    assert calls.total <= 3, dict(calls.rpcs)
    assert summary.status == "cancelled" and summary.reason == "run_cancelled"
    assert_charged(summary, run_id)
    assert summary.total_cost_usd == documents.get_run(run_id).cost_usd
    assert events.events(run_id)[-1]["type"] == "run_cancelled"


def test_a_run_cancelled_between_phases_makes_two_calls(new_run: Callable[..., str]) -> None:
    run_id = new_run()
    run_phase(run_id, "research")
    lifecycle.request_cancel(run_id)  # seen by the budget check before the next phase

    business_id = business_of(run_id)
    with counting(db()) as calls:
        summary = lifecycle.transition(
            run_id, "cancel", reason="run_cancelled", business_id=business_id
        )

    assert calls.total <= 2, dict(calls.rpcs)
    assert summary.status == "cancelled"
    assert_charged(summary, run_id)


def test_a_run_of_another_business_is_refused_naming_business_id(
    new_run: Callable[..., str], function_client: FunctionClient
) -> None:
    run_id = new_run()
    before = documents.get_run(run_id)

    response = function_client("lifecycle").post(
        "/", json={"run_id": run_id, "transition": "fail", "business_id": "someone-else"}
    )

    assert response.status_code == 400
    assert response.json is not None
    error = response.json["error"]
    assert error["code"] == "business_mismatch" and error["field"] == "business_id"
    assert "someone-else" in error["message"]
    assert documents.get_run(run_id) == before  # nothing written
    assert [e["type"] for e in events.events(run_id)] == ["run_started"]

    ok = function_client("lifecycle").post(
        "/", json={"run_id": run_id, "transition": "fail", "business_id": before.business_id}
    )
    assert ok.status_code == 200 and ok.json is not None and ok.json["status"] == "failed"


def test_a_malformed_business_id_is_refused_with_400(
    new_run: Callable[..., str], function_client: FunctionClient
) -> None:
    run_id = new_run()
    response = function_client("lifecycle").post(
        "/", json={"run_id": run_id, "transition": "fail", "business_id": "Not A Slug"}
    )
    assert response.status_code == 400
    assert response.json is not None and response.json["error"]["field"] == "business_id"
    assert documents.get_run(run_id).status == "running"


@pytest.mark.parametrize("with_business", [True, False], ids=["business_id", "no_business_id"])
def test_warnings_other_work_crossed_come_before_the_final_event(
    new_run: Callable[..., str],
    register: Callable[..., Business],
    with_business: bool,
) -> None:
    run_id = new_run()
    business = register(business_of(run_id), overrides={"daily_limit_usd": "1"})
    ledger = BudgetLedger(business)  # another task of the business, outside this run
    ledger.reserve(
        key="other-work",
        model="gpt-5-mini",
        tier="mini",
        upper_bound_nanos=NANOS_PER_USD // 100 * 85,
    )
    ledger.settle(attempt("other-work", 8 * NANOS_PER_USD // 10))
    ledger.close()  # its spending reaches the day: 80% of it
    now = documents.get_run(run_id).created_at
    assert now is not None
    [warning] = status.alerts(business.business_id, [day_key(now), month_key(now)])
    assert warning.level == 75 and documents.get_run(run_id).warnings == []

    with counting(db()) as calls:
        summary = lifecycle.transition(
            run_id,
            "cancel",
            reason="run_cancelled",
            business_id=business.business_id if with_business else None,
        )

    assert calls.total <= (2 if with_business else 3), dict(calls.rpcs)
    assert calls.rpcs["Commit"] == 1  # the warning goes in with the final event
    assert summary.warnings == [warning.message]
    assert documents.get_run(run_id).warnings == [warning.message]
    kinds = [e["type"] for e in events.events(run_id)]
    assert kinds[-2:] == ["budget_warning", "run_cancelled"]
    assert lifecycle.transition(run_id, "cancel", reason="run_cancelled") == summary


class UnusableThenDown:
    """The offline provider, whose first answer to `task` is not JSON (its tokens are billed),
    after which every call is rate limited until `down` is cleared."""

    def __init__(self, task: str) -> None:
        self.name = "offline"
        self._inner = OfflineProvider()
        self._task = task
        self.answered = False
        self.down = True

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        if self.answered and self.down:
            raise RateLimited("slow down", provider="offline", model=request.model)
        answer = self._inner.complete(request)
        if not self.answered and task_of(request).startswith(self._task):
            self.answered = True
            return answer.model_copy(update={"text": "not json at all"})
        return answer


def test_a_phase_run_again_after_a_paid_failure_still_answers_what_was_charged(
    new_run: Callable[..., str],
) -> None:
    run_id = new_run()
    provider = UnusableThenDown(SYNTHESIS)
    router = Router({"openai": provider}, breaker=CircuitBreaker(cooldown_seconds=0))
    with pytest.raises(Busy):
        run_phase(run_id, "research", router=router)  # the workflow retries the 503
    provider.down = False
    for phase in PHASE_ORDER:
        run_phase(run_id, phase, router=router)

    summary = lifecycle.transition(run_id, "succeed", business_id=business_of(run_id))

    assert_charged(summary, run_id)


def test_a_start_that_loses_a_race_to_the_launchs_link_reads_again_at_once(
    new_run: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = new_run(start=False)
    real = documents.run_from
    linked: list[str] = []

    def read_while_the_launch_links(snapshot: object) -> documents.Run:
        run = real(snapshot)  # type: ignore[arg-type]
        if not linked:
            # The launch links the run to its execution just after the start read it.
            linked.append("executions/e-1")
            documents.run_ref(run_id).update({"execution": linked[0]})
        return run

    monkeypatch.setattr("common.runs.lifecycle.run_from", read_while_the_launch_links)
    slept: list[float] = []
    real_sleep, me = time.sleep, threading.get_ident()

    def sleep(seconds: float) -> None:
        if threading.get_ident() == me:  # this transition's pauses, not other threads'
            slept.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    with counting(db()) as calls:
        summary = lifecycle.transition(run_id, "start")

    # Its commit lost to the link (one write, done): it read again and committed, no pause.
    assert summary.status == "running" and slept == []
    # Two reads and two commits of its own; the third commit is the launch's link.
    assert dict(calls.rpcs) == {"BatchGetDocuments": 2, "Commit": 3}, dict(calls.rpcs)
    run = documents.get_run(run_id)
    assert run.status == "running" and run.execution == "executions/e-1"
    assert [e["type"] for e in events.events(run_id)] == ["run_started"]
