"""Every attempt's record says how its call's answer came about: the router's training feedback."""

from __future__ import annotations

import pytest

from common.llm import AllProvidersFailed, CircuitBreaker, Router
from common.llm.base import RateLimited
from common.models import SelectedPositioning
from tests.unit.llm.doubles import RecordingLedger, ScriptedProvider, business_messages, failure

VALID = SelectedPositioning(
    option_number=2, statement="Retail analytics that pays for itself.", rationale="Research."
).model_dump_json()


def _execute(
    openai: ScriptedProvider, gemini: ScriptedProvider, ledger: RecordingLedger | None = None
) -> RecordingLedger:
    ledger = ledger if ledger is not None else RecordingLedger()
    router = Router({"openai": openai, "gemini": gemini}, breaker=CircuitBreaker())
    router.execute(
        "positioning_analysis",  # balanced: gpt-5-mini, then gemini-2.5-flash
        business_messages(),
        schema=SelectedPositioning,
        ledger=ledger,
        call_key="run-7:positioning",
    )
    return ledger


def _outcomes(ledger: RecordingLedger) -> list[tuple[str, str | None, str | None]]:
    return [(a.model, a.model_tier, a.outcome) for a in ledger.settled]


def test_a_valid_first_answer_is_a_first_try() -> None:
    ledger = _execute(ScriptedProvider("openai").push(VALID), ScriptedProvider("gemini"))
    assert _outcomes(ledger) == [("gpt-5-mini", "mini", "first_try")]
    assert ledger.settled[0].call_key == "run-7:positioning"
    assert ledger.settled[0].key.startswith("run-7:positioning:")


def test_an_invalid_answer_fixed_by_the_repair_is_repaired() -> None:
    openai = ScriptedProvider("openai").push("not json", VALID)
    ledger = _execute(openai, ScriptedProvider("gemini"))
    assert _outcomes(ledger) == [
        ("gpt-5-mini", "mini", "failed"),
        ("gpt-5-mini", "mini", "repaired"),
    ]


def test_an_answer_from_a_later_model_of_the_chain_fell_back() -> None:
    openai = ScriptedProvider("openai").push(failure(RateLimited, "openai", "gpt-5-mini"))
    ledger = _execute(openai, ScriptedProvider("gemini").push("{}", VALID))
    assert _outcomes(ledger) == [
        ("gpt-5-mini", "mini", "failed"),
        ("gemini-2.5-flash", "mini", "failed"),  # invalid, then repaired: still a fallback
        ("gemini-2.5-flash", "mini", "fell_back"),
    ]


def test_a_call_nobody_answered_has_only_failed_attempts() -> None:
    openai = ScriptedProvider("openai").push(failure(RateLimited, "openai", "gpt-5-mini"))
    gemini = ScriptedProvider("gemini").push("not json", "still not json")
    ledger = RecordingLedger()
    with pytest.raises(AllProvidersFailed):
        _execute(openai, gemini, ledger)
    assert [a.outcome for a in ledger.settled] == ["failed", "failed", "failed"]
