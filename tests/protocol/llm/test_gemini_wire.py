"""The real `google-genai` SDK against a loopback generateContent server: request shape, usage,
faults."""

from __future__ import annotations

from typing import Any

import pytest
from google.oauth2.credentials import Credentials

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
    ReasoningEffort,
)
from common.llm.providers.gemini import GeminiProvider
from common.llm.schema import gemini_schema, response_schema
from common.models import AnalyticsOutput
from common.spend.records import TokenUsage
from tests.protocol.llm.conftest import GEMINI_KEY, SLOW_REPLY_SECONDS, TIMEOUT_SECONDS
from tests.protocol.llm.servers import (
    FakeApi,
    Reply,
    closed_port,
    gemini_error,
    gemini_response,
)

MESSAGES = [
    Message(role="system", content="You are a strategist."),
    Message(role="user", content="Plan the measurement."),
    Message(role="assistant", content="{}"),
    Message(role="user", content="Again, valid this time."),
]


def _thinking_budget(config: dict[str, Any]) -> int:
    # google-genai 2.x serialises ThinkingConfig with its proto field names (thinking_budget);
    # Google's JSON transcoding accepts those as well as lowerCamelCase.
    [(name, budget)] = config["thinkingConfig"].items()
    assert name in ("thinkingBudget", "thinking_budget")
    return int(budget)


def _request(**changes: object) -> ProviderRequest:
    request = ProviderRequest(
        model="gemini-2.5-flash",
        messages=MESSAGES,
        max_output_tokens=12_000,
        reasoning_effort="medium",
        json_schema=response_schema(AnalyticsOutput),
        schema_name="AnalyticsOutput",
        timeout_seconds=TIMEOUT_SECONDS,
    )
    return request.model_copy(update=changes)


def test_request_carries_model_thinking_budget_and_json_schema(
    gemini_api: FakeApi, gemini_provider: GeminiProvider
) -> None:
    gemini_api.push(Reply(200, gemini_response('{"ok": true}')))
    gemini_provider.complete(_request())
    [sent] = gemini_api.requests
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == GEMINI_KEY
    assert sent.body["systemInstruction"]["parts"] == [{"text": "You are a strategist."}]
    assert [(c["role"], c["parts"][0]["text"]) for c in sent.body["contents"]] == [
        ("user", "Plan the measurement."),
        ("model", "{}"),
        ("user", "Again, valid this time."),
    ]
    config = sent.body["generationConfig"]
    assert config["maxOutputTokens"] == 12_000
    assert _thinking_budget(config) == 4096
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == gemini_schema(response_schema(AnalyticsOutput))
    amec = config["responseJsonSchema"]["properties"]["amec"]
    assert (amec["minItems"], amec["maxItems"]) == (6, 6)
    assert amec["items"]["additionalProperties"] is False
    margin = config["responseJsonSchema"]["properties"]["clv"]["properties"]["gross_margin"]
    assert margin == {"type": "number", "minimum": 0, "maximum": 1}


@pytest.mark.parametrize(
    ("model", "effort", "budget"),
    [
        ("gemini-2.5-flash-lite", "minimal", 0),
        ("gemini-2.5-flash", "low", 1024),
        ("gemini-2.5-pro", "minimal", 128),
        ("gemini-2.5-pro", "high", 16384),
        ("gemini-2.5-flash", None, 1024),
    ],
)
def test_reasoning_effort_maps_to_a_thinking_budget(
    gemini_api: FakeApi,
    gemini_provider: GeminiProvider,
    model: str,
    effort: ReasoningEffort | None,
    budget: int,
) -> None:
    gemini_api.push(Reply(200, gemini_response("fine")))
    gemini_provider.complete(_request(model=model, reasoning_effort=effort, json_schema=None))
    [sent] = gemini_api.requests
    assert sent.path == f"/v1beta/models/{model}:generateContent"
    assert _thinking_budget(sent.body["generationConfig"]) == budget
    assert "responseJsonSchema" not in sent.body["generationConfig"]


def test_usage_separates_cached_and_thought_tokens(
    gemini_api: FakeApi, gemini_provider: GeminiProvider
) -> None:
    gemini_api.push(
        Reply(
            200,
            gemini_response(
                '{"ok": true}',
                prompt_tokens=9000,
                cached_tokens=4096,
                candidates_tokens=1200,
                thoughts_tokens=3000,
            ),
        )
    )
    response = gemini_provider.complete(_request())
    assert response.text == '{"ok": true}'
    assert response.usage == TokenUsage(
        input_tokens=9000, cached_input_tokens=4096, output_tokens=1200, reasoning_tokens=3000
    )


def test_thought_parts_are_not_part_of_the_answer(
    gemini_api: FakeApi, gemini_provider: GeminiProvider
) -> None:
    body = gemini_response("answer")
    body["candidates"][0]["content"]["parts"].insert(0, {"text": "thinking...", "thought": True})
    gemini_api.push(Reply(200, body))
    assert gemini_provider.complete(_request()).text == "answer"


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (gemini_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded"), RateLimited),
        (gemini_error(500, "INTERNAL", "An internal error has occurred"), ProviderUnavailable),
        (gemini_error(503, "UNAVAILABLE", "The model is overloaded"), ProviderUnavailable),
        (
            gemini_error(401, "UNAUTHENTICATED", "Request had invalid credentials"),
            ProviderAuthError,
        ),
        (gemini_error(403, "PERMISSION_DENIED", "Permission denied"), ProviderAuthError),
        (
            gemini_error(400, "INVALID_ARGUMENT", "API key not valid.", reason="API_KEY_INVALID"),
            ProviderAuthError,
        ),
        (Reply(200, b'{"candidates": [{"content": '), ProviderUnavailable),
    ],
    ids=["429", "500", "503", "401", "403", "400-api-key-invalid", "malformed-body"],
)
def test_faults_become_typed_errors_after_one_request(
    gemini_api: FakeApi,
    gemini_provider: GeminiProvider,
    reply: Reply,
    error: type[Exception],
) -> None:
    gemini_api.push(reply, Reply(200, gemini_response("{}")))
    with pytest.raises(error) as raised:
        gemini_provider.complete(_request())
    assert len(gemini_api.requests) == 1  # SDK retries are off
    assert GEMINI_KEY not in str(raised.value)


def test_our_bad_request_is_an_invalid_request(
    gemini_api: FakeApi, gemini_provider: GeminiProvider
) -> None:
    gemini_api.push(gemini_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received."))
    with pytest.raises(InvalidRequest, match="Invalid JSON payload"):
        gemini_provider.complete(_request())


def test_timeout(gemini_api: FakeApi, gemini_provider: GeminiProvider) -> None:
    gemini_api.push(Reply(200, gemini_response("{}"), delay_seconds=SLOW_REPLY_SECONDS))
    with pytest.raises(ProviderTimeout):
        gemini_provider.complete(_request())
    assert len(gemini_api.requests) == 1


def test_connection_refused() -> None:
    provider = GeminiProvider(
        api_key=GEMINI_KEY, base_url=f"http://127.0.0.1:{closed_port()}/", timeout_seconds=2
    )
    with pytest.raises(ProviderConnectionError):
        provider.complete(_request())


@pytest.mark.parametrize(
    ("finish", "text", "match"),
    [("MAX_TOKENS", "{", "MAX_TOKENS"), ("SAFETY", "", "SAFETY"), ("STOP", "", "empty answer")],
)
def test_unusable_answers_are_invalid_output_and_still_billed(
    gemini_api: FakeApi, gemini_provider: GeminiProvider, finish: str, text: str, match: str
) -> None:
    gemini_api.push(Reply(200, gemini_response(text, finish_reason=finish)))
    with pytest.raises(InvalidOutput, match=match) as raised:
        gemini_provider.complete(_request())
    assert raised.value.usage is not None and raised.value.usage.input_tokens == 1500


def test_vertex_ai_uses_the_project_location_and_a_bearer_token(gemini_api: FakeApi) -> None:
    provider = GeminiProvider(
        vertex_project="raptorflow-test",
        vertex_location="us-central1",
        base_url=f"http://127.0.0.1:{gemini_api.port}/",
        timeout_seconds=TIMEOUT_SECONDS,
        credentials=Credentials(token="ya29.vertex-test-token"),  # type: ignore[no-untyped-call]
    )
    gemini_api.push(Reply(200, gemini_response('{"ok": true}')))
    response = provider.complete(_request(model="gemini-2.5-pro"))
    assert response.usage.reasoning_tokens == 250
    [sent] = gemini_api.requests
    assert sent.path == (
        "/v1beta1/projects/raptorflow-test/locations/us-central1/publishers/google/models/"
        "gemini-2.5-pro:generateContent"
    )
    assert sent.headers["authorization"] == "Bearer ya29.vertex-test-token"
    assert "x-goog-api-key" not in sent.headers
    assert sent.body["generationConfig"]["responseMimeType"] == "application/json"
