"""What a run costs in Firestore calls, counted, not estimated (issue 19): every process of the
local stack (the launch here, every function under functions-framework) reaches the emulator
through a counting proxy (`tests/proxy.py`); a single phase or budget check is counted with a
client hook. On Cloud Run each of these calls is a network round trip and a billed operation."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.cloud.workflows import executions_v1

from common.analysis import launch
from common.analysis.phases import PHASES, read, run_phase
from common.analysis.preflight import check_phase
from common.analysis.work import Work
from common.budget import sources, usage
from common.budget.blocks import usage_ref
from common.budget.clock import server_clock
from common.budget.escrow import escrow
from common.budget.ledger import BudgetLedger
from common.budget.periods import day_key
from common.models import BusinessInput
from common.platform.settings import get_settings
from common.platform.store import db
from common.runs import documents, executions, lifecycle
from common.tenants.businesses import Business
from local import emulator, stack
from tests.counting import counting
from tests.proxy import Traffic, proxy
from tests.spending import attempt
from tests.terraform.planfile import unindexed

pytestmark = pytest.mark.emulator

# What a full run may make (issue 19): about 90 (`bench/run_overhead.py`, median of 5). A phase
# reads its run with the business and its budget (and checks that budget on what it read), leases
# with one commit, takes its block with its first call's hold, commits its sub-tasks' ends with
# the settles of their calls (parallel ends together) and ends with one commit that also closes
# its block; about 24 model calls write their usage record twice each, the second time inside a
# commit the phase makes anyway.
RUN_CALLS = 100
# The automatic index entries a run's writes make, the exempt fields apart: about 4,100 offline
# (`bench/run_overhead.py`), mostly the usage records' fields (each written twice).
RUN_INDEX_ENTRIES = 5_000


@pytest.fixture(scope="module")
def counted(
    firestore_emulator: emulator.FirestoreEmulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[stack.LocalStack, str, Traffic]]:
    with proxy(firestore_emulator.host) as (host, traffic):
        running = stack.start(
            f"count-{uuid.uuid4().hex[:8]}",
            log_dir=tmp_path_factory.mktemp("counted-stack-logs"),
            function_env={
                "OFFLINE_LATENCY_MS": "0",
                "DOTENV_PATH": "/nonexistent/.env",
                "FIRESTORE_EMULATOR_HOST": host,
            },
            firestore=firestore_emulator,
        )
        try:
            yield running, host, traffic
        finally:
            running.stop()


def through_the_proxy(
    counted: tuple[stack.LocalStack, str, Traffic],
    monkeypatch: pytest.MonkeyPatch,
    register: Callable[..., Business],
    business_input: BusinessInput,
) -> tuple[Traffic, BusinessInput]:
    """This process reaching the counted stack through the proxy too, and a new business of it
    (its traffic, its input)."""
    running, host, traffic = counted
    for name, value in {**running.client_env, "FIRESTORE_EMULATOR_HOST": host}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    business = business_input.model_copy(update={"business_id": f"count-{uuid.uuid4().hex[:8]}"})
    register(business.business_id, "enterprise")
    return traffic, business


def run_to_the_end(business: BusinessInput) -> str:
    run_id = launch.start_run(business)
    final = documents.watch(run_id, lambda _run: None, timeout=120)
    assert final.status == "succeeded", final.error
    name = documents.get_run(run_id).execution
    assert name is not None
    deadline = time.monotonic() + 30
    state = executions_v1.Execution.State.ACTIVE
    while state == executions_v1.Execution.State.ACTIVE and time.monotonic() < deadline:
        state = executions.executions_client().get_execution(name=name).state
        time.sleep(0.05)
    time.sleep(0.3)  # what a function still writes after answering belongs to the run
    return run_id


def test_a_full_run_makes_a_bounded_number_of_firestore_calls(
    counted: tuple[stack.LocalStack, str, Traffic],
    monkeypatch: pytest.MonkeyPatch,
    register: Callable[..., Business],
    business_input: BusinessInput,
) -> None:
    traffic, business = through_the_proxy(counted, monkeypatch, register, business_input)
    run_to_the_end(business)  # the first requests of each process: imports, connections

    calls_per_run: list[int] = []
    for _ in range(3):
        before = traffic.snapshot()
        run_id = run_to_the_end(business)
        used = traffic.since(before)
        calls_per_run.append(used.calls())
        # The run document carries the live progress: the document written most, and written
        # by this run alone (with real models a run lasts minutes: under one write a second).
        path, writes = used.hottest()
        assert path == f"runs/{run_id}" and writes <= 60, used.writes.most_common(5)
        # A business's day: each phase request takes a block and gives it back (one request per
        # instance), two writes per phase, and a take that lost a race (to a parallel sibling's
        # take or close) is sent again (counted: the proxy sees what is sent). So is its status.
        day = next(
            p
            for p in used.writes
            if p.startswith(f"budget_scopes/business:{business.business_id}:")
        )
        assert used.writes[day] <= 3 * 6, used.writes.most_common(5)
        assert used.writes[f"budget_status/{business.business_id}"] <= 3 * 6

    # Each run's count varies with the races parallel phases lose on their business's day (a
    # take or close sent again): the median of three, as the benchmark takes the median of five.
    assert statistics.median(calls_per_run) <= RUN_CALLS, calls_per_run
    assert max(calls_per_run) <= RUN_CALLS + 10, calls_per_run  # a race or two, no more


def test_every_time_a_run_writes_keeps_no_automatic_index(
    counted: tuple[stack.LocalStack, str, Traffic],
    monkeypatch: pytest.MonkeyPatch,
    register: Callable[..., Business],
    business_input: BusinessInput,
) -> None:
    # Firestore sustains 500 writes a second to a collection whose documents hold an indexed
    # value that only grows (a time), the emulator none: every time a run puts in a document of
    # a top-level collection (each written by every run, model call or budget block) is listed
    # in terraform/firestore_unindexed.json, whose fields the plan exempts from automatic indexes
    # (tests/terraform/test_plan.py). A sub-collection's documents (a run's events, phases and
    # parts) are one collection per run, each its own range of the index.
    traffic, business = through_the_proxy(counted, monkeypatch, register, business_input)
    traffic.stamped.clear()
    run_to_the_end(business)

    listed = unindexed()

    def exempt(collection: str, path: str) -> bool:
        # A map's exemption covers its sub-fields (a budget scope's blocks, keyed by block id).
        parts = path.replace("`", "").split(".")
        return any((collection, ".".join(parts[:n])) in listed for n in range(1, len(parts) + 1))

    assert ("usage", "created_at") in traffic.stamped  # what the proxy sees: times, by field
    assert ("runs", "updated_at") in traffic.stamped
    indexed = sorted((c, path) for c, path in traffic.stamped if not exempt(c, path))
    assert not indexed, indexed


def test_a_run_writes_a_bounded_number_of_index_entries(
    counted: tuple[stack.LocalStack, str, Traffic],
    monkeypatch: pytest.MonkeyPatch,
    register: Callable[..., Business],
    business_input: BusinessInput,
) -> None:
    # Every index entry is work on every write (and storage): what a phase produced (outputs,
    # parts, events' data, the run's phase summaries) is read by no query and keeps no index.
    traffic, business = through_the_proxy(counted, monkeypatch, register, business_input)
    run_to_the_end(business)  # the first requests of each process: imports, connections
    before = traffic.snapshot()
    run_to_the_end(business)
    used = traffic.since(before)

    listed = unindexed()
    kept = sum(n for key, n in used.entries.items() if key not in listed)
    spared = sum(n for key, n in used.entries.items() if key in listed)
    assert spared >= kept / 3, (kept, spared)  # about 6,300 written before the exemptions
    assert kept <= RUN_INDEX_ENTRIES, used.entries.most_common(10)
    payloads = [("phases", "output"), ("parts", "answer"), ("events", "data"), ("runs", "phases")]
    assert all(used.entries[key] for key in payloads), used.entries  # written, not indexed


def test_the_budget_check_function_reads_once_with_the_business_id(
    new_run: Callable[..., str],
) -> None:
    run_id = new_run()
    business_id = documents.get_run(run_id).business_id
    run_phase(run_id, "research")
    check_phase(run_id, "positioning")  # the process reads recorded costs once in a while

    with counting(db()) as calls:
        check_phase(run_id, "positioning", business_id=business_id)
    # The workflow passes the business's id: the run, the results the phase builds on and the
    # business's budget in one read.
    assert calls.total == 1, dict(calls.rpcs)

    with counting(db()) as calls:
        check_phase(run_id, "positioning")
    # An execution started with the run's id alone: the run first, then the budget.
    assert calls.total == 2, dict(calls.rpcs)


def test_a_phase_checks_its_budget_on_its_first_read_and_stops_before_its_first_call(
    new_run: Callable[..., str],
    register: Callable[..., Business],
    function_client: Callable[[str], Any],
) -> None:
    run_id = new_run()
    business_id = documents.get_run(run_id).business_id
    run_phase(run_id, "research", business_id=business_id)
    check_phase(run_id, "positioning")  # the process reads recorded costs once in a while
    # The owner cuts the day's limit while the run is under way: positioning no longer fits.
    register(business_id, "enterprise", overrides={"daily_limit_usd": "0.01"})
    before = usage.run_totals(run_id)

    with counting(db()) as calls:
        response = function_client("positioning").post(
            "/", json={"run_id": run_id, "business_id": business_id}
        )

    # The 402 the workflow ends the run budget_exceeded on, from the phase's one read: no
    # lease, no block, no model call, nothing written.
    assert response.status_code == 402, response.get_json()
    assert response.get_json()["error"]["code"] == "daily_budget_exceeded"
    assert dict(calls.rpcs) == {"BatchGetDocuments": 1}, dict(calls.rpcs)
    run = documents.get_run(run_id)
    assert "positioning" not in run.phases and run.status == "running"
    assert usage.run_totals(run_id) == before


def test_a_phase_of_a_cancelled_run_stops_before_it_starts(
    new_run: Callable[..., str], function_client: Callable[[str], Any]
) -> None:
    run_id = new_run()
    business_id = documents.get_run(run_id).business_id
    lifecycle.request_cancel(run_id)

    response = function_client("research").post(
        "/", json={"run_id": run_id, "business_id": business_id}
    )

    # The 409 the workflow ends the run cancelled on, before the phase takes its lease.
    assert response.status_code == 409, response.get_json()
    assert response.get_json()["error"]["code"] == "run_cancelled"
    assert documents.get_run(run_id).phases == {}


def test_a_phase_reads_its_run_and_its_business_in_one_round_trip(
    new_run: Callable[..., str],
) -> None:
    run_id = new_run()
    business_id = documents.get_run(run_id).business_id
    spec = PHASES["positioning"]

    sources.forget(business_id)
    with counting(db()) as calls:
        read(run_id, spec, business_id=business_id)
        sources.current(business_id)  # what the phase's budget reads: kept from that read
    assert calls.total == 1, dict(calls.rpcs)

    sources.forget(business_id)
    with counting(db()) as calls:
        read(run_id, spec)
        sources.current(business_id)
    # An execution started with the run's id alone: the run, then the business and controls.
    assert calls.total == 2, dict(calls.rpcs)


@pytest.mark.parametrize("function", ["budget_check", "research"])
@pytest.mark.parametrize("registered", [True, False], ids=["another", "unknown"])
def test_a_business_id_that_is_not_the_runs_is_refused(
    function: str,
    registered: bool,
    new_run: Callable[..., str],
    register: Callable[..., Business],
    function_client: Callable[[str], Any],
) -> None:
    run_id = new_run()
    other = f"other-{uuid.uuid4().hex[:8]}"
    if registered:
        register(other, "enterprise")
    body = {"run_id": run_id, "business_id": other}
    if function == "budget_check":
        body["phase"] = "research"

    response = function_client(function).post("/", json=body)

    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "business_mismatch" and error["field"] == "business_id"
    assert documents.get_run(run_id).phases == {}  # nothing started, nothing spent


def test_only_the_phases_whose_sub_tasks_read_evidence_search_it(
    new_run: Callable[..., str],
) -> None:
    run_id = new_run()
    business_id = documents.get_run(run_id).business_id
    queries = {}
    for phase in ("research", "positioning", "icps", "strategy"):
        with counting(db()) as calls:
            run_phase(run_id, phase, business_id=business_id)
        queries[phase] = calls.rpcs["RunQuery"]

    # research and positioning give their sub-tasks the business's evidence (one vector search
    # each; research's process also reads the recorded outcomes once); the ICPs and the strategy
    # build on those phases' results, and search nothing.
    assert queries["positioning"] == 1 and queries["research"] >= 1, queries
    assert queries["icps"] == queries["strategy"] == 0, queries


def test_a_phases_first_block_is_taken_from_what_its_first_read_found(
    new_run: Callable[..., str],
) -> None:
    run_id = new_run()
    business_id = documents.get_run(run_id).business_id
    business = sources.current(business_id).business
    earlier = BudgetLedger(business)  # the day's first take splits the platform's cap first
    earlier.reserve(key=f"{run_id}:earlier", model="gpt-5-mini", tier="mini", upper_bound_nanos=1)
    earlier.settle(attempt(f"{run_id}:earlier", 1))
    earlier.close()
    escrow.release()

    with counting(db()) as calls:
        read(run_id, PHASES["research"], business_id=business_id)
        ledger = BudgetLedger(business)
        ledger.reserve(key=f"{run_id}:first", model="gpt-5-mini", tier="mini", upper_bound_nanos=1)

    # One read (the run, the business, its day, month and platform shard) and the take's
    # commit, which carries the call's hold: the take reads nothing of its own.
    assert dict(calls.rpcs) == {"BatchGetDocuments": 1, "Commit": 1}
    [commit] = calls.commits
    hold = usage_ref(f"{run_id}:first").get().to_dict() or {}
    assert f"budget_blocks/{hold['block']}" in commit and f"usage/{run_id}:first" in commit
    assert hold["state"] == "held" and hold["day"] == day_key(server_clock.now())
    ledger.settle(attempt(f"{run_id}:first", 1))
    ledger.close()


def test_parallel_sub_tasks_that_end_while_a_commit_is_under_way_share_the_next(
    new_run: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = new_run()
    business_id = documents.get_run(run_id).business_id
    for phase in ("research", "positioning", "icps"):
        run_phase(run_id, phase, business_id=business_id)
    groups: list[list[str]] = []
    commit_end = Work._commit_end

    def slow_first(work: Work, group: list[Any]) -> None:
        groups.append([ending.done.key for ending in group])
        if len(groups) == 1:
            time.sleep(0.5)  # a slow round trip: the other weeks end meanwhile
        commit_end(work, group)

    monkeypatch.setattr(Work, "_commit_end", slow_first)
    with counting(db()) as calls:
        run_phase(run_id, "content", business_id=business_id)

    weeks = [key for group in groups for key in group if key.startswith("weeks-")]
    assert sorted(weeks) == [f"weeks-{n}" for n in range(1, 5)], groups
    assert len(groups[1]) == 3, groups  # the three ends that waited went in one commit
    parts = {path: n for path, n in calls.writes.items() if "/parts/" in path}
    assert len(parts) == sum(map(len, groups)) and set(parts.values()) == {1}, parts
    run = documents.get_run(run_id)
    assert run.cost_nanos == usage.run_totals(run_id).cost_nanos  # every end counted once
