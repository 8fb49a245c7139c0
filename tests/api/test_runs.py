"""A member starts, watches, cancels and reads their run through the API, on the local stack
(the workflow on our engine, every function under functions-framework, the emulator)."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any

import pytest
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from common import models
from common.budget.operator import set_paused
from common.models import PHASE_ORDER, BusinessInput
from common.platform.store import db
from common.runs import documents
from common.tenants.businesses import Business
from local.stack import LocalStack
from tests.api.conftest import Api

pytestmark = pytest.mark.emulator


@pytest.fixture
def stack_business(
    on_stack: LocalStack, business: Callable[..., Business]
) -> Callable[..., Business]:
    """A business of `people` on the stack's project (`on_stack` points Firestore there first)."""
    return business


def follow(path: str, until: Callable[[dict[str, Any]], bool], timeout: float = 120) -> list[Any]:
    """Every state of the document at `path`, through a Firestore listener, until `until`."""
    states: queue.Queue[dict[str, Any]] = queue.Queue()

    def forward(snapshots: list[Any], _changes: Any, _read_time: Any) -> None:
        for snapshot in snapshots:
            states.put(snapshot.to_dict() or {})

    watch = db().document(path).on_snapshot(forward)
    seen = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            state = states.get(timeout=max(deadline - time.monotonic(), 0.1))
            seen.append(state)
            if until(state):
                return seen
    finally:
        watch.unsubscribe()


def ended(state: dict[str, Any]) -> bool:
    return state.get("status") in documents.TERMINAL


def test_a_member_starts_watches_and_reads_their_run(
    api: Api,
    stack_business: Callable[..., Business],
    people: dict[str, str],
    business_input: BusinessInput,
) -> None:
    registered = stack_business()
    body = business_input.model_dump(exclude={"business_id"}) | {"icp_count": 4}
    started = api.call(
        "POST", f"/v1/businesses/{registered.business_id}/runs", people["member"], json_body=body
    )
    assert started.status_code == 201, started.json
    run_id = started.json["run_id"]
    assert started.headers["Location"] == f"/v1/runs/{run_id}"
    assert started.json["listen"] == {
        "run": f"runs/{run_id}",
        "events": f"runs/{run_id}/events",
        "phases": f"runs/{run_id}/phases",
        "budget_status": f"budget_status/{registered.business_id}",
    }

    states = follow(started.json["listen"]["run"], ended)
    percents = [state["percent"] for state in states]
    assert percents == sorted(percents) and percents[-1] == 100
    assert states[-1]["status"] == "succeeded"

    run = api.call("GET", f"/v1/runs/{run_id}", people["member"]).json
    assert run["status"] == "succeeded" and run["input"]["icp_count"] == 4
    assert run["business_id"] == registered.business_id

    results = api.call("GET", f"/v1/runs/{run_id}/results", people["owner"])
    assert results.status_code == 200
    answer = results.json
    assert answer["completed"] == list(PHASE_ORDER)
    assert list(answer) == ["run_id", "status", "completed", *PHASE_ORDER]
    for phase in PHASE_ORDER:
        schema = models.PHASE_OUTPUTS[phase]
        assert list(answer[phase]) == list(schema.model_fields), phase  # schema order
        schema.model_validate(answer[phase])
    assert len(answer["icps"]["icps"]) == 4

    # What the run cost is what its usage report says, in JSON and CSV alike.
    usage = f"/v1/businesses/{registered.business_id}/usage?group_by=task"
    report = api.call("GET", usage, people["member"]).json
    assert report["total"]["cost_nanos"] == run["cost_nanos"] > 0
    text = api.call("GET", usage, people["member"], headers={"Accept": "text/csv"}).get_data(
        as_text=True
    )
    assert sum(int(line.split(",")[4]) for line in text.splitlines()[1:]) == run["cost_nanos"]

    events = db().collection(started.json["listen"]["events"]).get()
    assert "run_completed" in {(event.to_dict() or {}).get("type") for event in events}


def test_a_member_cancels_their_run(
    api: Api,
    stack_business: Callable[..., Business],
    people: dict[str, str],
    business_input: BusinessInput,
) -> None:
    registered = stack_business()
    body = business_input.model_dump(exclude={"business_id"})
    started = api.call(
        "POST", f"/v1/businesses/{registered.business_id}/runs", people["member"], json_body=body
    ).json
    run_id = started["run_id"]
    follow(started["listen"]["run"], lambda state: state.get("status") == "running")

    cancelled = api.call("POST", f"/v1/runs/{run_id}:cancel", people["member"])
    assert cancelled.status_code == 202
    assert cancelled.json["cancel_requested"] is True

    final = follow(started["listen"]["run"], ended)[-1]
    assert final["status"] == "cancelled"
    again = api.call("POST", f"/v1/runs/{run_id}:cancel", people["member"])
    assert again.status_code == 409 and again.json["error"]["code"] == "run_final"
    results = api.call("GET", f"/v1/runs/{run_id}/results", people["member"]).json
    assert results["status"] == "cancelled"
    assert results["completed"] == [p for p in PHASE_ORDER if results[p] is not None]
    assert "analytics" not in results["completed"]


def runs_of(business_id: str) -> list[firestore.DocumentSnapshot[Any]]:
    query = db().collection("runs").where(filter=FieldFilter("business_id", "==", business_id))
    return list(query.stream())


def test_tier_gating_and_the_kill_switch_refuse_before_anything_starts(
    api: Api,
    stack_business: Callable[..., Business],
    people: dict[str, str],
    business_input: BusinessInput,
) -> None:
    basic = stack_business(tier="basic")
    start = f"/v1/businesses/{basic.business_id}/runs"
    body = business_input.model_dump(exclude={"business_id"})

    too_many = api.call("POST", start, people["member"], json_body=body | {"icp_count": 5})
    assert too_many.status_code == 402
    assert too_many.json["error"] == {
        "code": "feature_limit_exceeded",
        "message": "the basic tier allows at most 3 ICPs; 5 were requested",
        "field": "icp_count",
    }

    tiny = stack_business(overrides={"daily_limit_usd": "0.01"})
    broke = api.call(
        "POST", f"/v1/businesses/{tiny.business_id}/runs", people["member"], json_body=body
    )
    assert broke.status_code == 402 and broke.json["error"]["code"] == "daily_budget_exceeded"

    set_paused(True, "maintenance")
    try:
        paused = api.call("POST", start, people["owner"], json_body=body)
    finally:
        set_paused(False)
    assert paused.status_code == 402 and paused.json["error"]["code"] == "platform_paused"
    assert "maintenance" in paused.json["error"]["message"]
    assert runs_of(basic.business_id) == [] and runs_of(tiny.business_id) == []
