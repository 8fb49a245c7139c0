"""Run lifecycle and the pre-phase gate: start, final states, totals, cancellation, budget."""

from __future__ import annotations

from collections.abc import Callable

import flask.testing
import pytest

from common.analysis.phases import run_phase
from common.models import PHASE_ORDER
from common.platform.errors import Conflict
from common.runs import documents, events, lifecycle

FunctionClient = Callable[[str], flask.testing.FlaskClient]


@pytest.mark.emulator
def test_start_is_idempotent_and_recorded_once(new_run: Callable[..., str]) -> None:
    run_id = new_run(start=False)
    first = lifecycle.transition(run_id, "start")
    again = lifecycle.transition(run_id, "start")
    assert first.status == again.status == "running"
    assert first.percent == again.percent == lifecycle.START_WEIGHT
    assert [e["type"] for e in events.events(run_id)] == ["run_started"]
    assert documents.get_run(run_id).started_at is not None


@pytest.mark.emulator
def test_success_totals_cost_and_duration_from_every_phase(new_run: Callable[..., str]) -> None:
    run_id = new_run()
    for phase in PHASE_ORDER:
        run_phase(run_id, phase)
    summary = lifecycle.transition(run_id, "succeed")
    assert summary.status == "succeeded" and summary.percent == 100
    assert summary.duration_seconds is not None and summary.duration_seconds > 0
    assert set(summary.phases) == set(PHASE_ORDER)
    assert summary.total_cost_usd == pytest.approx(sum(p.cost_usd for p in summary.phases.values()))
    assert summary.models_used and summary.providers_used == ["offline"]
    assert lifecycle.transition(run_id, "succeed") == summary  # a replay changes nothing
    assert events.events(run_id)[-1]["type"] == "run_completed"


@pytest.mark.emulator
def test_success_with_phases_missing_is_refused(new_run: Callable[..., str]) -> None:
    run_id = new_run()
    run_phase(run_id, "research")
    with pytest.raises(Conflict) as refused:
        lifecycle.transition(run_id, "succeed")
    assert "positioning" in refused.value.message
    assert documents.get_run(run_id).status == "running"


@pytest.mark.emulator
def test_a_final_state_cannot_change(new_run: Callable[..., str]) -> None:
    run_id = new_run()
    lifecycle.transition(run_id, "cancel", reason="run_cancelled")
    with pytest.raises(Conflict):
        lifecycle.transition(run_id, "fail", message="late failure")
    assert documents.get_run(run_id).status == "cancelled"


@pytest.mark.emulator
def test_failure_keeps_finished_phases_and_a_truncated_reason(
    new_run: Callable[..., str], function_client: FunctionClient
) -> None:
    run_id = new_run()
    run_phase(run_id, "research")
    response = function_client("lifecycle").post(
        "/",
        json={
            "run_id": run_id,
            "transition": "fail",
            "reason": "workflow_error",
            "message": "x" * 9000,
        },
    )
    assert response.status_code == 200
    run = documents.get_run(run_id)
    assert run.status == "failed" and run.error is not None and len(run.error) == 4000
    assert "research" in run.phases
    assert events.events(run_id)[-1]["type"] == "run_failed"


@pytest.mark.emulator
def test_gate_allows_a_phase_that_fits_the_budget(
    new_run: Callable[..., str], function_client: FunctionClient
) -> None:
    run_id = new_run()
    response = function_client("budget_check").post(
        "/", json={"run_id": run_id, "phase": "research"}
    )
    assert response.status_code == 200
    assert response.json is not None and response.json["allowed"] is True
    assert response.json["estimate_usd"] > 0


@pytest.mark.emulator
def test_gate_refuses_a_cancelled_run_with_409(
    new_run: Callable[..., str], function_client: FunctionClient
) -> None:
    run_id = new_run()
    lifecycle.request_cancel(run_id)
    response = function_client("budget_check").post(
        "/", json={"run_id": run_id, "phase": "research"}
    )
    assert response.status_code == 409
    assert response.json is not None and response.json["error"]["code"] == "run_cancelled"


@pytest.mark.emulator
def test_gate_refuses_with_402_when_the_budget_cannot_pay(
    new_run: Callable[..., str],
    register: Callable[..., object],
    function_client: FunctionClient,
) -> None:
    run_id = new_run()
    register(tier="enterprise", overrides={"daily_limit_usd": "0.01"})
    response = function_client("budget_check").post(
        "/", json={"run_id": run_id, "phase": "research"}
    )
    assert response.status_code == 402
    assert response.json is not None
    assert response.json["error"]["code"] == "daily_budget_exceeded"


@pytest.mark.emulator
def test_cancel_of_an_ended_run_is_refused(new_run: Callable[..., str]) -> None:
    run_id = new_run()
    lifecycle.transition(run_id, "fail", message="boom")
    with pytest.raises(Conflict):
        lifecycle.request_cancel(run_id)
    assert documents.get_run(run_id).cancel_requested is False
