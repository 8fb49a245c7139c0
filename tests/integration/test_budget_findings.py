"""Each way an adversarial test once overspent or broke the ledger, reproduced.

Issue 11: 1. a lower limit not applied everywhere (tier change, override, platform cap, a stale
copy of the business); 2. a settle after the reservation expired; 3. a settle crossing midnight;
4. a lost acknowledgement plus the client library's own retry; 5. contention, replays, absurd
limits. Issue 24: clock skew, a business named `platform`, a limit change that reaches instances
only partly, a lower cap by setting, a settle after the TTL, a vanished or frozen holder stalling
others, settles for keys never reserved or of another business, a tier downgrade mid-phase.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from google.cloud import firestore

from common.budget import blocks
from common.budget.escrow import escrow
from common.budget.ledger import BudgetLedger, UnknownAttempt
from common.budget.operator import set_platform_cap
from common.budget.periods import day_key, scope_name
from common.budget.status import get_budget_status
from common.platform.settings import get_settings
from common.platform.store import db as store_db
from common.spend.ledger import BudgetBusy, BudgetDenied
from common.tenants.businesses import Business, get_business
from tests.budget import charged, period, settle_all, short_blocks, shows_the_fresh_status
from tests.faults import LostAcks, lost_acks
from tests.spending import Clock, attempt

NANOS = 1_000_000_000
CENT = NANOS // 100


@pytest.fixture(autouse=True)
def _fresh_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every reservation reads the business and the controls (the propagation time is 0)."""
    monkeypatch.setenv("BUDGET_CACHE_SECONDS", "0")
    get_settings.cache_clear()


def today() -> str:
    return day_key(dt.datetime.now(dt.UTC))


def fresh(business_id: str, clock: Clock | None = None) -> BudgetLedger:
    """A ledger as a new function instance would make it: from the stored business."""
    return BudgetLedger(get_business(business_id), clock=clock)


def committed(business_id: str, key: str | None = None) -> int:
    """Spent + held (in blocks) in a business's day (or `key`'s period)."""
    found = period(business_id, key or today())
    return found.spent + found.allocated


def platform_given(day: str) -> int:
    """What the platform's shards have given out for `day` (every business together)."""
    from common.budget import platform

    return sum(
        shard.allotted for shard in platform.read(day, list(range(platform.count()))).values()
    )


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
        except (BudgetDenied, BudgetBusy):
            return granted
    return limit


@pytest.fixture
def faults(db: firestore.Client) -> Iterator[LostAcks]:
    """Lost acknowledgements on the client every ledger of this test uses."""
    with lost_acks(store_db()) as injected:
        yield injected


# --- Limit decreases ----------------------------------------------------------------------------


@pytest.mark.emulator
def test_a_tier_downgrade_holds_everywhere(register: Callable[..., Business]) -> None:
    register("downgraded", "enterprise")
    ledger = fresh("downgraded")
    ledger.reserve(key="day-one", model="gpt-5-mini", tier="mini", upper_bound_nanos=NANOS)
    ledger.settle(attempt("day-one", NANOS))  # $1 spent today

    register("downgraded", "basic")  # $10/day from now on

    reserve_until_refused(fresh("downgraded"), NANOS)
    reserve_until_refused(ledger, NANOS)  # the ledger made before the change, too
    assert committed("downgraded") <= 10 * NANOS


@pytest.mark.emulator
def test_a_lower_daily_override_holds_after_a_reservation(
    register: Callable[..., Business],
) -> None:
    register("lowered", "pro", overrides={"daily_limit_usd": "1.60"})
    fresh("lowered").reserve(key="first", model="gpt-5-mini", tier="mini", upper_bound_nanos=CENT)

    register("lowered", "pro", overrides={"daily_limit_usd": "0.80"})

    reserve_until_refused(fresh("lowered"), 5 * CENT)
    assert committed("lowered") <= 80 * CENT


@pytest.mark.emulator
def test_a_lower_platform_cap_holds(register: Callable[..., Business]) -> None:
    register("capped-a", "enterprise")
    register("capped-b", "enterprise")
    set_platform_cap("1.00")
    fresh("capped-a").reserve(key="a", model="gpt-5-mini", tier="mini", upper_bound_nanos=10 * CENT)

    set_platform_cap("0.50")

    reserve_until_refused(fresh("capped-b"), 2 * CENT)
    reserve_until_refused(fresh("capped-a"), 2 * CENT)
    settle_all()
    assert committed("capped-a") + committed("capped-b") <= 50 * CENT


@pytest.mark.emulator
def test_a_lower_cap_by_setting_holds_without_an_operator(
    register: Callable[..., Business], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 4 of issue 24: lowering PLATFORM_DAILY_CAP_USD changes no version; the shards
    and the days' shares record the cap they were taken under and give back under a lower one."""
    register("set-a", "enterprise")
    register("set-b", "enterprise")
    monkeypatch.setenv("PLATFORM_DAILY_CAP_USD", "1.00")
    get_settings.cache_clear()
    fresh("set-a").reserve(key="a", model="gpt-5-mini", tier="mini", upper_bound_nanos=10 * CENT)
    settle_all()

    monkeypatch.setenv("PLATFORM_DAILY_CAP_USD", "0.50")  # a new revision's setting
    get_settings.cache_clear()

    granted = reserve_until_refused(fresh("set-b"), 2 * CENT)
    granted += reserve_until_refused(fresh("set-a"), 2 * CENT)
    settle_all()
    assert granted == 20  # 50 cents: the first 10-cent hold and twenty of 2
    assert committed("set-a") + committed("set-b") == 50 * CENT
    assert platform_given(today()) <= 50 * CENT


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

    assert committed("stale") <= 155 * CENT


@pytest.mark.emulator
def test_a_limit_change_needs_no_second_step_to_reach_every_instance(
    register: Callable[..., Business], db: firestore.Client
) -> None:
    """Finding 3 of issue 24: registering was two steps (the business, then syncing open
    periods), and a process killed between them left ledgers on the old, higher limit. Now the
    business document is the only step: every take reads it, and every ledger re-reads it within
    `budget_cache_seconds` (here 0)."""
    register("two-step", "pro", overrides={"daily_limit_usd": "1.00"})
    ledger = fresh("two-step")
    ledger.reserve(key="warm", model="gpt-5-mini", tier="mini", upper_bound_nanos=CENT)
    # The change as a killed `register` would have left it: the business document alone.
    db.collection("businesses").document("two-step").update(
        {"overrides": {"daily_limit_usd": "0.50"}, "limits_version": firestore.Increment(1)}
    )
    reserve_until_refused(ledger, 2 * CENT)
    settle_all()
    assert committed("two-step") <= 50 * CENT


# --- Holds that outlive their calls, midnight ---------------------------------------------------


@pytest.mark.emulator
def test_a_settle_after_the_ttl_never_spends_above_the_limit(
    register: Callable[..., Business],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Finding 5 of issue 24 (decision 006's documented overspend before): the hold of a holder
    frozen past its block's TTL stays counted at its upper bound, so the others can only use
    what is left; its late settle records the truth and gives the difference back."""
    with short_blocks(monkeypatch) as expiry:
        register("frozen", "pro", overrides={"daily_limit_usd": "0.05"})
        frozen = fresh("frozen")
        frozen.reserve(
            key="frozen-call", model="gpt-5-mini", tier="mini", upper_bound_nanos=3 * CENT
        )
        escrow.release()  # what the frozen process's block did not hold goes back
        time.sleep(expiry)
        other = fresh("frozen")
        granted = reserve_until_refused(other, CENT)  # reconciles the frozen block first
        assert granted == 2
        for key in list(other._held):
            other.settle(attempt(key, CENT))
        assert committed("frozen") <= 5 * CENT

        with caplog.at_level(logging.ERROR):
            frozen.settle(attempt("frozen-call", 8 * NANOS // 1000))  # it did spend $0.008
        # The owner's screen shows the money the late settle gave back now, not at the
        # business's next take, flush or close.
        shows_the_fresh_status(store_db(), "frozen")

        settle_all()
        day = period("frozen", today())
        assert day.spent == 2 * CENT + 8 * NANOS // 1000 == charged("frozen", today())
        assert day.spent <= 5 * CENT  # zero overspend, not a bound
        late = [
            fields
            for record in caplog.records
            if (fields := getattr(record, "json_fields", {})).get("event") == "usage_settled_late"
        ]
        assert late and late[0]["cost_usd"] == 0.008


@pytest.mark.emulator
def test_a_hold_that_outlives_its_block_is_reconciled_by_its_own_process_and_shown(
    register: Callable[..., Business], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call slower than its block (or settled by another process): this process's
    housekeeping closes the block from its records, charging the hold its bound, and the
    published status shows it at once."""
    with short_blocks(monkeypatch) as expiry:
        register("slow-call", "pro", overrides={"daily_limit_usd": "1"})
        ledger = fresh("slow-call")
        ledger.reserve(key="slow-call-1", model="gpt-5-mini", tier="mini", upper_bound_nanos=CENT)
        time.sleep(expiry)
        escrow.tidy()

        # The housekeeping thread may have been the one to reconcile it, a moment later.
        deadline = time.monotonic() + 10
        while True:
            try:
                day = period("slow-call", today())
                assert not day.blocks and day.allocated == 0
                assert day.spent == CENT == charged("slow-call", today())  # at its bound
                shows_the_fresh_status(store_db(), "slow-call")
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


@pytest.mark.emulator
def test_a_settle_crossing_midnight_lands_in_its_day_and_breaks_nothing(
    register: Callable[..., Business],
) -> None:
    register("night-owl", "pro")
    before = dt.datetime(2026, 11, 30, 23, 59, 59, tzinfo=dt.UTC)  # also the month's last day
    clock = Clock(before)
    ledger = fresh("night-owl", clock)
    ledger.reserve(key="late-night", model="gpt-5-mini", tier="mini", upper_bound_nanos=CENT)
    clock.now = before + dt.timedelta(seconds=2)  # past midnight when it settles
    ledger.settle(attempt("late-night", CENT // 2))
    ledger.reserve(key="morning", model="gpt-5-mini", tier="mini", upper_bound_nanos=CENT)
    settle_all()

    record = store_db().collection("usage").document("late-night").get().to_dict() or {}
    assert (record["day"], record["month"]) == ("2026-11-30", "2026-11")
    assert period("night-owl", "2026-11-30").spent == CENT // 2 == charged("night-owl", "2026-11")
    status = get_budget_status("night-owl", now=clock.now)
    assert status.today_reserved == 0.01 and status.month_spent == 0.0


@pytest.mark.emulator
def test_instance_clocks_minutes_apart_never_spend_a_day_twice(
    register: Callable[..., Business],
) -> None:
    """Finding 1 of issue 24: a hold's expiry came from the caller's clock, so an instance
    minutes ahead released others' live holds. Expiry now is the database's alone: a block
    reconciled by a caller whose clock is far ahead is still live, and two ledgers minutes apart
    share one day's limit exactly."""
    register("skewed", "pro", overrides={"daily_limit_usd": "0.05"})
    now = dt.datetime.now(dt.UTC).replace(hour=12)
    ahead = fresh("skewed", Clock(now + dt.timedelta(minutes=3)))
    behind = fresh("skewed", Clock(now - dt.timedelta(minutes=3)))
    ahead.reserve(key="a", model="gpt-5-mini", tier="mini", upper_bound_nanos=5 * CENT)
    with pytest.raises((BudgetDenied, BudgetBusy)):
        behind.reserve(key="b", model="gpt-5-mini", tier="mini", upper_bound_nanos=5 * CENT)
    day = period("skewed", day_key(now))
    assert not any(blocks.reconcile(block_id) for block_id in day.blocks)  # all live
    ahead.settle(attempt("a", 5 * CENT))
    with pytest.raises(BudgetDenied):
        behind.reserve(key="b", model="gpt-5-mini", tier="mini", upper_bound_nanos=CENT)
    settle_all()
    assert period("skewed", day_key(now)).spent == 5 * CENT


# --- Lost acknowledgements ----------------------------------------------------------------------


@pytest.mark.emulator
def test_a_lost_acknowledgement_never_grants_a_full_budget(
    register: Callable[..., Business], faults: LostAcks
) -> None:
    register("flaky", "pro", overrides={"daily_limit_usd": "0.05"})
    ledger = fresh("flaky")
    ledger.reserve(key="all", model="gpt-5-mini", tier="mini", upper_bound_nanos=5 * CENT)

    faults.arm(1)  # the next commit is applied, its answer lost, and retried
    with pytest.raises(BudgetBusy):  # all of it is held by the call in flight
        ledger.reserve(key="one-more", model="gpt-5-mini", tier="mini", upper_bound_nanos=CENT)

    settle_all()
    assert committed("flaky") == 5 * CENT


@pytest.mark.emulator
def test_lost_acknowledgements_never_move_money_twice(
    register: Callable[..., Business], faults: LostAcks
) -> None:
    register("shaky", "pro", overrides={"daily_limit_usd": "0.32"})
    ledger = fresh("shaky")
    faults.arm(1000)  # every commit and batch write from now on is applied and then retried
    granted = reserve_until_refused(ledger, 3 * CENT)
    for key in list(ledger._held):
        ledger.settle(attempt(key, CENT))
    settle_all()

    day = period("shaky", today())
    assert faults.dropped > granted > 0
    assert day.allocated == 0 and day.spent == granted * CENT == charged("shaky", today())


# --- Lesser findings ----------------------------------------------------------------------------


@pytest.mark.emulator
def test_a_hundred_first_reserves_of_a_day_get_an_answer_each(
    register: Callable[..., Business], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fifty granted never settle here: the others wait a moment for them, then answer.
    monkeypatch.setenv("BUDGET_WAIT_SECONDS", "0.5")
    get_settings.cache_clear()
    register("rush", "pro", overrides={"daily_limit_usd": "0.50"})
    business = get_business("rush")

    def one(number: int) -> str:
        try:
            BudgetLedger(business).reserve(
                key=f"rush-{number}", model="gpt-5-mini", tier="mini", upper_bound_nanos=CENT
            )
        except (BudgetDenied, BudgetBusy) as refused:
            return refused.reason
        return "granted"

    with ThreadPoolExecutor(max_workers=100) as pool:
        answers = list(pool.map(one, range(100)))

    assert answers.count("granted") == 50
    assert set(answers) == {"granted", "budget_held"}  # room only if calls in flight settle low


@pytest.mark.emulator
def test_a_reserve_replayed_after_its_settle_holds_nothing(
    register: Callable[..., Business],
) -> None:
    register("replayed", "pro")
    ledger = fresh("replayed")
    ledger.reserve(key="once", model="gpt-5-mini", tier="mini", upper_bound_nanos=CENT)
    ledger.settle(attempt("once", CENT // 2))

    # Replayed from the block the call used, then (its blocks given back) from a new block,
    # whose commit would carry the hold: that commit fails on the existing record, the block
    # is taken without it, and the hold is refused on its own.
    for _ in ("same block", "new block"):
        with pytest.raises(BudgetDenied) as denied:
            fresh("replayed").reserve(
                key="once", model="gpt-5-mini", tier="mini", upper_bound_nanos=CENT
            )
        assert denied.value.reason == "attempt_settled"
        settle_all()
        assert period("replayed", today()).allocated == 0
    assert period("replayed", today()).spent == CENT // 2 == charged("replayed", today())


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
    register("overheld", "enterprise", overrides={"daily_limit_usd": "0.50"})
    ledger = fresh("overheld")
    keys = [f"held-{n}" for n in range(10)]
    for key in keys:
        ledger.reserve(key=key, model="gpt-5-mini", tier="mini", upper_bound_nanos=4 * CENT)
    register("overheld", "enterprise", overrides={"daily_limit_usd": "0.20"})  # $0.40 held

    for key in keys[:5]:
        ledger.settle(attempt(key, 0))  # $0.20 comes back: committed is exactly the limit now
    settle_all()
    for n in range(5):
        with pytest.raises(BudgetBusy):  # only the calls in flight could make room
            fresh("overheld").reserve(
                key=f"try-{n}", model="gpt-5-mini", tier="mini", upper_bound_nanos=1
            )

    ledger.settle(attempt(keys[5], 0))  # $0.04 below the limit: that much may be granted
    settle_all()
    fresh("overheld").reserve(
        key="more", model="gpt-5-mini", tier="mini", upper_bound_nanos=4 * CENT
    )
    settle_all()
    assert committed("overheld") == 20 * CENT


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


# --- Issue 24's findings ------------------------------------------------------------------------


@pytest.mark.emulator
def test_a_business_named_platform_cannot_touch_the_platform_cap(
    register: Callable[..., Business], db: firestore.Client
) -> None:
    """Finding 2 of issue 24: a business `platform` had the platform day's own scope name, so its
    $1,000 override raised the cap and its takes landed twice on one shard."""
    register(
        "platform", "enterprise", overrides={"daily_limit_usd": "1000", "monthly_limit_usd": "1000"}
    )
    register("other", "enterprise")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PLATFORM_DAILY_CAP_USD", "0.10")
        get_settings.cache_clear()
        granted = reserve_until_refused(fresh("platform"), 2 * CENT)
        granted += reserve_until_refused(fresh("other"), 2 * CENT)
        settle_all()
        get_settings.cache_clear()
    assert granted == 5  # the platform's cap, not the business's $1,000
    names = {snapshot.id for snapshot in db.collection("budget_scopes").stream()}
    assert scope_name("platform", today()) in names
    assert all(name.startswith(("business:", "platform:")) for name in names)
    assert not any(name.startswith(f"platform:{today()}") and "#" not in name for name in names)


@pytest.mark.emulator
def test_a_settle_for_a_key_never_reserved_is_refused_and_records_nothing(
    register: Callable[..., Business], db: firestore.Client
) -> None:
    """Finding 7 of issue 24: it was charged with no limit check."""
    register("careless", "pro")
    with pytest.raises(UnknownAttempt):
        fresh("careless").settle(attempt("never-reserved", CENT))
    assert not db.collection("usage").document("never-reserved").get().exists
    assert committed("careless") == 0


@pytest.mark.emulator
def test_a_settle_through_another_business_ledger_is_refused(
    register: Callable[..., Business], db: firestore.Client
) -> None:
    """Finding 7 of issue 24: it charged the first business's counters and filed the record
    under the second."""
    register("owner-biz", "pro")
    register("intruder", "pro")
    fresh("owner-biz").reserve(
        key="theirs", model="gpt-5-mini", tier="mini", upper_bound_nanos=CENT
    )
    with pytest.raises(UnknownAttempt):
        fresh("intruder").settle(attempt("theirs", CENT))
    record = db.collection("usage").document("theirs").get().to_dict() or {}
    assert record["business_id"] == "owner-biz" and record["state"] == "held"
    settle_all()
    assert committed("intruder") == 0


@pytest.mark.emulator
def test_a_tier_downgrade_reaches_a_phase_holding_the_old_business(
    register: Callable[..., Business],
) -> None:
    """Finding 7 of issue 24: a phase holding the old business copy still made one full-model
    call after a downgrade. The tier is checked against the business as re-read within
    `budget_cache_seconds` (0 here), not the copy the ledger was made with."""
    register("demoted", "enterprise")
    phase_copy = fresh("demoted")  # the phase's ledger, made before the change
    phase_copy.reserve(key="full-1", model="gpt-5", tier="full", upper_bound_nanos=CENT)
    register("demoted", "basic")
    with pytest.raises(BudgetDenied) as denied:
        phase_copy.reserve(key="full-2", model="gpt-5", tier="full", upper_bound_nanos=CENT)
    assert denied.value.reason == "model_tier_restricted"


@pytest.mark.emulator
def test_a_settle_above_its_reservation_is_taken_from_the_block(
    register: Callable[..., Business],
) -> None:
    """A call billed above its upper bound (a price the catalogue did not know): the money was
    spent, so it is recorded; the excess comes out of the block's own headroom, so the limit is
    not exceeded while the block had room for it."""
    register("surprise", "pro", overrides={"daily_limit_usd": "1.00"})
    ledger = fresh("surprise")
    ledger.reserve(key="cheap", model="gpt-5-mini", tier="mini", upper_bound_nanos=CENT)
    ledger.settle(attempt("cheap", 5 * CENT))  # five times its bound
    granted = reserve_until_refused(ledger, 5 * CENT)
    for key in list(ledger._held):
        ledger.settle(attempt(key, 5 * CENT))
    settle_all()
    day = period("surprise", today())
    assert day.spent == 5 * CENT * (granted + 1) == charged("surprise", today())
    assert day.spent <= 100 * CENT
