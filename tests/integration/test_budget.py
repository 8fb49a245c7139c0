"""Budget enforcement on the emulator: no overspend under concurrency, exactly-once settles,
vanished holders, period resets, warnings, gating and the kill switch."""

from __future__ import annotations

import datetime as dt
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import flask.testing
import pytest
from google.cloud import firestore

from common.budget import check, usage
from common.budget.ledger import BudgetLedger
from common.budget.operator import set_paused, set_platform_cap
from common.budget.periods import day_key, month_key
from common.budget.status import ALERTS, get_budget_status
from common.platform.settings import get_settings
from common.runs import documents, events
from common.runs.events import record_warning
from common.spend.ledger import BudgetBusy, BudgetDenied
from common.tenants.businesses import Business
from tests.budget import charged, period, settle_all, short_blocks
from tests.integration.conftest import document_paths
from tests.spending import Clock, attempt

NANOS = 1_000_000_000
MILLI = NANOS // 1000  # a tenth of a cent
NOON = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _fresh_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every reservation reads the business and the controls (no reuse of an earlier read)."""
    monkeypatch.setenv("BUDGET_CACHE_SECONDS", "0")
    get_settings.cache_clear()


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
        except (BudgetDenied, BudgetBusy) as refused:
            # Busy: there would be room if calls in flight settle below their bounds.
            with lock:
                outcomes.append(("denied", refused.reason))
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
    assert {reason for _, reason in denied} <= {"daily_budget_exceeded", "budget_held"}
    settle_all()
    today = day_key(dt.datetime.now(dt.UTC))
    day = period("busy-shop", today)
    assert day.spent <= business.limits.daily_limit_nanos  # zero overspend, to the nano
    assert day.allocated == 0 and not day.blocks  # nothing left held
    assert charged("busy-shop", today) == day.spent  # every settled cost has its record


@pytest.mark.emulator
def test_a_settle_delivered_three_times_is_counted_once(
    register: Callable[..., Business], new_run: Callable[..., str]
) -> None:
    run_id = new_run(start=True)
    business = register()
    ledger = BudgetLedger(business, run_id=run_id, phase="research")
    ledger.reserve(key="k1", model="gpt-5-mini", tier="mini", upper_bound_nanos=5_000_000)
    record = attempt("k1", 1_234_567)
    for _ in range(3):
        ledger.settle(record)
    BudgetLedger(business).settle(record)  # another ledger, too
    settle_all()
    day = period(business.business_id, day_key(dt.datetime.now(dt.UTC)))
    assert day.spent == 1_234_567 and day.allocated == 0
    assert usage.run_totals(run_id).cost_by_phase == {"research": 1_234_567}


@pytest.mark.emulator
def test_a_vanished_holder_is_charged_its_bound_until_it_settles(
    register: Callable[..., Business], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hold whose process stops answering keeps its money counted (the call may have been
    billed); once its block expires by the database's clock, whoever needs room closes it from
    its records; a late settle turns the bound into the actual cost, once."""
    with short_blocks(monkeypatch) as expiry:
        business = register("crashy", "basic", overrides={"daily_limit_usd": "0.02"})
        ledger = BudgetLedger(business)
        ledger.reserve(key="orphan", model="gpt-5-mini", tier="mini", upper_bound_nanos=15 * MILLI)
        with pytest.raises(BudgetBusy) as busy:  # the orphan holds most of the budget
            ledger.reserve(
                key="next", model="gpt-5-mini", tier="mini", upper_bound_nanos=10 * MILLI
            )
        assert busy.value.reason == "budget_held" and "held by work in flight" in str(busy.value)
        time.sleep(expiry)
        # Still refused: the orphan's block is closed from its records, the hold charged at
        # its bound, and only what the block did not use comes back.
        with pytest.raises(BudgetDenied):
            ledger.reserve(
                key="next", model="gpt-5-mini", tier="mini", upper_bound_nanos=10 * MILLI
            )
        today = day_key(dt.datetime.now(dt.UTC))
        assert period("crashy", today).spent == 15_000_000 == charged("crashy", today)
        # The late settle records what the call really cost, and the difference comes back.
        ledger.settle(attempt("orphan", 3_000_000))
        ledger.settle(attempt("orphan", 3_000_000))
        assert period("crashy", today).spent == 3_000_000 == charged("crashy", today)
        ledger.reserve(key="next", model="gpt-5-mini", tier="mini", upper_bound_nanos=10_000_000)


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
    monkeypatch.setenv("BUDGET_FLUSH_PERCENT", "1")
    get_settings.cache_clear()
    run_id = new_run()
    business = register(overrides={"daily_limit_usd": "1"})
    now = dt.datetime.now(dt.UTC)
    today, tomorrow = day_key(now), day_key(now + dt.timedelta(days=1))
    clock = Clock(now)
    ledger = BudgetLedger(
        business,
        run_id=run_id,
        phase="research",
        clock=clock,
        on_warning=lambda warning: record_warning(run_id, warning, "research"),
    )

    def spend(key: str, usd: float) -> None:
        ledger.reserve(
            key=key, model="gpt-5-mini", tier="mini", upper_bound_nanos=round(usd * NANOS)
        )
        ledger.settle(attempt(key, round(usd * NANOS)))
        ledger.close()  # the end of a request: the block's spending reaches the day

    spend("a", 0.80)  # crosses 75%
    spend("b", 0.05)  # still between 75% and 90%: nothing new
    spend("c", 0.10)  # crosses 90%
    alerts = {snap.id for snap in db.collection(ALERTS).stream()}
    assert alerts == {f"business:tidewater-coffee:{today}:{level}" for level in (75, 90)}
    warnings = [e for e in events.events(run_id) if e["type"] == "budget_warning"]
    assert [e["data"]["level"] for e in warnings] == [75, 90]
    assert len(documents.get_run(run_id).warnings) == 2
    status = get_budget_status("tidewater-coffee")
    assert status.warning_level == 90
    published = db.collection("budget_status").document("tidewater-coffee").get().to_dict()
    assert published is not None and published["today_spent"] == pytest.approx(0.95)

    clock.now = now + dt.timedelta(days=1)  # a new day: quiet until crossed again
    spend("d", 0.10)
    assert len(list(db.collection(ALERTS).stream())) == 2
    spend("e", 0.70)
    alerts = {s.id for s in db.collection(ALERTS).stream()}
    assert f"business:tidewater-coffee:{tomorrow}:75" in alerts


@pytest.mark.emulator
def test_at_100_percent_every_new_task_is_blocked(register: Callable[..., Business]) -> None:
    business = register("spent", "basic", overrides={"daily_limit_usd": "0.01"})
    ledger = BudgetLedger(business)
    ledger.reserve(key="a", model="gpt-5-nano", tier="nano", upper_bound_nanos=NANOS // 100)
    ledger.settle(attempt("a", NANOS // 100, model="gpt-5-nano"))
    ledger.close()
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
def test_a_lower_platform_cap_takes_back_what_days_hold_of_the_old_one(
    register: Callable[..., Business],
) -> None:
    one = register("one", "enterprise")
    ledger = BudgetLedger(one)
    ledger.reserve(key="1", model="gpt-5", tier="full", upper_bound_nanos=NANOS // 50)
    set_platform_cap("0.03")
    with pytest.raises(BudgetDenied) as denied:
        ledger.reserve(key="2", model="gpt-5", tier="full", upper_bound_nanos=NANOS // 50)
    assert denied.value.reason == "platform_cap_reached"
    ledger.settle(attempt("1", NANOS // 100))  # the first call cost half its bound
    ledger.reserve(key="2", model="gpt-5", tier="full", upper_bound_nanos=NANOS // 50)


@pytest.mark.emulator
def test_the_operator_kill_switch_blocks_everything_until_lifted(
    register: Callable[..., Business],
) -> None:
    business = register()
    BudgetLedger(business).reserve(key="w", model="gpt-5-mini", tier="mini", upper_bound_nanos=1)
    set_paused(True, "incident 42")
    with pytest.raises(BudgetDenied) as denied:
        BudgetLedger(business).reserve(
            key="x", model="gpt-5-mini", tier="mini", upper_bound_nanos=1
        )
    assert denied.value.reason == "platform_paused" and "incident 42" in str(denied.value)
    set_paused(False)
    BudgetLedger(business).reserve(key="x", model="gpt-5-mini", tier="mini", upper_bound_nanos=1)


@pytest.mark.emulator
def test_budget_status_reports_the_seed_fields(register: Callable[..., Business]) -> None:
    business = register("status", "pro")
    now = dt.datetime.now(dt.UTC)
    ledger = BudgetLedger(business, clock=Clock(now))
    ledger.reserve(key="a", model="gpt-5-mini", tier="mini", upper_bound_nanos=NANOS)
    # Above its reservation:
    ledger.settle(attempt("a", 12 * NANOS + NANOS // 2, model="gpt-5-mini"))
    ledger.reserve(key="b", model="gpt-5-mini", tier="mini", upper_bound_nanos=NANOS)
    ledger.close()  # what blocks hold beyond the calls in flight goes back
    status = get_budget_status("status", now=now)
    assert status.tier == "pro" and status.daily_limit == 50.0
    assert status.today_spent == 12.5 and status.today_reserved == 1.0
    assert status.today_remaining == 36.5 and status.percent_used == 27.0
    assert status.warning_level is None and status.monthly_limit == 1500.0
    assert status.month_spent == period("status", month_key(now)).spent / NANOS == 12.5


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


def test_parallel_calls_near_the_limit_wait_for_each_other_instead_of_failing(
    register: Callable[..., Business],
) -> None:
    # $1.00 a day: two calls whose bounds are $0.60 each cannot be held at once, but the first
    # costs $0.05, so the second fits once it has settled.
    business = register("near", overrides={"daily_limit_usd": "1.00"})
    first, second = BudgetLedger(business), BudgetLedger(business)
    first.reserve(key="first", model="gpt-5-mini", tier="mini", upper_bound_nanos=600_000_000)

    # The same thread asking for more cannot wait for its own call: held, at once.
    with pytest.raises(BudgetBusy) as held:
        first.reserve(key="again", model="gpt-5-mini", tier="mini", upper_bound_nanos=600_000_000)
    assert held.value.reason == "budget_held"

    outcome: list[str] = []
    started = threading.Event()

    def parallel() -> None:
        started.set()
        try:
            second.reserve(
                key="second", model="gpt-5-mini", tier="mini", upper_bound_nanos=600_000_000
            )
            second.settle(attempt("second", 50_000_000))
            outcome.append("granted")
        except (BudgetBusy, BudgetDenied) as refused:
            outcome.append(refused.reason)

    worker = threading.Thread(target=parallel)
    worker.start()
    started.wait()
    # It waits for the call in flight rather than failing its phase: seen in its stack.
    for _ in range(500):
        frame = sys._current_frames().get(worker.ident or 0)
        names = []
        while frame is not None:
            names.append(frame.f_code.co_name)
            frame = frame.f_back
        if "_await_own" in names or outcome:
            break
        time.sleep(0.02)
    assert not outcome and "_await_own" in names
    first.settle(attempt("first", 50_000_000))
    worker.join(timeout=30)
    assert outcome == ["granted"]
    first.close()
    second.close()
    assert charged("near", day_key(dt.datetime.now(dt.UTC))) == 100_000_000
