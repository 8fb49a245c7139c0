"""The ledger against a small reference model, through random interleavings (issues 11, 24).

A hypothesis state machine drives the real ledger and its escrow blocks on the Firestore
emulator -- reserve (from a fresh copy of the business and from a stale one), settle (also above
the hold), settle again, raise and lower the limits, change the tier and the platform cap, pause
and resume, give blocks back (the end of a request), jump the clock across midnight and month
end, lose the acknowledgement of the next commit or batch write -- and checks after every step
against a model that knows only the rules:

- a reservation is granted only if every limit (the business's day and month, the platform's
  day) had room for it at that moment, under the limits then in force, and only while not
  paused; it is refused only with a reason: no room, or room only once calls in flight settle
  (`budget_held`) -- never while the model has room for it (idle money in this process's
  blocks is given back first);
- once the process gives its idle blocks back, what each period says is spent and held is
  exactly what the model holds, to the nano;
- the usage records of each day and month add up to its spending; each key is charged once.

(Blocks expiring by the database's clock cannot be sped up here: tests/integration/
test_budget_processes.py and the findings cover vanished and frozen holders.)
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter
from hypothesis import HealthCheck, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from common.budget.blocks import USAGE
from common.budget.escrow import escrow
from common.budget.ledger import BudgetLedger
from common.budget.operator import set_paused, set_platform_cap
from common.budget.periods import day_key, month_key
from common.budget.usage import CHARGED
from common.money import nanos
from common.platform.settings import get_settings
from common.platform.store import db
from common.spend.ledger import BudgetBusy, BudgetDenied
from common.tenants.businesses import Business, get_business, save_business
from tests.budget import period
from tests.faults import LostAcks, lost_acks
from tests.spending import attempt

CENT = nanos("0.01")
# Each action as often as it appears: mostly money moving, now and then the world changing.
ACTIONS = (
    ["reserve"] * 6
    + ["settle"] * 4
    + ["settle_again", "change_tier", "change_cap", "pause", "keep_a_stale_copy", "give_back"]
    + ["advance"] * 2
    + ["change_limits"] * 2
)
BUSINESS = "model-shop"


@dataclass
class Hold:
    amount: int
    scopes: tuple[str, str, str]


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


class LedgerMachine(RuleBasedStateMachine):
    """The real ledger (see the module docstring) and its model."""

    def __init__(self) -> None:
        super().__init__()
        self.project = f"model-{uuid.uuid4().hex[:10]}"
        self._env = pytest.MonkeyPatch()
        self._env.setenv("GOOGLE_CLOUD_PROJECT", self.project)
        self._env.setenv("BUDGET_CACHE_SECONDS", "0")
        get_settings.cache_clear()
        self._faults_cm = lost_acks(db())
        self.faults: LostAcks = self._faults_cm.__enter__()
        # Late in a real day (the changes reach every period from yesterday on), a minute before
        # midnight.
        today = dt.datetime.now(dt.UTC).replace(hour=23, minute=59, second=0, microsecond=0)
        self.clock = Clock(today)
        self.limit: dict[str, int] = {}  # what the model says each kind's limit is now
        self.tier = "pro"
        self.daily, self.monthly, self.cap = 50 * CENT, 100 * CENT, 80 * CENT
        self.paused = False
        self.live: dict[str, Hold] = {}
        self.settled: dict[str, int] = {}
        self.reserved: dict[str, int] = {}
        self.spent: dict[str, int] = {}
        self.stale: BudgetLedger | None = None
        self.made = 0

    def teardown(self) -> None:
        self._faults_cm.__exit__(None, None, None)
        self._env.undo()
        get_settings.cache_clear()

    # --- the world ---------------------------------------------------------------------------

    def _save(self) -> None:
        save_business(
            Business(
                business_id=BUSINESS,
                tier=self.tier,
                overrides={
                    "daily_limit_usd": Decimal(self.daily) / 10**9,
                    "monthly_limit_usd": Decimal(self.monthly) / 10**9,
                },
            )
        )

    def _scopes(self) -> tuple[str, str, str]:
        now = self.clock.now
        return (day_key(now), month_key(now), f"platform:{day_key(now)}")

    def _limits(self) -> tuple[int, int, int]:
        return self.daily, self.monthly, self.cap

    def _committed(self, scope: str) -> int:
        return self.reserved.get(scope, 0) + self.spent.get(scope, 0)

    def _ledger(self, stale: bool) -> BudgetLedger:
        if stale and self.stale is not None:
            return self.stale
        return BudgetLedger(get_business(BUSINESS), clock=self.clock)

    @initialize()
    def register(self) -> None:
        self._save()
        set_platform_cap(Decimal(self.cap) / 10**9)
        self.stale = self._ledger(stale=False)

    # --- the one rule: a weighted choice of action ---------------------------------------------

    @rule(action=st.sampled_from(ACTIONS), data=st.data())
    def step(self, action: str, data: st.DataObject) -> None:
        getattr(self, action)(data)
        note(f"{action}: limits {self._limits()}, reserved {self.reserved}, spent {self.spent}")

    # --- actions -------------------------------------------------------------------------------

    def reserve(self, data: st.DataObject) -> None:
        amount = data.draw(st.sampled_from([1, 3 * CENT, 7 * CENT, 20 * CENT]), label="amount")
        stale, lose = (
            data.draw(st.booleans(), label="stale"),
            data.draw(st.booleans(), label="lose"),
        )
        self.made += 1
        key = f"k-{self.made}"
        scopes = self._scopes()
        if lose:
            self.faults.arm(1)
        try:
            self._ledger(stale).reserve(
                key=key, model="gpt-5-mini", tier="mini", upper_bound_nanos=amount
            )
            granted = True
        except (BudgetDenied, BudgetBusy) as refused:
            granted = False
            reason = refused.reason
        self.faults.arm(0)
        fits = all(
            self._committed(scope) + amount <= limit
            for scope, limit in zip(scopes, self._limits(), strict=True)
        )
        if granted:
            assert not self.paused, "granted while paused"
            assert fits, f"granted {amount} without room: {[self._committed(s) for s in scopes]}"
            self.live[key] = Hold(amount, scopes)
            for scope in scopes:
                self.reserved[scope] = self.reserved.get(scope, 0) + amount
        else:
            assert self.paused or not fits, f"refused ({reason}) with room for {amount}"
            assert reason in {
                "platform_paused",
                "daily_budget_exceeded",
                "monthly_budget_exceeded",
                "platform_cap_reached",
                "budget_held",
            }
            if reason == "budget_held":  # room only if holds in flight come back
                assert any(
                    self.spent.get(scope, 0) + amount <= limit
                    for scope, limit in zip(scopes, self._limits(), strict=True)
                )

    @staticmethod
    def _pick(data: st.DataObject, holds: dict[str, Hold]) -> tuple[str, Hold, int]:
        """A hold and a cost for it, drawn so that what is drawn does not depend on the state
        (shrinking replays the draws on a different world)."""
        key = sorted(holds)[data.draw(st.integers(0, 999), label="which") % len(holds)]
        share = data.draw(st.sampled_from([0, 25, 50, 100, 300]), label="cost %")
        return key, holds[key], holds[key].amount * share // 100

    def settle(self, data: st.DataObject) -> None:
        if not self.live:
            return
        lose = data.draw(st.booleans(), label="lose")
        key, hold, cost = self._pick(data, self.live)
        if lose:
            self.faults.arm(1)
        self._ledger(stale=False).settle(attempt(key, cost))
        self.faults.arm(0)
        state = (db().collection(USAGE).document(key).get().to_dict() or {})["state"]
        assert state == "settled", state
        self.live.pop(key)
        self.settled[key] = cost
        for scope in hold.scopes:
            self.reserved[scope] -= hold.amount
            self.spent[scope] = self.spent.get(scope, 0) + cost

    def settle_again(self, data: st.DataObject) -> None:
        if not self.settled:
            return
        key = sorted(self.settled)[data.draw(st.integers(0, 999)) % len(self.settled)]
        self._ledger(stale=False).settle(attempt(key, self.settled[key]))  # counted once

    def advance(self, data: st.DataObject) -> None:
        seconds = data.draw(st.sampled_from([15, 45, 100, 3600, 86_400, 30 * 86_400]))
        self.clock.now += dt.timedelta(seconds=seconds)

    def change_limits(self, data: st.DataObject) -> None:
        daily = data.draw(st.sampled_from([5, 20, 40, 60]), label="daily")
        monthly = data.draw(st.sampled_from([60, 100, 200]), label="monthly")
        self.daily, self.monthly = daily * CENT, monthly * CENT
        self._save()

    def change_tier(self, data: st.DataObject) -> None:
        tier = data.draw(st.sampled_from(["pro", "enterprise"]))
        self.tier = tier
        self._save()

    def change_cap(self, data: st.DataObject) -> None:
        cap = data.draw(st.sampled_from([10, 30, 80, 150]))
        self.cap = cap * CENT
        set_platform_cap(Decimal(self.cap) / 10**9)

    def pause(self, data: st.DataObject) -> None:
        paused = data.draw(st.booleans())
        self.paused = paused
        set_paused(paused, "model test")

    def give_back(self, data: st.DataObject) -> None:
        """The end of a request: idle money back, settled money moved in, and then every period
        says exactly what the model holds."""
        escrow.release()
        for key in self._periods():
            found = period(BUSINESS, key)
            assert found.allocated == self.reserved.get(key, 0) >= 0, key
            assert found.spent == self.spent.get(key, 0), key

    def keep_a_stale_copy(self, data: st.DataObject) -> None:
        self.stale = self._ledger(stale=False)

    # --- invariants --------------------------------------------------------------------------

    @invariant()
    def periods_cover_the_model(self) -> None:
        """Between give-backs, a period holds at least what the model says is committed (holds
        and settled costs still in blocks count as held) and never more than it spent."""
        for key in self._periods():
            found = period(BUSINESS, key)
            assert found.spent <= self.spent.get(key, 0), key
            assert found.spent + found.allocated >= self._committed(key), key

    def _periods(self) -> set[str]:
        return {scope for scope in (*self.reserved, *self.spent) if ":" not in scope}

    @invariant()
    def usage_records_add_up(self) -> None:
        records = [
            s.to_dict() or {}
            for s in db()
            .collection(USAGE)
            .where(filter=FieldFilter("business_id", "==", BUSINESS))
            .stream()
        ]
        charged = [r for r in records if r["state"] in CHARGED]
        assert sorted(r["key"] for r in charged) == sorted(self.settled)  # each charged once
        assert sorted(r["key"] for r in records if r["state"] == "held") == sorted(self.live)
        for key, spent in self.spent.items():
            if ":" in key:
                continue
            field = "day" if len(key) > 7 else "month"
            assert sum(int(r["charged_nanos"]) for r in charged if r[field] == key) == spent


LedgerMachine.TestCase.settings = settings(
    derandomize=True,
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture
def _emulator(firestore_emulator: object) -> Iterator[None]:
    yield


@pytest.mark.emulator
@pytest.mark.usefixtures("_emulator")
class TestLedgerModel(LedgerMachine.TestCase):  # type: ignore[misc,valid-type]
    pass
