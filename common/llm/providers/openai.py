"""OpenAI provider: GPT-5 models through the official SDK's Chat Completions API.

Chat Completions (not Responses) because it carries everything the router needs for GPT-5 --
`reasoning_effort`, strict `json_schema` response format, `max_completion_tokens` (bounding
output *and* reasoning) and usage with `cached_tokens` and `reasoning_tokens` -- and it is the API
that OpenAI-compatible self-hosted servers (vLLM, llama.cpp, Ollama, LiteLLM proxy) implement, so
`openai_base_url` can point at one. See docs/decisions/003-model-router.md.

SDK retries are off (`max_retries=0`): one attempt per call; the router's fallback chain and the
workflow own retries.

A request with `on_output` streams (`stream=True`, server-sent events, with
`stream_options.include_usage` so the last event carries the usage): each content delta's tokens
are counted as it arrives and the sink hears the total so far. The answer is then judged as a
whole answer is (refusal, cut off, empty).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import openai

from common.llm.base import (
    InvalidOutput,
    InvalidRequest,
    ProviderAuthError,
    ProviderConnectionError,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from common.llm.schema import openai_schema
from common.llm.tokens import count_message_tokens, count_tokens
from common.platform.secrets import redact
from common.spend.records import TokenUsage

PROVIDER = "openai"
logger = logging.getLogger(__name__)


class OpenAIProvider:
    """Calls an OpenAI (or OpenAI-compatible) Chat Completions endpoint."""

    name = PROVIDER

    def __init__(self, *, api_key: str, base_url: str | None = None, timeout_seconds: float = 60):
        self._client = openai.OpenAI(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_seconds
        )

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        """One Chat Completions call; raises a `ProviderError` subclass or `InvalidRequest`."""
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [dict(m) for m in request.messages],
            "max_completion_tokens": request.max_output_tokens,
        }
        if request.reasoning_effort is not None:
            body["reasoning_effort"] = request.reasoning_effort
        if request.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": request.schema_name or "answer",
                    "schema": openai_schema(request.json_schema),
                    "strict": True,
                },
            }
        started = time.perf_counter()
        try:
            if request.on_output is not None:
                answer = self._streamed(body, request)
            else:
                completion = self._client.chat.completions.create(
                    **body, timeout=request.timeout_seconds
                )
                answer = _whole(completion)
        except openai.APIError as exc:
            raise _error(exc, request.model) from exc
        except ValueError as exc:
            # A 200 whose body is not JSON: the provider's side (or a proxy) is broken.
            raise ProviderUnavailable(
                f"unreadable response: {exc}"[:500], provider=PROVIDER, model=request.model
            ) from exc
        latency_ms = (time.perf_counter() - started) * 1000
        return _judged(answer, request, latency_ms)

    def _streamed(self, body: dict[str, Any], request: ProviderRequest) -> _Answer:
        sink = request.on_output
        assert sink is not None
        stream = self._client.chat.completions.create(
            **body,
            stream=True,
            stream_options={"include_usage": True},
            timeout=request.timeout_seconds,
        )
        answer = _Answer("", None, None, None, choices=0, streamed=True)
        texts: list[str] = []
        refusals: list[str] = []
        tokens = 0
        try:
            for chunk in stream:
                if chunk.usage is not None:
                    answer.usage = chunk.usage
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    answer.choices = 1
                    delta = choice.delta
                    if delta.content:
                        texts.append(delta.content)
                        tokens += count_tokens(delta.content)
                        sink(tokens)
                    if delta.refusal:
                        refusals.append(delta.refusal)
                    if choice.finish_reason is not None:
                        answer.finish_reason = choice.finish_reason
        except (openai.APIError, ValueError) as exc:
            # Cut off mid-answer: the prompt and the tokens streamed so far are billed.
            error = _error(exc, request.model) if isinstance(exc, openai.APIError) else None
            if error is None:
                error = ProviderUnavailable(
                    f"unreadable stream: {exc}"[:500], provider=PROVIDER, model=request.model
                )
            if isinstance(error, ProviderError):
                error.usage = TokenUsage(
                    input_tokens=count_message_tokens(request.messages), output_tokens=tokens
                )
            raise error from exc
        finally:
            stream.close()
        answer.text = "".join(texts)
        answer.refusal = "".join(refusals) or None
        return answer


@dataclass
class _Answer:
    """What a call answered, streamed or whole: the first choice and the usage."""

    text: str
    refusal: str | None
    finish_reason: str | None
    usage: Any  # the SDK's CompletionUsage, or None
    choices: int
    streamed: bool = False


def _whole(completion: Any) -> _Answer:
    if not completion.choices:
        return _Answer("", None, None, completion.usage, 0)
    choice = completion.choices[0]
    return _Answer(
        choice.message.content or "",
        choice.message.refusal,
        choice.finish_reason,
        completion.usage,
        len(completion.choices),
    )


def _judged(answer: _Answer, request: ProviderRequest, latency_ms: float) -> ProviderResponse:
    """The answer, or `InvalidOutput` (still billed) when it is no answer."""
    usage = _usage(answer, request)
    if not answer.choices:
        raise InvalidOutput(
            "response has no choices", provider=PROVIDER, model=request.model, usage=usage
        )
    if answer.streamed and answer.finish_reason is None and not answer.refusal:
        raise InvalidOutput(
            "the stream ended before the answer finished",
            provider=PROVIDER,
            model=request.model,
            usage=usage,
        )
    if answer.refusal:
        raise InvalidOutput(
            f"model refused: {answer.refusal[:200]}",
            provider=PROVIDER,
            model=request.model,
            usage=usage,
        )
    if answer.finish_reason == "length":
        raise InvalidOutput(
            f"answer cut off at max_completion_tokens={request.max_output_tokens}",
            provider=PROVIDER,
            model=request.model,
            usage=usage,
        )
    if not answer.text.strip():
        raise InvalidOutput(
            f"empty answer (finish_reason={answer.finish_reason})",
            provider=PROVIDER,
            model=request.model,
            usage=usage,
        )
    return ProviderResponse(
        text=answer.text, usage=usage, model=request.model, provider=PROVIDER, latency_ms=latency_ms
    )


def _usage(answer: _Answer, request: ProviderRequest) -> TokenUsage:
    usage = answer.usage
    if usage is None:
        # Some OpenAI-compatible servers omit usage: count locally rather than record $0.
        logger.warning(
            "openai-compatible response without usage; counting tokens locally",
            extra={"json_fields": {"model": request.model}},
        )
        return TokenUsage(
            input_tokens=count_message_tokens(request.messages),
            output_tokens=count_tokens(answer.text),
        )
    prompt_details = usage.prompt_tokens_details
    completion_details = usage.completion_tokens_details
    cached = (prompt_details.cached_tokens or 0) if prompt_details else 0
    reasoning = (completion_details.reasoning_tokens or 0) if completion_details else 0
    # completion_tokens includes reasoning tokens; TokenUsage keeps them apart.
    reasoning = min(reasoning, usage.completion_tokens)
    return TokenUsage(
        input_tokens=usage.prompt_tokens,
        cached_input_tokens=min(cached, usage.prompt_tokens),
        output_tokens=usage.completion_tokens - reasoning,
        reasoning_tokens=reasoning,
    )


def _error(exc: openai.APIError, model: str) -> ProviderError | InvalidRequest:
    # Redacted before it is cut: a key cut short would no longer be recognised.
    message = redact(f"{type(exc).__name__}: {exc.message}")[:500]
    if isinstance(exc, openai.APITimeoutError):
        return ProviderTimeout(message, provider=PROVIDER, model=model)
    if isinstance(exc, openai.APIConnectionError):
        return ProviderConnectionError(message, provider=PROVIDER, model=model)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status == 429:
            return RateLimited(message, provider=PROVIDER, model=model)
        if status in (401, 403):
            return ProviderAuthError(message, provider=PROVIDER, model=model)
        if status == 408:
            return ProviderTimeout(message, provider=PROVIDER, model=model)
        if status >= 500:
            return ProviderUnavailable(message, provider=PROVIDER, model=model)
        return InvalidRequest(f"openai rejected the request for {model}: {message}")
    # A 200 whose body the SDK could not read: the provider's side is broken.
    return ProviderUnavailable(message, provider=PROVIDER, model=model)
