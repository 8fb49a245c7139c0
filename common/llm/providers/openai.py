"""OpenAI provider: GPT-5 models through the official SDK's Chat Completions API.

Chat Completions (not Responses) because it carries everything the router needs for GPT-5 --
`reasoning_effort`, strict `json_schema` response format, `max_completion_tokens` (bounding
output *and* reasoning) and usage with `cached_tokens` and `reasoning_tokens` -- and it is the API
that OpenAI-compatible self-hosted servers (vLLM, llama.cpp, Ollama, LiteLLM proxy) implement, so
`openai_base_url` can point at one. See docs/decisions/003-model-router.md.

SDK retries are off (`max_retries=0`): one attempt per call; the router's fallback chain and the
workflow own retries.
"""

from __future__ import annotations

import logging
import time
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
            completion = self._client.chat.completions.create(
                **body, timeout=request.timeout_seconds
            )
        except openai.APIError as exc:
            raise _error(exc, request.model) from exc
        except ValueError as exc:
            # A 200 whose body is not JSON: the provider's side (or a proxy) is broken.
            raise ProviderUnavailable(
                f"unreadable response: {exc}"[:500], provider=PROVIDER, model=request.model
            ) from exc
        latency_ms = (time.perf_counter() - started) * 1000
        usage = _usage(completion, request)
        if not completion.choices:
            raise InvalidOutput(
                "response has no choices", provider=PROVIDER, model=request.model, usage=usage
            )
        choice = completion.choices[0]
        if choice.message.refusal:
            raise InvalidOutput(
                f"model refused: {choice.message.refusal[:200]}",
                provider=PROVIDER,
                model=request.model,
                usage=usage,
            )
        if choice.finish_reason == "length":
            raise InvalidOutput(
                f"answer cut off at max_completion_tokens={request.max_output_tokens}",
                provider=PROVIDER,
                model=request.model,
                usage=usage,
            )
        text = choice.message.content or ""
        if not text.strip():
            raise InvalidOutput(
                f"empty answer (finish_reason={choice.finish_reason})",
                provider=PROVIDER,
                model=request.model,
                usage=usage,
            )
        return ProviderResponse(
            text=text, usage=usage, model=request.model, provider=PROVIDER, latency_ms=latency_ms
        )


def _usage(completion: Any, request: ProviderRequest) -> TokenUsage:
    usage = completion.usage
    if usage is None:
        # Some OpenAI-compatible servers omit usage: count locally rather than record $0.
        logger.warning(
            "openai-compatible response without usage; counting tokens locally",
            extra={"json_fields": {"model": request.model}},
        )
        text = completion.choices[0].message.content if completion.choices else ""
        return TokenUsage(
            input_tokens=count_message_tokens(request.messages),
            output_tokens=count_tokens(text or ""),
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
