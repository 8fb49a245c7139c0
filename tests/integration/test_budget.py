"""Budget enforcement on the emulator: no overspend under concurrency, exactly-once settles,
expiring reservations, period resets, warnings, gating and the kill switch."""

from __future__ import annotations

import datetime as dt
import random
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import flask.testing
import pytest
from google.cloud import firestore

from common.budget import check, controls, counters, limits, usage
from common.budget.check import get_budget_status
from common.budget.ledger import BudgetLedger, utc_now
from common.budget.status import ALERTS
from common.platform.settings import get_settings
from common.runs import documents, events
from common.runs.events import RunRecorder
from common.spend.ledger import BudgetDenied
from common.tenants.businesses import Business
from tests.integration.conftest import document_paths
from tests.spending import Clock, attempt

NANOS = 1_000_000_000
REASONS = {
    "daily_budget_exceeded",
    "monthly_budget_exceeded",
    "platform_cap_reached",
    "platform_paused",
    "model_tier_restricted",
}
NOON = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def totals(business: Business, now: dt.datetime) -> counters.Totals:
    day = business.scopes(now)[0]
    return counters.read([day])[day.name]


@pytest.mark.emulator
def test_fifty_parallel_tasks_never_overspend_a_small_budget(
    register: Callable[..., Business],
) -> None:
    # Room for about five tasks of at most $0.01 each.
    business = register("busy-shop", "pro", overrides={"daily_limit_usd": "0.05"})
    outcomes: list[tuple[str, str | None]] = []
    lock = threading.Lock()

    def task(number: int) -> None:
        ledger = BudgetLedger(business)
        key = f"task-{number}-{uuid.uuid4().hex}"
        try:
            ledger.reserve(key=key, model="gpt-5-mini", tier="mini", upper_bound_nanos=NANOS // 100)
        except BudgetDenied as denied:
            with lock:
                outcomes.append(("denied", denied.reason))
            return
        actual = random.randint(NANOS // 250, NANOS // 100)  # $0.004 .. $0.01
        ledger.settle(attempt(key, actual))
        with lock:
            outcomes.append(("settled", None))

    with ThreadPoolExecutor(max_workers=50) as pool:
        list(pool.map(task, range(50)))

    settled = [o for o in outcomes if o[0] == "settled"]
    denied = [o for o in outcomes if o[0] == "denied"]
    assert len(outcomes) == 50 and 4 <= len(settled) < 50
    assert all(reason == "daily_budget_exceeded" for _, reason in denied)
    now = utc_now()
    day = totals(business, now)
    assert day.spent <= business.limits.daily_limit_nanos  # zero overspend, to the nano
    assert day.reserved == 0
    assert day.headroom == business.limits.daily_limit_nanos - day.spent
    recorded = usage.get_daily_cost(business.business_id, limits.day_key(now))
    assert round(recorded * NANOS) == day.spent  # every settled cost has its usage record


@pytest.mark.emulator
def test_a_settle_delivered_three_times_is_counted_once(
    register: Callable[..., Business], new_run: Callable[..., str]
) -> None:
    run_id = new_run(start=True)
    business = register()
    ledger = BudgetLedger(
        business, run_id=run_id, phase="research", recorder=RunRecorder(run_id, "research")
    )
    ledger.reserve(key="k1", model="gpt-5-mini", tier="mini", upper_bound_nanos=5_000_000)
    record = attempt("k1", 1_234_567)
    for _ in range(3):
        ledger.settle(record)
    day = totals(business, utc_now())
    assert day.spent == 1_234_567 and day.reserved == 0
    assert documents.get_run(run_id).cost_nanos == 1_234_567
    assert usage.run_cost_by_phase(run_id) == {"research": 1_234_567}


@pytest.mark.emulator
def test_a_reservation_never_settled_is_released_after_its_ttl(
    register: Callable[..., Business],
) -> None:
    business = register("crashy", "basic", overrides={"daily_limit_usd": "0.02"})
    clock = Clock(NOON)
    ledger = BudgetLedger(business, clock=clock)
    ledger.reserve(key="orphan", model="gpt-5-mini", tier="mini", upper_bound_nanos=15_000_000)
    with pytest.raises(BudgetDenied):  # the orphan holds most of the budget
        ledger.reserve(key="next", model="gpt-5-mini", tier="mini", upper_bound_nanos=10_000_000)

    clock.now = NOON + dt.timedelta(minutes=11)  # past the 10-minute TTL: the holder died
    ledger.reserve(key="next", model="gpt-5-mini", tier="mini", upper_bound_nanos=10_000_000)

    day = totals(business, NOON)
    assert day.reserved == 10_000_000 and day.spent == 0
    # A late settle of the released attempt still records the money it really spent, once.
    ledger.settle(attempt("orphan", 3_000_000))
    ledger.settle(attempt("orphan", 3_000_000))
    assert totals(business, NOON).spent == 3_000_000


@pytest.mark.emulator
def test_the_daily_budget_resets_at_utc_midnight(register: Callable[..., Business]) -> None:
    business = register("nightly", "basic", overrides={"daily_limit_usd": "0.01"})
    clock = Clock(dt.datetime(2026, 11, 25, 23, 59, 59, tzinfo=dt.UTC))
    ledger = BudgetLedger(business, clock=clock)
    ledger.reserve(key="a", model="gpt-5-nano", tier="nano", upper_bound_nanos=NANOS // 100)
    ledger.settle(attempt("a", NANOS // 100, model="gpt-5-nano"))
    with pytest.raises(BudgetDenied) as denied:
        ledger.reserve(key="b", model="gpt-5-nano", tier="nano", upper_bound_nanos=1)
    assert denied.value.reason == "daily_budget_exceeded"

    clock.now = dt.datetime(2026, 11, 26, 0, 0, 0, tzinfo=dt.UTC)
    ledger.reserve(key="b", model="gpt-5-nano", tier="nano", upper_bound_nanos=1)  # a new day


@pytest.mark.emulator
def test_the_monthly_budget_resets_with_the_calendar_month(
    register: Callable[..., Business],
) -> None:
    business = register(
        "monthly", "basic", overrides={"daily_limit_usd": "0.02", "monthly_limit_usd": "0.02"}
    )
    clock = Clock(dt.datetime(2026, 11, 29, 10, tzinfo=dt.UTC))
    ledger = BudgetLedger(business, clock=clock)
    ledger.reserve(key="a", model="gpt-5-mini", tier="mini", upper_bound_nanos=NANOS // 50)
    ledger.settle(attempt("a", NANOS // 50))
    clock.now = dt.datetime(2026, 11, 30, 10, tzinfo=dt.UTC)  # a new day, same month
    with pytest.raises(BudgetDenied) as denied:
        ledger.reserve(key="b", model="gpt-5-mini", tier="mini", upper_bound_nanos=1)
    assert denied.value.reason == "monthly_budget_exceeded"
    clock.now = dt.datetime(2026, 12, 1, 0, 0, tzinfo=dt.UTC)
    ledger.reserve(key="b", model="gpt-5-mini", tier="mini", upper_bound_nanos=1)


@pytest.mark.emulator
def test_warnings_fire_once_per_threshold_per_period(
    register: Callable[..., Business],
    new_run: Callable[..., str],
    db: firestore.Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BUDGET_REFRESH_SECONDS", "0")  # check after every settle
    get_settings.cache_clear()
    run_id = new_run()
    business = register(overrides={"daily_limit_usd": "1"})
    clock = Clock(NOON)
    ledger = BudgetLedger(
        business,
        run_id=run_id,
        phase="research",
        clock=clock,
        recorder=RunRecorder(run_id, "research"),
    )

    def spend(key: str, usd: float) -> None:
        ledger.reserve(
            key=key, model="gpt-5-mini", tier="mini", upper_bound_nanos=round(usd * NANOS)
        )
        ledger.settle(attempt(key, round(usd * NANOS)))

    spend("a", 0.80)  # crosses 75%
    spend("b", 0.05)  # still between 75% and 90%: nothing new
    spend("c", 0.10)  # crosses 90%
    alerts = {snap.id for snap in db.collection(ALERTS).stream()}
    assert alerts == {f"tidewater-coffee:2026-11-25:{level}" for level in (75, 90)}
    warnings = [e for e in events.events(run_id) if e["type"] == "budget_warning"]
    assert [e["data"]["level"] for e in warnings] == [75, 90]
    assert len(documents.get_run(run_id).warnings) == 2
    status = get_budget_status("tidewater-coffee", now=NOON)
    assert status.warning_level == 90
    published = db.collection("budget_status").document("tidewater-coffee").get().to_dict()
    assert published is not None and published["today_spent"] == pytest.approx(0.95)

    clock.now = NOON + dt.timedelta(days=1)  # a new day: quiet until crossed again
    spend("d", 0.10)
    assert len(list(db.collection(ALERTS).stream())) == 2
    spend("e", 0.70)
    assert "tidewater-coffee:2026-11-26:75" in {s.id for s in db.collection(ALERTS).stream()}


@pytest.mark.emulator
def test_at_100_percent_every_new_task_is_blocked(register: Callable[..., Business]) -> None:
    business = register("spent", "basic", overrides={"daily_limit_usd": "0.01"})
    ledger = BudgetLedger(business)
    ledger.reserve(key="a", model="gpt-5-nano", tier="nano", upper_bound_nanos=NANOS // 100)
    ledger.settle(attempt("a", NANOS // 100, model="gpt-5-nano"))
    allowed, decision = check.check_budget_before_task(
        "spent", "sentence_summary", [{"role": "user", "content": "Summarize: hello"}]
    )
    assert not allowed and decision.reason == "daily_budget_exceeded"
    status = get_budget_status("spent")
    assert status.warning_level == 100 and status.today_remaining == 0


@pytest.mark.emulator
def test_a_tier_without_full_models_cannot_reserve_one(register: Callable[..., Business]) -> None:
    business = register("small", "basic")
    with pytest.raises(BudgetDenied) as denied:
        BudgetLedger(business).reserve(key="x", model="gpt-5", tier="full", upper_bound_nanos=1)
    assert denied.value.reason == "model_tier_restricted"
    allowed, decision = check.check_budget_before_task(
        "small", "strategy_analysis", [{"role": "user", "content": "Plan."}], allow_downgrade=False
    )
    assert not allowed and decision.reason == "model_tier_restricted"
    allowed, decision = check.check_budget_before_task(
        "small", "strategy_analysis", [{"role": "user", "content": "Plan."}]
    )
    assert allowed and decision.downgraded_from == "gpt-5" and decision.model == "gpt-5-mini"


@pytest.mark.emulator
def test_the_platform_cap_protects_the_company_across_businesses(
    register: Callable[..., Business], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLATFORM_DAILY_CAP_USD", "0.03")
    get_settings.cache_clear()
    one, two = register("one", "enterprise"), register("two", "enterprise")
    BudgetLedger(one).reserve(key="1", model="gpt-5", tier="full", upper_bound_nanos=NANOS // 50)
    with pytest.raises(BudgetDenied) as denied:
        BudgetLedger(two).reserve(
            key="2", model="gpt-5", tier="full", upper_bound_nanos=NANOS // 50
        )
    assert denied.value.reason == "platform_cap_reached"


@pytest.mark.emulator
def test_the_operator_kill_switch_blocks_everything_until_lifted(
    register: Callable[..., Business],
) -> None:
    business = register()
    controls.set_paused(True, "incident 42")
    with pytest.raises(BudgetDenied) as denied:
        BudgetLedger(business).reserve(
            key="x", model="gpt-5-mini", tier="mini", upper_bound_nanos=1
        )
    assert denied.value.reason == "platform_paused" and "incident 42" in str(denied.value)
    controls.set_paused(False)
    BudgetLedger(business).reserve(key="x", model="gpt-5-mini", tier="mini", upper_bound_nanos=1)


@pytest.mark.emulator
def test_budget_status_reports_the_seed_fields(register: Callable[..., Business]) -> None:
    business = register("status", "pro")
    ledger = BudgetLedger(business, clock=Clock(NOON))
    ledger.reserve(key="a", model="gpt-5-mini", tier="mini", upper_bound_nanos=NANOS)
    # Above its reservation:
    ledger.settle(attempt("a", 12 * NANOS + NANOS // 2, model="gpt-5-mini"))
    ledger.reserve(key="b", model="gpt-5-mini", tier="mini", upper_bound_nanos=NANOS)
    status = get_budget_status("status", now=NOON)
    assert status.tier == "pro" and status.daily_limit == 50.0
    assert status.today_spent == 12.5 and status.today_reserved == 1.0
    assert status.today_remaining == 36.5 and status.percent_used == 27.0
    assert status.warning_level is None and status.monthly_limit == 1500.0
    assert status.projected_monthly == pytest.approx(12.5 * 30 / 24.5)


# --- The function's answers to bad input --------------------------------------------------------


@pytest.mark.emulator
@pytest.mark.parametrize(
    ("body", "status", "field_or_code"),
    [
        ({"business_id": "ghost", "task_type": "general", "input": "x"}, 404, "unknown_business"),
        ({"business_id": "tidewater-coffee", "task_type": "general"}, 400, "input"),
        ({"business_id": "tidewater-coffee", "input": "x"}, 400, "task_type"),
        (
            {
                "business_id": "tidewater-coffee",
                "task_type": "general",
                "input": "x",
                "amount_usd": -1,
            },
            400,
            "amount_usd",
        ),
        (
            {
                "business_id": "tidewater-coffee",
                "task_type": "general",
                "input": "x",
                "amount_usd": "ten",
            },
            400,
            "amount_usd",
        ),
        (
            {"business_id": "tidewater-coffee", "task_type": "Bad Task!", "input": "x"},
            400,
            "task_type",
        ),
    ],
)
def test_bad_budget_checks_get_a_clear_4xx_and_write_nothing(
    body: dict[str, object],
    status: int,
    field_or_code: str,
    register: Callable[..., Business],
    db: firestore.Client,
    function_client: Callable[[str], flask.testing.FlaskClient],
) -> None:
    register()
    before = document_paths(db)
    response = function_client("budget_check").post("/", json=body)
    assert response.status_code == status, response.json
    error = (response.json or {})["error"]
    assert field_or_code in (error.get("field"), error["code"])
    assert document_paths(db) == before


@pytest.mark.emulator
def test_a_business_on_an_unknown_tier_gets_a_clear_error(
    project_id: str,
    db: firestore.Client,
    function_client: Callable[[str], flask.testing.FlaskClient],
) -> None:
    db.collection("businesses").document("gilded").set({"tier": "gold"})
    body = {"business_id": "gilded", "task_type": "general", "input": "x"}
    response = function_client("budget_check").post("/", json=body)
    assert response.status_code == 409
    assert response.json is not None and response.json["error"]["code"] == "unknown_tier"
    assert "'gold'" in response.json["error"]["message"]


@pytest.mark.emulator
def test_a_backend_can_ask_whether_a_task_fits(
    register: Callable[..., Business], function_client: Callable[[str], flask.testing.FlaskClient]
) -> None:
    register("asker", "pro")
    body = {"business_id": "asker", "task_type": "strategy_analysis", "input": "Our plan..."}
    response = function_client("budget_check").post("/", json=body)
    assert response.status_code == 200
    decision = response.json or {}
    assert decision["allowed"] and decision["model"] == "gpt-5-mini"
    assert decision["downgraded_from"] == "gpt-5" and decision["today_remaining_usd"] == 50.0
    too_much = {**body, "amount_usd": 51}
    response = function_client("budget_check").post("/", json=too_much)
    assert response.status_code == 402
    assert (response.json or {})["error"]["code"] == "daily_budget_exceeded"
