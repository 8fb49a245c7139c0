"""The cascade: checks that ask again naming the failure, one tier up when the asks run out,
never past the caller's tiers; and where a call starts, learned from how calls ended."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from common.llm import CircuitBreaker, Router
from common.llm.base import AllProvidersFailed, OutOfTime, RateLimited
from common.llm.cascade import PassRate, start_tier
from common.models import SelectedPositioning
from tests.unit.llm.doubles import RecordingLedger, ScriptedProvider, business_messages, failure

GOOD = SelectedPositioning(
    option_number=1, statement="Coffee for the morning rush.", rationale="Commuters queue."
).model_dump_json()
VAGUE = SelectedPositioning(
    option_number=1, statement="Coffee.", rationale="Commuters queue."
).model_dump_json()


def too_vague(answer: SelectedPositioning) -> Sequence[str]:
    return ["the statement says nothing specific"] if len(answer.statement.split()) < 3 else []


def _router(openai: ScriptedProvider, gemini: ScriptedProvider | None = None) -> Router:
    providers = {"openai": openai} | ({"gemini": gemini} if gemini is not None else {})
    return Router(providers, breaker=CircuitBreaker(cooldown_seconds=0))  # type: ignore[arg-type]


def _ask(router: Router, ledger: RecordingLedger, **kw: object):  # type: ignore[no-untyped-def]
    return router.execute(
        "positioning_selection",
        business_messages(),
        schema=SelectedPositioning,
        ledger=ledger,
        call_key="run-1:positioning:selection",
        check=too_vague,
        **kw,  # type: ignore[arg-type]
    )


def test_a_failed_check_asks_again_naming_the_failure() -> None:
    openai = ScriptedProvider("openai").push(VAGUE, GOOD)
    ledger = RecordingLedger()
    completion = _ask(_router(openai), ledger, tier="nano", escalate=True)
    assert completion.value().statement == "Coffee for the morning rush."
    again = openai.requests[1].messages
    assert again[-2] == {"role": "assistant", "content": VAGUE}
    assert "the statement says nothing specific" in again[-1]["content"]
    assert [(a.model, a.outcome, a.check_failure) for a in ledger.settled] == [
        ("gpt-5-nano", "failed", "the statement says nothing specific"),
        ("gpt-5-nano", "repaired", None),
    ]
    assert completion.escalations == [] and completion.unresolved == []


def test_failing_every_ask_moves_one_tier_up_and_records_why() -> None:
    openai = ScriptedProvider("openai").push(VAGUE, VAGUE, GOOD)
    ledger = RecordingLedger()
    completion = _ask(_router(openai), ledger, tier="nano", escalate=True)
    assert [r.model for r in openai.requests] == ["gpt-5-nano", "gpt-5-nano", "gpt-5-mini"]
    assert [(a.model_tier, a.outcome, a.escalated_from) for a in ledger.settled] == [
        ("nano", "failed", None),
        ("nano", "escalated", None),
        ("mini", "first_try", "nano"),  # outcomes start again on the new tier
    ]
    [step] = completion.escalations
    assert (step.from_tier, step.to_tier, step.to_model) == ("nano", "mini", "gpt-5-mini")
    assert step.reason == "the statement says nothing specific"
    assert completion.decision.tier == "mini"
    assert "escalated from nano (gpt-5-nano)" in completion.decision.reason
    # Every attempt reserved before it ran and settled after.
    assert len(ledger.reservations) == len(ledger.settled) == 3
    assert completion.cost_nanos == sum(a.cost_nanos for a in ledger.settled)


def test_the_cascade_stays_within_the_callers_tiers() -> None:
    # A basic business: nano and mini. Two tiers of failures, and it never reaches full.
    openai = ScriptedProvider("openai").push(VAGUE, VAGUE, VAGUE, VAGUE, VAGUE)
    ledger = RecordingLedger()
    basic = frozenset({"nano", "mini"})
    completion = _ask(_router(openai), ledger, tier="nano", escalate=True, allowed_tiers=basic)
    assert {r.model for r in openai.requests} == {"gpt-5-nano", "gpt-5-mini"}
    # The top allowed tier gets one ask more: nothing above it can take over.
    assert [(a.model_tier, a.outcome) for a in ledger.settled] == [
        ("nano", "failed"),
        ("nano", "escalated"),
        ("mini", "failed"),
        ("mini", "failed"),
        ("mini", "failed"),
    ]
    # The last answer is returned with what it still fails, rather than nothing.
    assert completion.unresolved == ["the statement says nothing specific"]
    assert completion.value().statement == "Coffee."
    assert [e.to_tier for e in completion.escalations] == ["mini"]


def test_without_escalation_a_failing_answer_stays_on_its_tier() -> None:
    openai = ScriptedProvider("openai").push(VAGUE, VAGUE)
    ledger = RecordingLedger()
    completion = _ask(_router(openai), ledger, tier="nano", asks=2)
    assert [a.outcome for a in ledger.settled] == ["failed", "failed"]
    assert completion.unresolved and completion.escalations == []


def test_a_check_failure_does_not_fall_back_to_the_other_provider() -> None:
    # Gemini's model of the same tier is no better judge: the cascade moves up instead.
    openai = ScriptedProvider("openai").push(VAGUE, VAGUE, GOOD)
    gemini = ScriptedProvider("gemini")
    _ask(_router(openai, gemini), RecordingLedger(), tier="nano", escalate=True)
    assert gemini.requests == []


def test_invalid_json_from_every_provider_of_a_tier_escalates() -> None:
    openai = ScriptedProvider("openai").push("nope", "nope again", GOOD)
    gemini = ScriptedProvider("gemini").push("{}", "{}")
    ledger = RecordingLedger()
    completion = _ask(_router(openai, gemini), ledger, tier="nano", escalate=True)
    assert completion.decision.tier == "mini" and completion.model_used == "gpt-5-mini"
    assert "invalid JSON" in completion.escalations[0].reason


def test_provider_outages_are_not_escalated() -> None:
    openai = ScriptedProvider("openai").push(failure(RateLimited, "openai", "gpt-5-nano"))
    with pytest.raises(AllProvidersFailed):
        _ask(_router(openai), RecordingLedger(), tier="nano", escalate=True)


def test_no_attempt_is_made_that_the_deadline_cannot_hold() -> None:
    openai = ScriptedProvider("openai").push(VAGUE, GOOD)
    ledger = RecordingLedger()
    with pytest.raises(OutOfTime):
        _ask(_router(openai), ledger, tier="nano", deadline=time.monotonic() + 1)
    assert ledger.reservations == [] and openai.requests == []


# --- Where a call starts -------------------------------------------------------------------

ALL = frozenset({"nano", "mini", "full"})


def _start(rates: dict[tuple[str, str], PassRate], **kw: object) -> tuple[str | None, str]:
    found = start_tier(
        "content_weeks",
        default=kw.pop("default", "mini"),  # type: ignore[arg-type]
        allowed=kw.pop("allowed", ALL),  # type: ignore[arg-type]
        rates=rates,  # type: ignore[arg-type]
        target=0.7,
        min_samples=20,
        explore_rate=kw.pop("explore_rate", 0.0),  # type: ignore[arg-type]
        key=str(kw.pop("key", "run:content:weeks")),
    )
    return found.tier, found.reason


def test_without_outcomes_a_task_starts_on_its_default() -> None:
    assert _start({})[0] == "mini"
    assert _start({}, default="full", allowed=frozenset({"nano", "mini"}))[0] == "mini"
    assert _start({}, default=None)[0] is None  # the router's own routing decides
    # Too few first tries to count.
    assert _start({("content_weeks", "nano"): PassRate(9, 9)})[0] == "mini"


def test_the_cheapest_tier_meeting_the_target_with_confidence_is_chosen() -> None:
    rates = {
        ("content_weeks", "nano"): PassRate(15, 20),
        ("content_weeks", "mini"): PassRate(29, 30),
    }
    tier, reason = _start(rates)
    assert tier == "nano" and "15 of its last 20 first tries" in reason
    rates[("content_weeks", "nano")] = PassRate(8, 20)  # 40%: surely below the 70% target
    tier, reason = _start(rates)
    assert tier == "mini" and "nano 40%" in reason
    # 60% in 20 first tries: not enough to say nano falls short of 70%.
    rates[("content_weeks", "nano")] = PassRate(12, 20)
    assert _start(rates)[0] == "nano"


def test_a_cheaper_tier_not_measured_yet_is_tried_from_the_tasks_default_up() -> None:
    # Cheap first: mini's good record does not keep an unmeasured nano (the default) from
    # being tried; below the default, an unmeasured tier is only explored.
    rates = {("content_weeks", "mini"): PassRate(20, 24)}
    tier, reason = _start(rates, default="nano")
    assert tier == "nano" and "not measured yet" in reason
    assert _start(rates, default="mini")[0] == "mini"


def test_when_every_measured_tier_falls_short_the_call_starts_above_them() -> None:
    rates = {("content_weeks", "nano"): PassRate(5, 40)}
    assert _start(rates)[0] == "mini"
    rates[("content_weeks", "mini")] = PassRate(5, 40)
    assert _start(rates)[0] == "full"
    assert _start(rates, allowed=frozenset({"nano", "mini"}))[0] == "mini"


def test_exploration_is_bounded_deterministic_and_one_tier_down() -> None:
    rates = {("content_weeks", "mini"): PassRate(30, 30)}
    starts = [_start(rates, explore_rate=0.1, key=f"run-{n}")[0] for n in range(1000)]
    explored = starts.count("nano")
    assert 50 <= explored <= 150 and set(starts) == {"nano", "mini"}
    assert starts == [_start(rates, explore_rate=0.1, key=f"run-{n}")[0] for n in range(1000)]
    assert _start({("content_weeks", "nano"): PassRate(30, 30)}, explore_rate=1.0)[0] == "nano"
