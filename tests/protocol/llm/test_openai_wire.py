"""The real `openai` SDK against a loopback Chat Completions server: request shape, usage,
faults."""

from __future__ import annotations

import pytest

from common.llm.base import (
    InvalidOutput,
    InvalidRequest,
    Message,
    ProviderAuthError,
    ProviderConnectionError,
    ProviderRequest,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from common.llm.providers.openai import OpenAIProvider
from common.llm.schema import openai_schema, response_schema
from common.models import StrategyOutput
from common.spend.records import TokenUsage
from tests.protocol.llm.conftest import OPENAI_KEY, SLOW_REPLY_SECONDS, TIMEOUT_SECONDS
from tests.protocol.llm.servers import FakeApi, Reply, chat_completion, closed_port, openai_error

MESSAGES = [
    Message(role="system", content="You are a strategist."),
    Message(role="user", content="Define the 7Ps."),
    Message(role="assistant", content="{}"),
    Message(role="user", content="Again, valid this time."),
]


def _request(**changes: object) -> ProviderRequest:
    request = ProviderRequest(
        model="gpt-5",
        messages=MESSAGES,
        max_output_tokens=12_000,
        reasoning_effort="high",
        json_schema=response_schema(StrategyOutput),
        schema_name="StrategyOutput",
        timeout_seconds=TIMEOUT_SECONDS,
    )
    return request.model_copy(update=changes)


def test_request_carries_model_effort_and_strict_schema(
    openai_api: FakeApi, openai_provider: OpenAIProvider
) -> None:
    openai_api.push(Reply(200, chat_completion('{"ok": true}', model="gpt-5")))
    openai_provider.complete(_request())
    [sent] = openai_api.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert sent.body["model"] == "gpt-5"
    assert sent.body["reasoning_effort"] == "high"
    assert sent.body["max_completion_tokens"] == 12_000
    assert sent.body["messages"] == [dict(m) for m in MESSAGES]
    assert sent.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "StrategyOutput",
            "schema": openai_schema(response_schema(StrategyOutput)),
            "strict": True,
        },
    }
    schema = sent.body["response_format"]["json_schema"]["schema"]
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["marketing_7ps", "north_star_metrics"]
    metrics = schema["properties"]["north_star_metrics"]
    assert (metrics["minItems"], metrics["maxItems"]) == (1, 5)
    assert metrics["items"]["properties"]["measurement_frequency"]["enum"] == [
        "daily",
        "weekly",
        "monthly",
        "quarterly",
    ]


def test_plain_calls_send_no_response_format(
    openai_api: FakeApi, openai_provider: OpenAIProvider
) -> None:
    openai_api.push(Reply(200, chat_completion("A sentence.")))
    response = openai_provider.complete(_request(json_schema=None, reasoning_effort=None))
    assert response.text == "A sentence."
    assert "response_format" not in openai_api.requests[0].body
    assert "reasoning_effort" not in openai_api.requests[0].body


def test_usage_separates_cached_and_reasoning_tokens(
    openai_api: FakeApi, openai_provider: OpenAIProvider
) -> None:
    openai_api.push(
        Reply(
            200,
            chat_completion(
                '{"ok": true}',
                prompt_tokens=5000,
                cached_tokens=3072,
                completion_tokens=2400,
                reasoning_tokens=1600,
            ),
        )
    )
    response = openai_provider.complete(_request())
    assert response.usage == TokenUsage(
        input_tokens=5000, cached_input_tokens=3072, output_tokens=800, reasoning_tokens=1600
    )
    assert (response.provider, response.model) == ("openai", "gpt-5")


@pytest.mark.parametrize(
    ("reply", "error", "code"),
    [
        (openai_error(429, "Rate limit reached", "rate_limit_error"), RateLimited, "rate_limited"),
        (openai_error(500, "The server had an error", "server_error"), ProviderUnavailable, None),
        (openai_error(503, "The engine is overloaded", "server_error"), ProviderUnavailable, None),
        (openai_error(401, "Incorrect API key provided"), ProviderAuthError, "auth_failed"),
        (openai_error(403, "Project does not have access"), ProviderAuthError, "auth_failed"),
        (Reply(200, b'{"id": "chatcmpl-1", "choices": [{"mess'), ProviderUnavailable, None),
    ],
    ids=["429", "500", "503", "401", "403", "malformed-body"],
)
def test_faults_become_typed_errors_after_one_request(
    openai_api: FakeApi,
    openai_provider: OpenAIProvider,
    reply: Reply,
    error: type[Exception],
    code: str | None,
) -> None:
    openai_api.push(reply, Reply(200, chat_completion('{"ok": true}')))
    with pytest.raises(error) as raised:
        openai_provider.complete(_request())
    assert len(openai_api.requests) == 1  # SDK retries are off
    if code is not None:
        assert raised.value.code == code  # type: ignore[attr-defined]
    assert OPENAI_KEY not in str(raised.value)


@pytest.mark.parametrize("status", [400, 404, 422])
def test_our_bad_requests_are_invalid_requests(
    openai_api: FakeApi, openai_provider: OpenAIProvider, status: int
) -> None:
    openai_api.push(openai_error(status, "Invalid schema for response_format"))
    with pytest.raises(InvalidRequest, match="Invalid schema"):
        openai_provider.complete(_request())


def test_timeout(openai_api: FakeApi, openai_provider: OpenAIProvider) -> None:
    openai_api.push(Reply(200, chat_completion("{}"), delay_seconds=SLOW_REPLY_SECONDS))
    with pytest.raises(ProviderTimeout):
        openai_provider.complete(_request())
    assert len(openai_api.requests) == 1


def test_connection_refused() -> None:
    provider = OpenAIProvider(
        api_key=OPENAI_KEY, base_url=f"http://127.0.0.1:{closed_port()}/v1", timeout_seconds=2
    )
    with pytest.raises(ProviderConnectionError):
        provider.complete(_request())


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (chat_completion("{", finish_reason="length"), "cut off"),
        (chat_completion(None, refusal="I can't help with that."), "refused"),
        (chat_completion(""), "empty answer"),
    ],
    ids=["truncated", "refusal", "empty"],
)
def test_unusable_answers_are_invalid_output_and_still_billed(
    openai_api: FakeApi, openai_provider: OpenAIProvider, body: dict[str, object], match: str
) -> None:
    openai_api.push(Reply(200, body))
    with pytest.raises(InvalidOutput, match=match) as raised:
        openai_provider.complete(_request())
    assert raised.value.usage is not None and raised.value.usage.input_tokens == 1200
