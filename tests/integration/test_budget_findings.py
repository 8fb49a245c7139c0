"""Each way an adversarial test once overspent or broke the ledger, reproduced (issue 11).

1. a lower limit enforced on one shard only (tier change, override, platform cap, a stale copy
   of the business raising it again); 2. a settle after the reservation expired; 3. a settle
   crossing midnight breaking the next day; 4. a lost acknowledgement plus the client library's
   own retry; 5. contention, replays, periods of usage records, absurd limits.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from google.cloud import firestore

from common.budget import controls, counters, usage
from common.budget.check import get_budget_status
from common.budget.ledger import BudgetLedger
from common.platform.settings import Settings, get_settings
from common.platform.store import db as store_db
from common.spend.ledger import BudgetDenied
from common.tenants.businesses import Business, get_business
from tests.faults import LostAcks, lost_acks
from tests.spending import Clock, attempt

NANOS = 1_000_000_000
CENT = NANOS // 100
NOON = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def fresh(business_id: str, clock: Clock | None = None) -> BudgetLedger:
    """A ledger as a new function instance would make it: from the stored business."""
    return BudgetLedger(get_business(business_id), clock=clock or Clock(NOON))


def committed(business: Business, now: dt.datetime, kind: int = 0) -> int:
    """Spent + reserved in one of the business's scopes (0: day, 1: month, 2: platform day)."""
    scope = business.scopes(now)[kind]
    totals = counters.read([scope])[scope.name]
    return totals.spent + totals.reserved


def reserve_until_refused(ledger: BudgetLedger, amount: int, limit: int = 400) -> int:
    """Reserve `amount` again and again until refused; how many were granted."""
    for granted in range(limit):
        try:
            ledger.reserve(
                key=f"fill-{uuid.uuid4().hex}",
                model="gpt-5-mini",
                tier="mini",
                upper_bound_nanos=amount,
            )
        except BudgetDenied:
            return granted
    return limit


@pytest.fixture
def faults(db: firestore.Client) -> Iterator[LostAcks]:
    """Lost acknowledgements on the client every ledger of this test uses."""
    with lost_acks(store_db()) as injected:
        yield injected


# --- 1. Limit decreases -------------------------------------------------------------------------


@pytest.mark.emulator
def test_a_tier_downgrade_holds_on_every_shard(register: Callable[..., Business]) -> None:
    register("downgraded", "enterprise")  # 16 shards of $200/day
    ledger = fresh("downgraded")
    ledger.reserve(key="day-one", model="gpt-5-mini", tier="mini", upper_bound_nanos=NANOS)
    ledger.settle(attempt("day-one", NANOS))  # $1 spent today

    register("downgraded", "basic")  # $10/day from now on

    reserve_until_refused(fresh("downgraded"), NANOS)
    assert committed(get_business("downgraded"), NOON) <= 10 * NANOS


@pytest.mark.emulator
def test_a_lower_daily_override_holds_after_a_reservation(
    register: Callable[..., Business],
) -> None:
    register("lowered", "pro", overrides={"daily_limit_usd": "1.60"})
    fresh("lowered").reserve(key="first", model="gpt-5-mini", tier="mini", upper_bound_nanos=CENT)

    register("lowered", "pro", overrides={"daily_limit_usd": "0.80"})

    reserve_until_refused(fresh("lowered"), 5 * CENT)
    assert committed(get_business("lowered"), NOON) <= 80 * CENT


@pytest.mark.emulator
def test_a_lower_platform_cap_holds(register: Callable[..., Business]) -> None:
    register("capped-a", "enterprise")
    register("capped-b", "enterprise")
    controls.set_platform_cap("1.00")
    fresh("capped-a").reserve(key="a", model="gpt-5-mini", tier="mini", upper_bound_nanos=10 * CENT)

    controls.set_platform_cap("0.50")

    reserve_until_refused(fresh("capped-b"), 2 * CENT)
    reserve_until_refused(fresh("capped-a"), 2 * CENT)
    assert committed(get_business("capped-a"), NOON, kind=2) <= 50 * CENT


@pytest.mark.emulator
def test_a_stale_copy_of_the_business_cannot_raise_the_limit_again(
    register: Callable[..., Business],
) -> None:
    register("stale", "pro", overrides={"daily_limit_usd": "1.60"})
    stale = fresh("stale")  # read before the decrease, used after it
    stale.reserve(key="warm", model="gpt-5-mini", tier="mini", upper_bound_nanos=CENT)

    register("stale", "pro", overrides={"daily_limit_usd": "1.55"})
    reserve_until_refused(fresh("stale"), 5 * CENT)
    reserve_until_refused(stale, 5 * CENT)

    assert committed(get_business("stale"), NOON) <= 155 * CENT


# --- 2. Settles after expiry --------------------------------------------------------------------


def test_no_setting_lets_a_call_outlive_its_reservation() -> None:
    for timeout in (1.0, 60.0, 600.0):
        settings = Settings(_env_file=None, llm_timeout_seconds=timeout)
        assert settings.reservation_ttl_seconds > settings.llm_call_deadline_seconds > timeout


@pytest.mark.emulator
def test_a_settle_after_expiry_is_recorded_logged_and_bounded(
    register: Callable[..., Business], caplog: pytest.LogCaptureFixture
) -> None:
    register("frozen", "pro", overrides={"daily_limit_usd": "0.05"})
    clock = Clock(NOON)
    frozen = fresh("frozen", clock)
    frozen.reserve(key="frozen-call", model="gpt-5-mini", tier="mini", upper_bound_nanos=5 * CENT)
    # The holder freezes past its TTL; the sweep releases its hold and another call uses the room.
    clock.now = NOON + dt.timedelta(seconds=get_settings().reservation_ttl_seconds + 1)
    other = fresh("frozen", clock)
    other.reserve(key="other", model="gpt-5-mini", tier="mini", upper_bound_nanos=5 * CENT)
    other.settle(attempt("other", 5 * CENT))

    with caplog.at_level(logging.ERROR):
        frozen.settle(attempt("frozen-call", 8 * NANOS // 1000))  # it did spend $0.008

    business = get_business("frozen")
    day = business.scopes(NOON)[0]
    assert counters.read([day])[day.name].spent == 5 * CENT + 8 * NANOS // 1000  # the truth
    late = [
        fields
        for record in caplog.records
        if (fields := getattr(record, "json_fields", {})).get("event") == "usage_settled_late"
    ]
    assert len(late) == 1 and late[0]["cost_usd"] == 0.008
    # The documented bound: what a late settle overspends is at most its own reservation.
    assert committed(business, NOON) - business.limits.daily_limit_nanos <= 5 * CENT
    with pytest.raises(BudgetDenied):  # and the business is blocked for the rest of the day
        other.reserve(key="after", model="gpt-5-mini", tier="mini", upper_bound_nanos=1)


# --- 3. Midnight --------------------------------------------------------------------------------


@pytest.mark.emulator
def test_a_settle_crossing_midnight_lands_in_its_day_and_breaks_nothing(
    register: Callable[..., Business],
) -> None:
    register("night-owl", "pro")
    before = dt.datetime(2026, 11, 30, 23, 59, 50, tzinfo=dt.UTC)  # also the month's last day
    clock = Clock(before)
    ledger = fresh("night-owl", clock)
    ledger.reserve(key="late-night", model="gpt-5-mini", tier="mini", upper_bound_nanos=CENT)
    # Past midnight and past the TTL: the hold is swept, then the frozen holder settles.
    clock.now = before + dt.timedelta(seconds=get_settings().reservation_ttl_seconds + 20)
    ledger.settle(attempt("late-night", CENT // 2))

    record = usage.usage_ref("late-night").get().to_dict() or {}
    assert (record["day"], record["month"]) == ("2026-11-30", "2026-11")
    # The new day and month work: their scopes are whole and every limit is there.
    fresh("night-owl", clock).reserve(
        key="morning", model="gpt-5-mini", tier="mini", upper_bound_nanos=CENT
    )
    status = get_budget_status("night-owl", now=clock.now)
    assert status.today_reserved == 0.01 and status.month_spent == 0.0


# --- 4. Lost acknowledgements -------------------------------------------------------------------


@pytest.mark.emulator
def test_a_lost_acknowledgement_never_grants_a_full_budget(
    register: Callable[..., Business], faults: LostAcks
) -> None:
    register("flaky", "pro", overrides={"daily_limit_usd": "0.05"})
    ledger = fresh("flaky")
    ledger.reserve(key="all", model="gpt-5-mini", tier="mini", upper_bound_nanos=5 * CENT)

    faults.arm(1)  # the next reservation's commit is applied, its answer lost, and retried
    with pytest.raises(BudgetDenied):
        ledger.reserve(key="one-more", model="gpt-5-mini", tier="mini", upper_bound_nanos=CENT)

    assert faults.dropped == 1
    assert committed(get_business("flaky"), NOON) == 5 * CENT


@pytest.mark.emulator
def test_lost_acknowledgements_never_move_money_twice(
    register: Callable[..., Business], faults: LostAcks
) -> None:
    register("shaky", "enterprise", overrides={"daily_limit_usd": "0.32"})  # 16 shards of $0.02
    ledger = fresh("shaky")
    faults.arm(1000)  # every commit from now on is applied and then retried
    granted = reserve_until_refused(ledger, 3 * CENT)  # each needs headroom gathered
    for key in list(ledger._held):
        ledger.settle(attempt(key, CENT))

    business = get_business("shaky")
    day = business.scopes(NOON)[0]
    totals = counters.read([day])[day.name]
    assert faults.dropped > granted > 0
    assert totals.reserved == 0 and totals.spent == granted * CENT
    assert totals.headroom == 32 * CENT - totals.spent  # no money created, none lost


# --- 5. Lesser findings -------------------------------------------------------------------------


@pytest.mark.emulator
def test_a_hundred_first_reserves_of_a_day_get_an_answer_each(
    register: Callable[..., Business],
) -> None:
    register("rush", "pro", overrides={"daily_limit_usd": "0.50"})
    business = get_business("rush")

    def one(number: int) -> str:
        try:
            BudgetLedger(business).reserve(
                key=f"rush-{number}", model="gpt-5-mini", tier="mini", upper_bound_nanos=CENT
            )
        except BudgetDenied as denied:
            return denied.reason
        return "granted"

    with ThreadPoolExecutor(max_workers=100) as pool:
        answers = list(pool.map(one, range(100)))

    assert answers.count("granted") == 50
    assert set(answers) == {"granted", "daily_budget_exceeded"}


@pytest.mark.emulator
def test_a_reserve_replayed_after_its_settle_holds_nothing(
    register: Callable[..., Business],
) -> None:
    register("replayed", "pro")
    ledger = fresh("replayed")
    ledger.reserve(key="once", model="gpt-5-mini", tier="mini", upper_bound_nanos=CENT)
    ledger.settle(attempt("once", CENT // 2))

    with pytest.raises(BudgetDenied) as denied:
        fresh("replayed").reserve(
            key="once", model="gpt-5-mini", tier="mini", upper_bound_nanos=CENT
        )

    assert denied.value.reason == "attempt_settled"
    business = get_business("replayed")
    day = business.scopes(NOON)[0]
    assert counters.read([day])[day.name].reserved == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"daily_limit_usd": "0.0000000001"}, "daily_limit_usd"),
        ({"daily_limit_usd": "0.001"}, "daily_limit_usd"),
        ({"monthly_limit_usd": "1e30"}, "monthly_limit_usd"),
        ({"daily_limit_usd": "1000000.01"}, "daily_limit_usd"),
        ({"daily_limit_usd": "500"}, "daily_limit_usd"),  # above basic's $300 a month
    ],
)
def test_limits_are_validated_money(overrides: dict[str, str], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Business.model_validate({"business_id": "odd", "tier": "basic", "overrides": overrides})


@pytest.mark.emulator
def test_after_a_decrease_below_what_is_held_nothing_is_granted_until_it_is_repaid(
    register: Callable[..., Business],
) -> None:
    """The debt of an over-committed scope sits on every shard: money coming back to one shard
    cannot be granted again while the scope as a whole is still over its limit."""
    register("overheld", "enterprise", overrides={"daily_limit_usd": "0.50"})  # 16 shards
    ledger = fresh("overheld")
    keys = [f"held-{n}" for n in range(10)]
    for key in keys:
        ledger.reserve(key=key, model="gpt-5-mini", tier="mini", upper_bound_nanos=4 * CENT)
    register("overheld", "enterprise", overrides={"daily_limit_usd": "0.20"})  # $0.40 held

    for key in keys[:5]:
        ledger.settle(attempt(key, 0))  # $0.20 comes back: committed is exactly the limit now
    for n in range(40):  # each lands on a random shard; some of them got money back
        with pytest.raises(BudgetDenied):
            fresh("overheld").reserve(
                key=f"try-{n}", model="gpt-5-mini", tier="mini", upper_bound_nanos=1
            )

    ledger.settle(attempt(keys[5], 0))  # $0.04 below the limit: that much may be granted
    fresh("overheld").reserve(
        key="more", model="gpt-5-mini", tier="mini", upper_bound_nanos=4 * CENT
    )
    assert committed(get_business("overheld"), NOON) == 20 * CENT


@pytest.mark.emulator
def test_each_limit_change_shows_in_the_budget_status(register: Callable[..., Business]) -> None:
    now = dt.datetime.now(dt.UTC)
    register("watched", "pro", overrides={"daily_limit_usd": "2"})
    fresh("watched", Clock(now)).reserve(
        key="first", model="gpt-5-mini", tier="mini", upper_bound_nanos=CENT
    )

    register("watched", "pro", overrides={"daily_limit_usd": "1.25"})

    status = get_budget_status("watched", now=now)
    assert status.daily_limit == 1.25
    assert [(c.from_usd, c.to_usd) for c in status.limit_changes] == [(2.0, 1.25)]
    assert status.limit_changes[0].period.endswith(now.strftime("%Y-%m-%d"))
