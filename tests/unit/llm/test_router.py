"""The router's own logic: tiers, fallback, repair, ledger calls, circuit breaker, budget stops.

Providers here replay a script (see doubles.py); tests/protocol/llm drives the same paths through
the real SDKs against loopback servers.
"""

from __future__ import annotations

from typing import Any

import pytest

from common.llm import (
    AllProvidersFailed,
    CircuitBreaker,
    Completion,
    InvalidRequest,
    Router,
    estimate_task_cost,
    get_router,
)
from common.llm.base import (
    InvalidOutput,
    Message,
    ProviderAuthError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from common.llm.catalogue import default_catalogue
from common.llm.routing import attempt_upper_bound
from common.llm.thinking import thinking_budget
from common.llm.tokens import prompt_token_bound
from common.models import PositioningOutput, SelectedPositioning
from common.platform.settings import get_settings
from common.spend.ledger import BudgetDenied
from common.spend.records import TokenUsage
from tests.unit.llm.doubles import RecordingLedger, ScriptedProvider, business_messages, failure

CATALOGUE = default_catalogue()
MESSAGES = business_messages()
VALID = SelectedPositioning(
    option_number=2, statement="Retail analytics that pays for itself.", rationale="Research."
).model_dump_json()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def openai() -> ScriptedProvider:
    return ScriptedProvider("openai")


@pytest.fixture
def gemini() -> ScriptedProvider:
    return ScriptedProvider(
        "gemini",
        usage=TokenUsage(
            input_tokens=1500, cached_input_tokens=500, output_tokens=600, reasoning_tokens=250
        ),
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def router(openai: ScriptedProvider, gemini: ScriptedProvider, clock: Clock) -> Router:
    return Router(
        {"openai": openai, "gemini": gemini},
        breaker=CircuitBreaker(cooldown_seconds=30, clock=clock),
        timeout_seconds=5,
    )


def _run(router: Router, ledger: RecordingLedger | None = None, **kw: object):  # type: ignore[no-untyped-def]
    return router.execute(
        kw.pop("task_type", "positioning_analysis"),  # type: ignore[arg-type]
        kw.pop("messages", MESSAGES),  # type: ignore[arg-type]
        schema=SelectedPositioning,
        ledger=ledger or RecordingLedger(),
        call_key="run-1:positioning",
        **kw,  # type: ignore[arg-type]
    )


# --- Routing ----------------------------------------------------------------------------------


def test_chain_is_the_tier_at_each_provider(router: Router) -> None:
    decision = router.route("positioning_analysis", MESSAGES)
    assert decision.model == "gpt-5-mini" and decision.provider == "openai"
    assert decision.fallback_chain == ["gpt-5-mini", "gemini-2.5-flash"]
    assert router.route("sentence_summary", MESSAGES).fallback_chain == [
        "gpt-5-nano",
        "gemini-2.5-flash-lite",
    ]
    assert router.route("strategy_analysis", MESSAGES).fallback_chain == [
        "gpt-5",
        "gemini-2.5-pro",
    ]


def test_tier_gating_downgrades_and_says_so(
    router: Router, openai: ScriptedProvider, gemini: ScriptedProvider
) -> None:
    allowed = frozenset({"nano", "mini"})
    decision = router.route("strategy_analysis", MESSAGES, allowed_tiers=allowed)  # type: ignore[arg-type]
    assert (decision.model, decision.tier, decision.downgraded_from) == (
        "gpt-5-mini",
        "mini",
        "gpt-5",
    )
    assert decision.fallback_chain == ["gpt-5-mini", "gemini-2.5-flash"]
    assert "tier 'full' not allowed" in decision.reason
    openai.push(failure(ProviderUnavailable, "openai", "gpt-5-mini"))
    gemini.push(VALID)
    completion = _run(router, task_type="strategy_analysis", allowed_tiers=allowed)
    assert completion.model_used == "gemini-2.5-flash"  # the fallback respects the gate too
    assert completion.downgraded_from == "gpt-5"
    assert [r.model for r in openai.requests + gemini.requests] == [
        "gpt-5-mini",
        "gemini-2.5-flash",
    ]


def test_a_caller_with_only_higher_tiers_gets_the_lowest_it_may_use(router: Router) -> None:
    decision = router.route("sentence_summary", MESSAGES, allowed_tiers=frozenset({"full"}))
    assert (decision.model, decision.downgraded_from) == ("gpt-5", None)


def test_bad_tier_sets_are_rejected(router: Router) -> None:
    with pytest.raises(InvalidRequest, match="allowed_tiers"):
        router.route("general", MESSAGES, allowed_tiers=frozenset())
    with pytest.raises(InvalidRequest, match="allowed_tiers"):
        router.route("general", MESSAGES, allowed_tiers=frozenset({"ultra"}))  # type: ignore[arg-type]


def test_gemini_alone_serves_every_tier(gemini: ScriptedProvider) -> None:
    router = Router({"gemini": gemini})
    decision = router.route("strategy_analysis", MESSAGES)
    assert (decision.model, decision.provider, decision.fallback_chain) == (
        "gemini-2.5-pro",
        "gemini",
        ["gemini-2.5-pro"],
    )


def test_a_prompt_beyond_gpt5s_window_goes_to_gemini(
    router: Router, openai: ScriptedProvider
) -> None:
    huge = [Message(role="user", content="market " * 400_000)]
    decision = router.route("strategy_analysis", huge)
    assert decision.fallback_chain == ["gemini-2.5-pro"]
    assert "gpt-5 skipped" in decision.reason
    with pytest.raises(InvalidRequest, match="too long for every allowed model"):
        Router({"openai": openai}).route("strategy_analysis", huge)


def test_bad_messages_are_named(router: Router) -> None:
    with pytest.raises(InvalidRequest, match="messages: give at least one"):
        router.route("general", [])
    with pytest.raises(InvalidRequest, match=r"messages\[0\]\.role"):
        router.route("general", [{"role": "robot", "content": "hi"}])  # type: ignore[typeddict-item]
    with pytest.raises(InvalidRequest, match=r"messages\[0\]\.content"):
        router.route("general", [{"role": "user", "content": 3}])  # type: ignore[typeddict-item]


def test_reasoning_effort_defaults_by_complexity_and_can_be_set(
    router: Router, openai: ScriptedProvider
) -> None:
    assert router.route("sentence_summary", MESSAGES).reasoning_effort == "minimal"
    assert router.route("positioning_analysis", MESSAGES).reasoning_effort == "low"
    assert router.route("strategy_analysis", MESSAGES).reasoning_effort == "medium"
    openai.push(VALID)
    _run(router, reasoning_effort="high")
    assert openai.requests[0].reasoning_effort == "high"
    with pytest.raises(InvalidRequest, match="reasoning_effort"):
        router.route("general", MESSAGES, reasoning_effort="max")  # type: ignore[arg-type]


def test_call_key_is_required(router: Router) -> None:
    with pytest.raises(InvalidRequest, match="call_key"):
        router.execute("general", MESSAGES, call_key="")


# --- Estimates --------------------------------------------------------------------------------


def test_estimate_bounds_input_and_the_tasks_output(router: Router) -> None:
    decision = router.route("positioning_analysis", MESSAGES)
    prompt = prompt_token_bound("openai", MESSAGES, None)
    mini = CATALOGUE.model("gpt-5-mini")
    expected = mini.upper_bound_nanos(prompt, decision.max_output_tokens)
    assert router.estimate("positioning_analysis", MESSAGES) == expected
    assert router.estimate("positioning_analysis", MESSAGES, schema=PositioningOutput) > expected


def test_gemini_estimate_adds_the_thinking_budget(gemini: ScriptedProvider) -> None:
    router = Router({"gemini": gemini})
    decision = router.route("strategy_analysis", MESSAGES)
    pro = CATALOGUE.model("gemini-2.5-pro")
    prompt = prompt_token_bound("gemini", MESSAGES, None)
    budget = thinking_budget("gemini-2.5-pro", "medium")
    assert router.estimate("strategy_analysis", MESSAGES) == pro.upper_bound_nanos(
        prompt, decision.max_output_tokens + budget
    )


def test_the_first_reservation_equals_the_estimate(
    router: Router, openai: ScriptedProvider
) -> None:
    openai.push(VALID)
    ledger = RecordingLedger()
    _run(router, ledger)
    estimate = router.estimate("positioning_analysis", MESSAGES, schema=SelectedPositioning)
    assert ledger.reservations[0].upper_bound_nanos == estimate


# --- Execution and the ledger -------------------------------------------------------------------


def test_success_reserves_then_settles_the_exact_cost(
    router: Router, openai: ScriptedProvider
) -> None:
    openai.push(VALID)
    ledger = RecordingLedger()
    completion = _run(router, ledger)
    assert ledger.events == ["reserve:gpt-5-mini", "settle:gpt-5-mini"]
    record = ledger.settled[0]
    assert record.key == ledger.reservations[0].key
    assert record.key.startswith("run-1:positioning:") and len(record.key) > 30
    # 900 uncached x 250 + 100 cached x 25 + (200 + 50) x 2000 nanos per token
    assert record.cost_nanos == 900 * 250 + 100 * 25 + 250 * 2000
    assert (record.ok, record.error_code, record.fallback_used) == (True, None, False)
    assert (record.task_type, record.provider, record.model) == (
        "positioning_analysis",
        "openai",
        "gpt-5-mini",
    )
    assert completion.parsed == SelectedPositioning.model_validate_json(VALID)
    assert completion.value().option_number == 2
    assert completion.cost_nanos == record.cost_nanos
    assert completion.usage == openai.usage
    assert (completion.model_used, completion.provider, completion.fallback_used) == (
        "gpt-5-mini",
        "openai",
        False,
    )
    assert openai.requests[0].json_schema is not None
    assert openai.requests[0].schema_name == "SelectedPositioning"


def test_invalid_json_gets_one_repair_and_both_attempts_are_billed(
    router: Router, openai: ScriptedProvider
) -> None:
    openai.push('{"option_number": 7, "statement": "x"}', VALID)
    ledger = RecordingLedger()
    completion = _run(router, ledger)
    assert ledger.events == [
        "reserve:gpt-5-mini",
        "settle:gpt-5-mini",
        "reserve:gpt-5-mini",
        "settle:gpt-5-mini",
    ]
    first, second = ledger.settled
    assert (first.ok, first.error_code) == (False, "invalid_output")
    assert first.cost_nanos > 0 and first.key != second.key
    assert second.ok
    repair = openai.requests[1].messages
    assert repair[:-2] == MESSAGES
    assert repair[-2] == {"role": "assistant", "content": '{"option_number": 7, "statement": "x"}'}
    assert "option_number" in repair[-1]["content"] and "rationale" in repair[-1]["content"]
    assert ledger.reservations[1].upper_bound_nanos > ledger.reservations[0].upper_bound_nanos
    assert completion.cost_nanos == first.cost_nanos + second.cost_nanos
    assert completion.usage.input_tokens == 2 * openai.usage.input_tokens
    assert not completion.fallback_used


def test_a_failed_repair_falls_back(
    router: Router, openai: ScriptedProvider, gemini: ScriptedProvider
) -> None:
    openai.push("not json at all", "```json\n{}\n```")
    gemini.push(VALID)
    ledger = RecordingLedger()
    completion = _run(router, ledger)
    assert [r.model for r in ledger.settled] == ["gpt-5-mini", "gpt-5-mini", "gemini-2.5-flash"]
    assert [r.error_code for r in ledger.settled] == ["invalid_output", "invalid_output", None]
    assert [r.fallback_used for r in ledger.settled] == [False, False, True]
    assert completion.fallback_used and completion.model_used == "gemini-2.5-flash"
    assert completion.cost_nanos == sum(r.cost_nanos for r in ledger.settled)


@pytest.mark.parametrize(
    "kind",
    [
        RateLimited,
        ProviderUnavailable,
        ProviderTimeout,
        ProviderConnectionError,
        ProviderAuthError,
        InvalidOutput,
    ],
)
def test_provider_failures_fall_back(
    router: Router,
    openai: ScriptedProvider,
    gemini: ScriptedProvider,
    kind: type[ProviderError],
) -> None:
    openai.push(failure(kind, "openai", "gpt-5-mini"))
    gemini.push(VALID)
    ledger = RecordingLedger()
    completion = _run(router, ledger)
    assert completion.model_used == "gemini-2.5-flash" and completion.fallback_used
    failed, ok = ledger.settled
    assert (failed.ok, failed.error_code, failed.cost_nanos) == (False, kind.code, 0)
    assert ok.ok and ok.fallback_used and ok.provider == "gemini"
    assert len(openai.requests) == 1  # no retry on the same provider


def test_billed_failures_are_charged(
    router: Router, openai: ScriptedProvider, gemini: ScriptedProvider
) -> None:
    billed = TokenUsage(input_tokens=1000, output_tokens=4000)
    openai.push(failure(InvalidOutput, "openai", "gpt-5-mini", usage=billed))
    gemini.push(VALID)
    ledger = RecordingLedger()
    _run(router, ledger)
    assert ledger.settled[0].cost_nanos == CATALOGUE.model("gpt-5-mini").cost_nanos(billed)


def test_our_own_bad_request_is_not_retried_elsewhere(
    router: Router, openai: ScriptedProvider, gemini: ScriptedProvider
) -> None:
    openai.push(InvalidRequest("openai rejected the request: 400 bad schema"))
    ledger = RecordingLedger()
    with pytest.raises(InvalidRequest, match="bad schema"):
        _run(router, ledger)
    assert gemini.requests == []
    assert ledger.events == ["reserve:gpt-5-mini", "settle:gpt-5-mini"]
    assert (ledger.settled[0].cost_nanos, ledger.settled[0].error_code) == (0, "invalid_request")


def test_a_bug_in_a_provider_still_releases_the_reservation(
    router: Router, openai: ScriptedProvider, gemini: ScriptedProvider
) -> None:
    openai.push(RuntimeError("boom"))
    ledger = RecordingLedger()
    with pytest.raises(RuntimeError, match="boom"):
        _run(router, ledger)
    assert gemini.requests == []
    assert (ledger.settled[0].cost_nanos, ledger.settled[0].error_code) == (0, "internal_error")


def test_every_failure_is_listed_when_all_fail(
    router: Router, openai: ScriptedProvider, gemini: ScriptedProvider
) -> None:
    openai.push(failure(RateLimited, "openai", "gpt-5-mini"))
    gemini.push(failure(ProviderTimeout, "gemini", "gemini-2.5-flash"))
    ledger = RecordingLedger()
    with pytest.raises(AllProvidersFailed) as failed:
        _run(router, ledger)
    assert [(f.provider, f.model, f.code) for f in failed.value.failures] == [
        ("openai", "gpt-5-mini", "rate_limited"),
        ("gemini", "gemini-2.5-flash", "timeout"),
    ]
    assert "openai/gpt-5-mini: rate_limited" in str(failed.value)
    assert len(ledger.settled) == 2 and all(r.cost_nanos == 0 for r in ledger.settled)


# --- Budget -------------------------------------------------------------------------------------


def test_budget_denied_before_the_first_attempt_stops_everything(
    router: Router, openai: ScriptedProvider, gemini: ScriptedProvider
) -> None:
    ledger = RecordingLedger(deny_after=0)
    with pytest.raises(BudgetDenied) as denied:
        _run(router, ledger)
    assert denied.value.reason == "daily_budget_exceeded"
    assert openai.requests == [] and gemini.requests == []
    assert ledger.settled == []


def test_budget_denied_for_the_fallback_stops_without_calling_it(
    router: Router, openai: ScriptedProvider, gemini: ScriptedProvider
) -> None:
    openai.push(failure(ProviderUnavailable, "openai", "gpt-5-mini"))
    ledger = RecordingLedger(deny_after=1)
    with pytest.raises(BudgetDenied):
        _run(router, ledger)
    assert gemini.requests == []
    assert ledger.events == ["reserve:gpt-5-mini", "settle:gpt-5-mini", "denied:gemini-2.5-flash"]


def test_budget_denied_for_the_repair_stops(
    router: Router, openai: ScriptedProvider, gemini: ScriptedProvider
) -> None:
    openai.push("{}")
    ledger = RecordingLedger(deny_after=1)
    with pytest.raises(BudgetDenied):
        _run(router, ledger)
    assert len(openai.requests) == 1 and gemini.requests == []


# --- Circuit breaker ---------------------------------------------------------------------------


def test_a_model_that_just_failed_is_skipped_until_the_cooldown_ends(
    router: Router, openai: ScriptedProvider, gemini: ScriptedProvider, clock: Clock
) -> None:
    openai.push(failure(ProviderUnavailable, "openai", "gpt-5-mini"))
    gemini.push(VALID, VALID)
    _run(router)
    ledger = RecordingLedger()
    clock.now += 29
    completion = _run(router, ledger)
    assert len(openai.requests) == 1  # skipped: no call, no reservation
    assert ledger.events == ["reserve:gemini-2.5-flash", "settle:gemini-2.5-flash"]
    assert completion.fallback_used
    clock.now += 2
    openai.push(VALID)
    assert _run(router).model_used == "gpt-5-mini"
    assert len(openai.requests) == 2


def test_the_breaker_is_per_model(
    router: Router, openai: ScriptedProvider, gemini: ScriptedProvider
) -> None:
    openai.push(failure(RateLimited, "openai", "gpt-5-mini"), VALID)
    gemini.push(VALID)
    _run(router)
    assert _run(router, task_type="sentence_summary").model_used == "gpt-5-nano"


def test_invalid_output_does_not_open_the_circuit(
    router: Router, openai: ScriptedProvider, gemini: ScriptedProvider
) -> None:
    openai.push(failure(InvalidOutput, "openai", "gpt-5-mini"), VALID)
    gemini.push(VALID)
    _run(router)
    assert _run(router).model_used == "gpt-5-mini"


def test_when_every_circuit_is_open_nothing_is_spent(
    router: Router, openai: ScriptedProvider, gemini: ScriptedProvider
) -> None:
    openai.push(failure(ProviderConnectionError, "openai", "gpt-5-mini"))
    gemini.push(failure(ProviderUnavailable, "gemini", "gemini-2.5-flash"))
    with pytest.raises(AllProvidersFailed):
        _run(router)
    ledger = RecordingLedger()
    with pytest.raises(AllProvidersFailed, match="circuit open") as failed:
        _run(router, ledger)
    assert ledger.events == []
    assert [f.model for f in failed.value.failures] == ["gpt-5-mini", "gemini-2.5-flash"]


# --- Configuration ------------------------------------------------------------------------------


def test_no_key_means_offline(router_env: pytest.MonkeyPatch) -> None:
    router = get_router()
    assert router.providers == ["offline"]
    completion = router.execute(
        "positioning_analysis", MESSAGES, schema=PositioningOutput, call_key="run-9:positioning"
    )
    assert completion.provider == "offline" and completion.model_used == "gpt-5-mini"
    assert all(a.provider == "offline" for a in completion.attempts)
    assert estimate_task_cost("positioning_analysis", MESSAGES[1]["content"]) > 0


def test_keys_select_providers(router_env: pytest.MonkeyPatch) -> None:
    def providers() -> list[str]:
        # Secrets cache absences; new settings mean a new secret store and a new router.
        get_settings.cache_clear()
        return get_router().providers

    router_env.setenv("OPENAI_API_KEY", "sk-unit-test-openai")
    assert providers() == ["openai"]
    router_env.setenv("GEMINI_API_KEY", "AIza-unit-test-gemini")
    assert providers() == ["openai", "gemini"]
    router_env.delenv("OPENAI_API_KEY")
    assert providers() == ["gemini"]
    router_env.delenv("GEMINI_API_KEY")
    router_env.setenv("GEMINI_USE_VERTEX", "true")  # ADC, read lazily on the first call
    assert providers() == ["gemini"]
    router_env.setenv("LLM_OFFLINE", "true")
    assert providers() == ["offline"]


def test_completion_value_needs_a_schema(router_env: pytest.MonkeyPatch) -> None:
    completion: Completion[Any] = get_router().execute("sentence_summary", MESSAGES, call_key="k")
    assert completion.parsed is None and completion.text.startswith("[offline]")
    with pytest.raises(ValueError, match="without a schema"):
        completion.value()


def test_attempt_bound_uses_long_context_prices_when_the_prompt_could_exceed_200k() -> None:
    pro = CATALOGUE.model("gemini-2.5-pro")
    from common.llm.base import ProviderRequest

    request = ProviderRequest(
        model="gemini-2.5-pro",
        messages=[Message(role="user", content="market " * 180_000)],
        max_output_tokens=1000,
        reasoning_effort="low",
        timeout_seconds=5,
    )
    prompt = prompt_token_bound("gemini", request.messages, None)
    assert prompt > 200_000  # 180k o200k tokens x the Gemini margin
    assert attempt_upper_bound(pro, "gemini", request) == prompt * 2_500 + (1000 + 1024) * 15_000
