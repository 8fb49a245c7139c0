"""The phase functions on the emulator: results, replays, order, and what a client is told."""

from __future__ import annotations

from collections.abc import Callable

import flask.testing
import pytest
from google.cloud import firestore

from common.analysis.phases import PHASES, phase_ref, run_phase, stored_output
from common.analysis.registry import FINISH_WEIGHT
from common.budget import usage
from common.budget.blocks import USAGE
from common.models import PHASE_ORDER, PHASE_OUTPUTS, PhaseName
from common.platform.errors import Conflict, NotFound
from common.runs import documents, events, lifecycle
from tests.integration.conftest import document_paths

FunctionClient = Callable[[str], flask.testing.FlaskClient]


def run_all_phases(run_id: str) -> None:
    for phase in PHASE_ORDER:
        run_phase(run_id, phase)


@pytest.mark.emulator
def test_every_phase_stores_a_valid_output_grounded_in_the_business(
    new_run: Callable[..., str],
) -> None:
    run_id = new_run()
    run_all_phases(run_id)
    for phase in PHASE_ORDER:
        output = stored_output(run_id, phase)
        assert isinstance(output, PHASE_OUTPUTS[phase])
    research = stored_output(run_id, "research")
    assert research is not None
    assert "Tidewater" in research.model_dump_json()
    icps = stored_output(run_id, "icps")
    assert icps is not None and len(icps.model_dump()["icps"]) == 3
    run = documents.get_run(run_id)
    assert run.percent == 100 - FINISH_WEIGHT  # the last points are the run's completion
    assert {p for p, s in run.phases.items() if s["status"] == "completed"} == set(PHASE_ORDER)


@pytest.mark.emulator
def test_the_requested_number_of_icps_is_generated(new_run: Callable[..., str]) -> None:
    run_id = new_run(icp_count=7)
    for phase in ("research", "positioning", "icps"):
        run_phase(run_id, phase)
    icps = stored_output(run_id, "icps")
    assert icps is not None and len(icps.model_dump()["icps"]) == 7


@pytest.mark.emulator
def test_replaying_a_phase_returns_the_stored_result_and_charges_nothing(
    new_run: Callable[..., str], db: firestore.Client
) -> None:
    run_id = new_run()
    first = run_phase(run_id, "research")
    cost_before = documents.get_run(run_id).cost_nanos
    records_before = {s.id: s.to_dict() for s in db.collection(USAGE).stream()}
    events_before = len(events.events(run_id))

    replay = run_phase(run_id, "research")

    assert first.replayed is False and replay.replayed is True
    assert replay.model_dump(exclude={"replayed"}) == first.model_dump(exclude={"replayed"})
    assert documents.get_run(run_id).cost_nanos == cost_before > 0
    assert {s.id: s.to_dict() for s in db.collection(USAGE).stream()} == records_before
    assert len(events.events(run_id)) == events_before
    assert usage.run_totals(run_id).cost_nanos == cost_before


@pytest.mark.emulator
def test_a_phase_before_the_phases_it_needs_is_refused(new_run: Callable[..., str]) -> None:
    run_id = new_run()
    with pytest.raises(Conflict) as refused:
        run_phase(run_id, "positioning")
    assert refused.value.code == "phase_out_of_order"
    assert not phase_ref(run_id, "positioning").get().exists


@pytest.mark.emulator
def test_a_phase_of_a_run_that_is_not_running_is_refused(new_run: Callable[..., str]) -> None:
    queued = new_run(start=False)
    with pytest.raises(Conflict):
        run_phase(queued, "research")
    ended = new_run()
    lifecycle.transition(ended, "cancel")
    with pytest.raises(Conflict) as refused:
        run_phase(ended, "research")
    assert refused.value.code == "run_not_running"


@pytest.mark.emulator
def test_an_unknown_run_is_not_found(project_id: str) -> None:
    with pytest.raises(NotFound):
        run_phase("no-such-run", "research")


@pytest.mark.emulator
def test_progress_steps_add_up_to_each_phase_weight_exactly_once(
    new_run: Callable[..., str],
) -> None:
    run_id = new_run()
    run_phase(run_id, "research")
    run_phase(run_id, "research")
    kinds = [e["type"] for e in events.events(run_id)]
    assert kinds.count("phase_completed") == 1
    assert documents.get_run(run_id).percent == lifecycle.START_WEIGHT + PHASES["research"].weight


# --- Over HTTP (functions-framework test clients) --------------------------------------------


@pytest.mark.emulator
@pytest.mark.parametrize("phase", PHASE_ORDER)
def test_each_phase_function_answers_its_summary(
    phase: PhaseName, new_run: Callable[..., str], function_client: FunctionClient
) -> None:
    run_id = new_run()
    for earlier in PHASE_ORDER[: PHASE_ORDER.index(phase)]:
        run_phase(run_id, earlier)
    response = function_client(phase).post("/", json={"run_id": run_id})
    assert response.status_code == 200, response.json
    body = response.json
    assert body is not None
    assert body["phase"] == phase and body["replayed"] is False
    assert body["provider"] == "offline" and body["cost_usd"] > 0
    assert body["stored_at"] == f"runs/{run_id}/phases/{phase}"


BAD_BODIES = [
    ({}, "run_id"),
    ({"run_id": ""}, "run_id"),
    ({"run_id": "../etc/passwd"}, "run_id"),
    ({"run_id": 42}, "run_id"),
    ({"run_id": "0" * 32, "surprise": 1}, "surprise"),
]


@pytest.mark.emulator
@pytest.mark.parametrize("phase", PHASE_ORDER)
def test_a_malformed_request_gets_400_naming_the_field_and_writes_nothing(
    phase: PhaseName, project_id: str, db: firestore.Client, function_client: FunctionClient
) -> None:
    client = function_client(phase)
    for body, field in BAD_BODIES:
        response = client.post("/", json=body)
        assert response.status_code == 400
        assert response.json is not None
        assert response.json["error"]["field"] == field, body
    not_json = client.post("/", data="run_id=1", content_type="text/plain")
    assert not_json.status_code == 400
    assert not_json.json is not None and not_json.json["error"]["code"] == "invalid_json"
    assert client.get("/").status_code == 405
    assert document_paths(db) == set()


@pytest.mark.emulator
@pytest.mark.parametrize("name", ["budget_check", "lifecycle"])
def test_control_functions_reject_malformed_requests(
    name: str, project_id: str, db: firestore.Client, function_client: FunctionClient
) -> None:
    client = function_client(name)
    response = client.post("/", json={"run_id": "0" * 32})
    assert response.status_code == 400
    assert response.json is not None
    assert response.json["error"]["field"] == ("phase" if name == "budget_check" else "transition")
    wrong_value = {"run_id": "0" * 32, "phase": "marketing", "transition": "explode"}
    response = client.post("/", json=wrong_value)
    assert response.status_code == 400
    assert document_paths(db) == set()


@pytest.mark.emulator
@pytest.mark.parametrize("name", [*PHASE_ORDER, "budget_check", "lifecycle"])
def test_an_unknown_run_gets_404_and_writes_nothing(
    name: str, project_id: str, db: firestore.Client, function_client: FunctionClient
) -> None:
    body = {"run_id": "0" * 32, "phase": "research", "transition": "start"}
    if name in PHASE_ORDER:
        body = {"run_id": "0" * 32}
    elif name == "budget_check":
        body.pop("transition")
    else:
        body.pop("phase")
    response = function_client(name).post("/", json=body)
    assert response.status_code == 404
    assert response.json is not None and response.json["error"]["code"] == "run_not_found"
    assert document_paths(db) == set()


@pytest.mark.emulator
def test_a_phase_another_instance_is_running_is_busy_until_its_lease_expires(
    new_run: Callable[..., str], function_client: FunctionClient
) -> None:
    import datetime as dt

    from common.analysis.phases import LEASES

    run_id = new_run()
    lease = documents.run_ref(run_id).collection(LEASES).document("research")
    lease.create(
        {
            "holder": "other-instance",
            "expires_at": dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5),
        }
    )
    response = function_client("research").post("/", json={"run_id": run_id})
    assert response.status_code == 503  # the workflow retries it
    assert response.json is not None and response.json["error"]["code"] == "phase_in_progress"
    assert not phase_ref(run_id, "research").get().exists

    lease.set(
        {
            "holder": "other-instance",
            "expires_at": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1),
        }
    )
    assert run_phase(run_id, "research").replayed is False  # the dead holder's lease is taken over
    assert not lease.get().exists
