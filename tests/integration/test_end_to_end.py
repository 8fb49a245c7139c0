"""Whole runs through the deployed pieces: the workflow YAML on our engine (started through the
real ExecutionsClient), every function over HTTP under functions-framework, the emulator."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.workflows import executions_v1

from common.analysis import launch
from common.analysis.phases import stored_output
from common.budget import usage
from common.models import PHASE_ORDER, BusinessInput
from common.platform.errors import PaymentRequired
from common.platform.store import db
from common.runs import documents, events, executions, lifecycle
from common.tenants.businesses import Business, save_business
from local.stack import LocalStack


def unique_business(business_input: BusinessInput, **changes: Any) -> BusinessInput:
    return business_input.model_copy(
        update={"business_id": f"e2e-{uuid.uuid4().hex[:10]}", **changes}
    )


def register(business: BusinessInput, tier: str = "enterprise", **extra: Any) -> None:
    save_business(
        Business.model_validate(
            {"business_id": business.business_id, "tier": tier, "name": business.name, **extra}
        )
    )


def execution(run_id: str) -> executions_v1.Execution:
    """The run's workflow execution once it has ended (the run document ends a moment before)."""
    name = documents.get_run(run_id).execution
    assert name is not None
    deadline = time.monotonic() + 30
    while True:
        found = executions.executions_client().get_execution(name=name)
        if found.state != executions_v1.Execution.State.ACTIVE or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def act_when(
    run_id: str, condition: Callable[[documents.Run], bool], action: Callable[[], Any]
) -> documents.Run:
    """Follow the run live; run `action` once, the first time `condition` holds."""
    done = threading.Event()

    def check(run: documents.Run) -> None:
        if not done.is_set() and condition(run):
            done.set()
            action()

    return documents.watch(run_id, check, timeout=120)


def positioning_running(run: documents.Run) -> bool:
    return run.phases.get("positioning", {}).get("status") == "running"


@pytest.mark.emulator
def test_a_full_run_succeeds_and_a_listener_sees_percent_rise_to_100(
    on_stack: LocalStack, business_input: BusinessInput
) -> None:
    business = unique_business(business_input)
    register(business)
    seen: list[tuple[str, int]] = []
    finished = threading.Event()

    def record(snapshots: list[Any], _changes: Any, _read_time: Any) -> None:
        for snapshot in snapshots:
            data = snapshot.to_dict() or {}
            seen.append((data["status"], data["percent"]))
            if data["status"] in documents.TERMINAL:
                finished.set()

    query = (
        db()
        .collection(documents.RUNS)
        .where(filter=FieldFilter("business_id", "==", business.business_id))
    )
    listener = query.on_snapshot(record)  # attached before the run exists
    try:
        run_id = launch.start_run(business)
        assert finished.wait(120), seen
    finally:
        listener.unsubscribe()

    percents = [percent for _, percent in seen]
    assert percents == sorted(percents), percents
    assert percents[-1] == 100
    assert seen[0][0] == "queued" and seen[-1][0] == "succeeded"
    assert len(set(percents)) > 10  # progress arrived live, step by step
    for phase in PHASE_ORDER:
        assert stored_output(run_id, phase) is not None
    run = documents.get_run(run_id)
    assert run.cost_nanos > 0 and run.duration_seconds is not None
    done = execution(run_id)
    assert done.state == executions_v1.Execution.State.SUCCEEDED
    result = json.loads(done.result)
    assert result["status"] == "succeeded" and result["run_id"] == run_id
    assert result["total_cost_usd"] == pytest.approx(run.cost_usd)
    assert json.loads(done.argument) == {  # ids only: no business data, no secret
        "run_id": run_id,
        "business_id": business.business_id,
    }


@pytest.mark.emulator
def test_a_cancelled_run_ends_cancelled_and_keeps_its_finished_phases(
    on_stack: LocalStack, business_input: BusinessInput
) -> None:
    business = unique_business(business_input)
    register(business)
    run_id = launch.start_run(business)

    final = act_when(run_id, positioning_running, lambda: lifecycle.request_cancel(run_id))

    assert final.status == "cancelled" and final.stop_reason == "run_cancelled"
    assert stored_output(run_id, "research") is not None
    kinds = [e["type"] for e in events.events(run_id)]
    # The phase under way stops between its sub-tasks (or ends, if it was on its last one),
    # keeping what was paid for; no phase starts after it.
    if stored_output(run_id, "positioning") is None:
        assert "phase_stopped" in kinds and final.phases["positioning"]["status"] == "cancelled"
    assert all(
        stored_output(run_id, p) is None for p in ("icps", "strategy", "content", "analytics")
    )
    assert "cancel_requested" in kinds and kinds[-1] == "run_cancelled"
    assert final.cost_nanos == usage.run_totals(run_id).cost_nanos  # every call counted once
    assert execution(run_id).state == executions_v1.Execution.State.SUCCEEDED


@pytest.mark.emulator
def test_a_run_that_runs_out_of_budget_ends_budget_exceeded_keeping_its_phases(
    on_stack: LocalStack, business_input: BusinessInput
) -> None:
    business = unique_business(business_input)
    register(business)
    run_id = launch.start_run(business)

    def exhaust_budget() -> None:
        spent = documents.get_run(run_id).cost_nanos
        # What was spent so far (at least the smallest limit there is, a cent).
        limit = Decimal(max(spent, 10_000_000)) / 1_000_000_000
        register(business, overrides={"daily_limit_usd": str(limit)})

    final = act_when(run_id, positioning_running, exhaust_budget)

    assert final.status == "budget_exceeded"
    assert final.stop_reason == "daily_budget_exceeded"
    assert stored_output(run_id, "research") is not None
    assert stored_output(run_id, "content") is None and stored_output(run_id, "analytics") is None
    assert events.events(run_id)[-1]["type"] == "budget_exceeded"


@pytest.mark.emulator
def test_asking_for_more_icps_than_the_tier_allows_starts_nothing(
    on_stack: LocalStack, business_input: BusinessInput
) -> None:
    business = unique_business(business_input, icp_count=5)
    register(business, tier="basic")
    executions_before = len(
        list(executions.executions_client().list_executions(parent=executions.workflow_path()))
    )

    with pytest.raises(PaymentRequired) as refused:
        launch.start_run(business)

    assert refused.value.code == "feature_limit_exceeded"
    assert "at most 3 ICPs" in refused.value.message
    query = (
        db()
        .collection(documents.RUNS)
        .where(filter=FieldFilter("business_id", "==", business.business_id))
    )
    assert list(query.stream()) == []
    executions_after = len(
        list(executions.executions_client().list_executions(parent=executions.workflow_path()))
    )
    assert executions_after == executions_before
