"""Usage analytics read from Firestore's usage records (function instances keep nothing)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from common.budget import usage
from common.budget.ledger import BudgetLedger
from common.llm import default_catalogue
from common.spend.records import AttemptRecord, TokenUsage
from common.tenants.businesses import Business


def settle(
    ledger: BudgetLedger, key: str, task: str, model: str, cost: int, ok: bool = True
) -> None:
    tier = default_catalogue().model(model).tier
    ledger.reserve(key=key, model=model, tier=tier, upper_bound_nanos=cost)
    ledger.settle(
        AttemptRecord(
            key=key,
            task_type=task,
            model=model,
            provider="openai",
            usage=TokenUsage(input_tokens=100, output_tokens=10),
            cost_nanos=cost,
            latency_ms=5.0,
            fallback_used=not ok,
            ok=ok,
        )
    )


@pytest.mark.emulator
def test_cost_by_task_daily_cost_projection_and_model_distribution(
    register: Callable[..., Business],
) -> None:
    business = register("analytics-co", "enterprise")
    day10 = dt.datetime(2026, 11, 10, 12, tzinfo=dt.UTC)
    day11 = dt.datetime(2026, 11, 11, 0, tzinfo=dt.UTC)
    clock = {"now": day10}
    ledger = BudgetLedger(business, clock=lambda: clock["now"])
    settle(ledger, "a", "strategy_analysis", "gpt-5", 3_000_000_000)
    settle(ledger, "b", "sentence_summary", "gpt-5-nano", 500_000_000)
    settle(ledger, "c", "sentence_summary", "gpt-5-nano", 0, ok=False)  # a failed attempt
    clock["now"] = day11
    settle(ledger, "d", "positioning_analysis", "gpt-5-mini", 1_500_000_000)

    assert usage.get_cost_by_task("analytics-co", "2026-11") == {
        "strategy_analysis": 3.0,
        "sentence_summary": 0.5,
        "positioning_analysis": 1.5,
    }
    assert usage.get_daily_cost("analytics-co", "2026-11-10") == 3.5
    assert usage.get_daily_cost("analytics-co", "2026-11-11") == 1.5
    assert usage.get_daily_cost("analytics-co", "2026-11-12") == 0.0
    # $5 spent in the first 10 days of a 30-day month: $15 by its end at that rate.
    assert usage.project_monthly_cost("analytics-co", day11) == pytest.approx(15.0)
    assert usage.model_distribution("analytics-co", "2026-11") == {
        "gpt-5": pytest.approx(1 / 3),
        "gpt-5-nano": pytest.approx(1 / 3),
        "gpt-5-mini": pytest.approx(1 / 3),
    }
    assert usage.get_cost_by_task("someone-else", "2026-11") == {}
