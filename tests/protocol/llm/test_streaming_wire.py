"""Streamed answers through the real `openai` and `google-genai` SDKs against loopback servers
speaking server-sent events: tokens are heard as they arrive, the whole answer and its usage
come out as a whole call's would, and a stream that breaks off is an error that still bills
what was streamed."""

from __future__ import annotations

import pytest

from common.llm import CircuitBreaker, Router
from common.llm.base import (
    InvalidOutput,
    Message,
    ProviderRequest,
    ProviderUnavailable,
    RateLimited,
)
from common.llm.providers.gemini import GeminiProvider
from common.llm.providers.openai import OpenAIProvider
from common.llm.schema import response_schema
from common.llm.tokens import count_tokens
from common.models import SelectedPositioning
from common.spend.records import TokenUsage
from tests.protocol.llm.conftest import OPENAI_KEY, TIMEOUT_SECONDS
from tests.protocol.llm.servers import (
    FakeApi,
    Reply,
    chat_completion,
    gemini_chunks,
    gemini_error,
    gemini_response,
    openai_chunks,
    openai_error,
)
from tests.unit.llm.doubles import RecordingLedger, business_messages

ANSWER = SelectedPositioning(
    option_number=2,
    statement="The roaster that opens before the commuter train does.",
    rationale="Commuters named the early hour as the reason they switch cafes.",
).model_dump_json()
MESSAGES = [Message(role="user", content="Choose the positioning.")]


def _request(model: str, heard: list[int]) -> ProviderRequest:
    return ProviderRequest(
        model=model,
        messages=MESSAGES,
        max_output_tokens=4000,
        reasoning_effort="low",
        json_schema=response_schema(SelectedPositioning),
        schema_name="SelectedPositioning",
        timeout_seconds=TIMEOUT_SECONDS,
        on_output=heard.append,
    )


# --- OpenAI ---------------------------------------------------------------------------------


def test_openai_streams_server_sent_events_and_hears_tokens_as_they_arrive(
    openai_api: FakeApi, openai_provider: OpenAIProvider
) -> None:
    openai_api.push(
        Reply(200, chat_completion(ANSWER, completion_tokens=900, reasoning_tokens=400))
    )
    heard: list[int] = []
    response = openai_provider.complete(_request("gpt-5-mini", heard))
    [sent] = openai_api.requests
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert response.text == ANSWER
    # The usage chunk at the end of the stream is the call's usage.
    assert response.usage == TokenUsage(
        input_tokens=1200, cached_input_tokens=200, output_tokens=500, reasoning_tokens=400
    )
    assert len(heard) == 4 and heard == sorted(heard)  # one per content delta, rising
    assert heard[-1] == pytest.approx(count_tokens(ANSWER), abs=4)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (chat_completion("{", finish_reason="length"), "cut off"),
        (chat_completion(None, refusal="I can't help with that."), "refused"),
        (chat_completion(""), "empty answer"),
    ],
    ids=["truncated", "refusal", "empty"],
)
def test_an_unusable_streamed_answer_is_invalid_output_and_billed(
    openai_api: FakeApi, openai_provider: OpenAIProvider, body: dict[str, object], match: str
) -> None:
    openai_api.push(Reply(200, body))
    with pytest.raises(InvalidOutput, match=match) as raised:
        openai_provider.complete(_request("gpt-5-mini", []))
    assert raised.value.usage is not None and raised.value.usage.input_tokens == 1200


def test_an_openai_stream_that_breaks_off_bills_what_arrived(
    openai_api: FakeApi, openai_provider: OpenAIProvider
) -> None:
    events = openai_chunks(chat_completion(ANSWER))[:3]  # the role and two pieces, no end
    openai_api.push(Reply(events=events, cut=True))
    heard: list[int] = []
    with pytest.raises(InvalidOutput, match="stream ended before the answer finished"):
        openai_provider.complete(_request("gpt-5-mini", heard))
    assert heard  # the tokens that did arrive were heard


def test_an_error_event_mid_stream_is_the_providers_failure_and_bills_what_arrived(
    openai_api: FakeApi, openai_provider: OpenAIProvider
) -> None:
    events: list[object] = [*openai_chunks(chat_completion(ANSWER))[:2]]
    events.append({"error": {"message": "The server is overloaded", "type": "server_error"}})
    openai_api.push(Reply(events=events, cut=True))
    heard: list[int] = []
    with pytest.raises(ProviderUnavailable, match="overloaded") as raised:
        openai_provider.complete(_request("gpt-5-mini", heard))
    usage = raised.value.usage
    assert usage is not None and usage.output_tokens == heard[-1] > 0 and usage.input_tokens > 0


def test_errors_before_a_stream_starts_are_typed_as_for_a_whole_answer(
    openai_api: FakeApi, openai_provider: OpenAIProvider
) -> None:
    openai_api.push(openai_error(429, "Rate limit reached", "rate_limit_error"))
    with pytest.raises(RateLimited):
        openai_provider.complete(_request("gpt-5-mini", []))
    assert len(openai_api.requests) == 1  # SDK retries are off


# --- Gemini ---------------------------------------------------------------------------------


def test_gemini_streams_stream_generate_content_and_hears_tokens(
    gemini_api: FakeApi, gemini_provider: GeminiProvider
) -> None:
    body = gemini_response(ANSWER, candidates_tokens=800, thoughts_tokens=300)
    body["candidates"][0]["content"]["parts"].insert(0, {"text": "thinking...", "thought": True})
    gemini_api.push(Reply(200, body))
    heard: list[int] = []
    response = gemini_provider.complete(_request("gemini-2.5-flash", heard))
    [sent] = gemini_api.requests
    assert sent.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert sent.body["generationConfig"]["responseMimeType"] == "application/json"
    assert response.text == ANSWER  # the thought is not part of the answer
    assert response.usage == TokenUsage(
        input_tokens=1500, cached_input_tokens=500, output_tokens=800, reasoning_tokens=300
    )
    assert len(heard) == 4 and heard == sorted(heard)
    assert heard[-1] == pytest.approx(count_tokens(ANSWER), abs=4)


def test_a_gemini_stream_stopped_for_safety_is_invalid_output_and_billed(
    gemini_api: FakeApi, gemini_provider: GeminiProvider
) -> None:
    gemini_api.push(Reply(200, gemini_response('{"option', finish_reason="MAX_TOKENS")))
    with pytest.raises(InvalidOutput, match="MAX_TOKENS") as raised:
        gemini_provider.complete(_request("gemini-2.5-flash", []))
    assert raised.value.usage is not None and raised.value.usage.input_tokens == 1500


def test_a_gemini_stream_that_breaks_off_is_invalid_output(
    gemini_api: FakeApi, gemini_provider: GeminiProvider
) -> None:
    events = gemini_chunks(gemini_response(ANSWER))[:2]  # no finish reason, no usage
    gemini_api.push(Reply(events=events, cut=True))
    with pytest.raises(InvalidOutput, match="stream ended before the answer finished"):
        gemini_provider.complete(_request("gemini-2.5-flash", []))


def test_gemini_errors_before_a_stream_starts_are_typed(
    gemini_api: FakeApi, gemini_provider: GeminiProvider
) -> None:
    gemini_api.push(gemini_error(503, "UNAVAILABLE", "The model is overloaded"))
    with pytest.raises(ProviderUnavailable):
        gemini_provider.complete(_request("gemini-2.5-flash", []))


# --- Through the router ---------------------------------------------------------------------


def test_the_router_streams_through_the_fallback_chain_to_the_sink(
    openai_api: FakeApi,
    gemini_api: FakeApi,
    openai_provider: OpenAIProvider,
    gemini_provider: GeminiProvider,
) -> None:
    openai_api.push(openai_error(503, "The engine is overloaded", "server_error"))
    gemini_api.push(Reply(200, gemini_response(ANSWER)))
    router = Router(
        {"openai": openai_provider, "gemini": gemini_provider},
        timeout_seconds=TIMEOUT_SECONDS,
        breaker=CircuitBreaker(cooldown_seconds=0),
    )
    heard: list[int] = []
    ledger = RecordingLedger()
    completion = router.execute(
        "positioning_selection",
        business_messages(),
        schema=SelectedPositioning,
        tier="mini",
        ledger=ledger,
        call_key="run-3:positioning:selection",
        on_output=heard.append,
    )
    assert completion.provider == "gemini" and completion.value().option_number == 2
    assert heard and heard == sorted(heard)
    assert [a.outcome for a in ledger.settled] == ["failed", "fell_back"]
    assert openai_api.requests[0].body["stream"] is True
