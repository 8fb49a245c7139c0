"""The router with the real SDKs against loopback OpenAI and Gemini servers: each fault ends in
the expected fallback or error, and the ledger sees every physical attempt."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.llm import AllProvidersFailed, CircuitBreaker, InvalidRequest, Router, get_router
from common.llm.providers.gemini import GeminiProvider
from common.llm.providers.openai import OpenAIProvider
from common.llm.setup import build_router
from common.models import SelectedPositioning
from common.platform.settings import get_settings
from tests.protocol.llm.conftest import (
    GEMINI_KEY,
    OPENAI_KEY,
    SLOW_REPLY_SECONDS,
    TIMEOUT_SECONDS,
)
from tests.protocol.llm.servers import (
    FakeApi,
    Reply,
    chat_completion,
    closed_port,
    gemini_error,
    gemini_response,
    openai_error,
)
from tests.unit.llm.doubles import RecordingLedger, business_messages

MESSAGES = business_messages(task="Choose the positioning.")
VALID = SelectedPositioning(
    option_number=1, statement="Analytics that pays for itself.", rationale="Research shows it."
).model_dump_json()


@pytest.fixture
def router(openai_provider: OpenAIProvider, gemini_provider: GeminiProvider) -> Router:
    return Router(
        {"openai": openai_provider, "gemini": gemini_provider},
        timeout_seconds=TIMEOUT_SECONDS,
        breaker=CircuitBreaker(cooldown_seconds=0),  # each test starts with closed circuits
    )


def _execute(router: Router, ledger: RecordingLedger):  # type: ignore[no-untyped-def]
    return router.execute(
        "positioning_analysis",
        MESSAGES,
        schema=SelectedPositioning,
        ledger=ledger,
        call_key="run-7:positioning",
    )


def test_success_is_priced_from_the_apis_usage(openai_api: FakeApi, router: Router) -> None:
    openai_api.push(
        Reply(
            200,
            chat_completion(
                VALID,
                prompt_tokens=2000,
                cached_tokens=1024,
                completion_tokens=900,
                reasoning_tokens=640,
            ),
        )
    )
    ledger = RecordingLedger()
    completion = _execute(router, ledger)
    # gpt-5-mini: 976 x $0.25 + 1024 x $0.025 + 900 x $2.00 per 1M tokens
    expected = 976 * 250 + 1024 * 25 + 900 * 2000
    assert completion.cost_nanos == expected == ledger.settled[0].cost_nanos
    assert completion.usage.reasoning_tokens == 640 and completion.usage.output_tokens == 260
    assert completion.parsed == SelectedPositioning.model_validate_json(VALID)
    body = openai_api.requests[0].body
    assert body["model"] == "gpt-5-mini" and body["reasoning_effort"] == "low"
    assert body["response_format"]["json_schema"]["name"] == "SelectedPositioning"


OPENAI_FAULTS = {
    "429": openai_error(429, "Rate limit reached", "rate_limit_error"),
    "500": openai_error(500, "The server had an error", "server_error"),
    "503": openai_error(503, "Service unavailable", "server_error"),
    "401": openai_error(401, "Incorrect API key provided"),
    "malformed-body": Reply(200, b"<html>502 Bad Gateway</html>"),
    "timeout": Reply(200, chat_completion(VALID), delay_seconds=SLOW_REPLY_SECONDS),
}
EXPECTED_CODE = {
    "429": "rate_limited",
    "500": "provider_unavailable",
    "503": "provider_unavailable",
    "401": "auth_failed",
    "malformed-body": "provider_unavailable",
    "timeout": "timeout",
}


@pytest.mark.parametrize("fault", list(OPENAI_FAULTS))
def test_openai_faults_fall_back_to_gemini(
    openai_api: FakeApi, gemini_api: FakeApi, router: Router, fault: str
) -> None:
    openai_api.push(OPENAI_FAULTS[fault])
    gemini_api.push(Reply(200, gemini_response(VALID)))
    ledger = RecordingLedger()
    completion = _execute(router, ledger)
    assert (completion.model_used, completion.provider, completion.fallback_used) == (
        "gemini-2.5-flash",
        "gemini",
        True,
    )
    failed, answered = ledger.settled
    assert (failed.model, failed.error_code, failed.cost_nanos) == (
        "gpt-5-mini",
        EXPECTED_CODE[fault],
        0,
    )
    # gemini-2.5-flash: 1000 x $0.30 + 500 x $0.03 + (600 + 250) x $2.50 per 1M tokens
    assert answered.cost_nanos == 1000 * 300 + 500 * 30 + 850 * 2500
    assert len(openai_api.requests) == 1 and len(gemini_api.requests) == 1
    assert gemini_api.requests[0].path.endswith("/gemini-2.5-flash:generateContent")


def test_connection_refused_falls_back(
    gemini_api: FakeApi, gemini_provider: GeminiProvider
) -> None:
    unreachable = OpenAIProvider(
        api_key=OPENAI_KEY, base_url=f"http://127.0.0.1:{closed_port()}/v1", timeout_seconds=2
    )
    router = Router({"openai": unreachable, "gemini": gemini_provider})
    gemini_api.push(Reply(200, gemini_response(VALID)))
    ledger = RecordingLedger()
    assert _execute(router, ledger).model_used == "gemini-2.5-flash"
    assert ledger.settled[0].error_code == "connection_error"


def test_schema_invalid_json_is_repaired_once_on_the_same_model(
    openai_api: FakeApi, gemini_api: FakeApi, router: Router
) -> None:
    bad = json.dumps({"option_number": 4, "statement": "x", "rationale": "y"})
    openai_api.push(Reply(200, chat_completion(bad)), Reply(200, chat_completion(VALID)))
    ledger = RecordingLedger()
    completion = _execute(router, ledger)
    assert completion.model_used == "gpt-5-mini" and not completion.fallback_used
    assert [r.error_code for r in ledger.settled] == ["invalid_output", None]
    assert ledger.settled[0].cost_nanos > 0  # the bad answer was billed
    repair = openai_api.requests[1].body["messages"]
    assert repair[-2] == {"role": "assistant", "content": bad}
    assert repair[-1]["role"] == "user" and "option_number" in repair[-1]["content"]
    assert "less than or equal to 3" in repair[-1]["content"]
    assert gemini_api.requests == []


def test_malformed_json_twice_falls_back(
    openai_api: FakeApi, gemini_api: FakeApi, router: Router
) -> None:
    openai_api.push(
        Reply(200, chat_completion('{"option_number": 1, "statement": "unterminated')),
        Reply(200, chat_completion("Sure! Here is the JSON you asked for.")),
    )
    gemini_api.push(Reply(200, gemini_response(VALID)))
    ledger = RecordingLedger()
    completion = _execute(router, ledger)
    assert completion.model_used == "gemini-2.5-flash"
    assert [r.error_code for r in ledger.settled] == ["invalid_output", "invalid_output", None]
    assert completion.cost_nanos == sum(r.cost_nanos for r in ledger.settled)
    assert len(completion.attempts) == 3


def test_a_400_is_our_mistake_and_is_not_retried_on_gemini(
    openai_api: FakeApi, gemini_api: FakeApi, router: Router
) -> None:
    openai_api.push(openai_error(400, "Invalid schema for response_format 'SelectedPositioning'"))
    ledger = RecordingLedger()
    with pytest.raises(InvalidRequest, match="Invalid schema"):
        _execute(router, ledger)
    assert gemini_api.requests == []
    assert ledger.events == ["reserve:gpt-5-mini", "settle:gpt-5-mini"]


def test_every_failure_is_listed_when_both_fail(
    openai_api: FakeApi, gemini_api: FakeApi, router: Router
) -> None:
    openai_api.push(openai_error(503, "overloaded", "server_error"))
    gemini_api.push(
        gemini_error(400, "INVALID_ARGUMENT", "API key not valid.", reason="API_KEY_INVALID")
    )
    ledger = RecordingLedger()
    with pytest.raises(AllProvidersFailed) as failed:
        _execute(router, ledger)
    assert [(f.model, f.code) for f in failed.value.failures] == [
        ("gpt-5-mini", "provider_unavailable"),
        ("gemini-2.5-flash", "auth_failed"),
    ]
    assert [r.cost_nanos for r in ledger.settled] == [0, 0]


def test_gemini_schema_invalid_output_is_repaired_too(
    openai_api: FakeApi, gemini_api: FakeApi, router: Router
) -> None:
    openai_api.push(openai_error(429, "slow down", "rate_limit_error"))
    gemini_api.push(
        Reply(200, gemini_response('{"option_number": 1}')), Reply(200, gemini_response(VALID))
    )
    completion = _execute(router, RecordingLedger())
    assert completion.model_used == "gemini-2.5-flash"
    contents = gemini_api.requests[1].body["contents"]
    assert contents[-2] == {"role": "model", "parts": [{"text": '{"option_number": 1}'}]}


def test_the_circuit_breaker_skips_a_provider_that_just_failed(
    openai_api: FakeApi,
    gemini_api: FakeApi,
    openai_provider: OpenAIProvider,
    gemini_provider: GeminiProvider,
) -> None:
    router = Router(
        {"openai": openai_provider, "gemini": gemini_provider},
        breaker=CircuitBreaker(cooldown_seconds=300),
    )
    openai_api.push(openai_error(500, "boom", "server_error"))
    gemini_api.push(Reply(200, gemini_response(VALID)), Reply(200, gemini_response(VALID)))
    _execute(router, RecordingLedger())
    ledger = RecordingLedger()
    assert _execute(router, ledger).model_used == "gemini-2.5-flash"
    assert len(openai_api.requests) == 1
    assert ledger.events == ["reserve:gemini-2.5-flash", "settle:gemini-2.5-flash"]


def test_keys_never_reach_logs_or_errors(
    openai_api: FakeApi, gemini_api: FakeApi, router: Router, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    openai_api.push(openai_error(401, "Incorrect API key provided: sk-proto..."))
    gemini_api.push(gemini_error(401, "UNAUTHENTICATED", "Request had invalid credentials"))
    with pytest.raises(AllProvidersFailed) as failed:
        _execute(router, RecordingLedger())
    assert "llm attempt" in caplog.text
    assert OPENAI_KEY not in caplog.text and GEMINI_KEY not in caplog.text
    assert OPENAI_KEY not in str(failed.value) and GEMINI_KEY not in str(failed.value)


@pytest.fixture
def configured(
    openai_api: FakeApi, gemini_api: FakeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Settings and secrets that point the real router at the loopback servers."""
    monkeypatch.setenv("DOTENV_PATH", str(tmp_path / "absent.env"))
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{openai_api.port}/v1")
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    monkeypatch.setenv("GEMINI_BASE_URL", f"http://127.0.0.1:{gemini_api.port}/")
    monkeypatch.setenv("LLM_TIMEOUT_SECONDS", "5")
    for name in ("LLM_OFFLINE", "GEMINI_USE_VERTEX", "MODEL_CATALOGUE_PATH", "APP_MODE"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_get_router_uses_settings_and_secrets(
    configured: None, openai_api: FakeApi, gemini_api: FakeApi
) -> None:
    router = get_router()
    assert router.providers == ["openai", "gemini"]
    openai_api.push(openai_error(503, "overloaded", "server_error"))
    gemini_api.push(Reply(200, gemini_response(VALID)))
    completion = router.execute(
        "positioning_analysis",
        MESSAGES,
        schema=SelectedPositioning,
        allowed_tiers=frozenset({"nano", "mini"}),
        call_key="run-8:positioning",
    )
    assert completion.model_used == "gemini-2.5-flash"
    assert openai_api.requests[0].headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert gemini_api.requests[0].headers["x-goog-api-key"] == GEMINI_KEY


def test_a_self_hosted_openai_server_needs_no_key(
    configured: None, openai_api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("GEMINI_API_KEY")
    get_settings.cache_clear()
    router = build_router()
    assert router.providers == ["openai"]
    openai_api.push(Reply(200, chat_completion(VALID)))
    assert _execute(router, RecordingLedger()).provider == "openai"
