"""Gemini provider: Gemini 2.5 models through `google-genai`, with an API key or Vertex AI (ADC).

Structured output uses `responseMimeType: application/json` with `responseJsonSchema` (standard
JSON Schema). Reasoning effort becomes an explicit `thinkingBudget`, never dynamic thinking, so the
router can bound what a call costs:

| effort  | flash-lite / flash | pro            |
| ------- | ------------------ | -------------- |
| minimal | 0 (thinking off)   | 128 (its floor)|
| low     | 1024               | 1024           |
| medium  | 4096               | 4096           |
| high    | 16384              | 16384          |

SDK retries are off (one attempt: `HttpRetryOptions(attempts=1)`); the per-call timeout is passed
in each request's `http_options`.

A request with `on_output` streams (`streamGenerateContent?alt=sse`): each chunk's answer text is
counted as it arrives (thoughts are not the answer) and the sink hears the total so far; the
last chunk carries the finish reason and the usage, and the whole is judged as one answer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
from google import genai
from google.auth.credentials import Credentials
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from common.llm.base import (
    InvalidOutput,
    InvalidRequest,
    Message,
    ProviderAuthError,
    ProviderConnectionError,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from common.llm.schema import gemini_schema
from common.llm.thinking import thinking_budget
from common.llm.tokens import count_message_tokens, count_tokens
from common.platform.secrets import redact
from common.spend.records import TokenUsage

PROVIDER = "gemini"
_TIMEOUTS = (httpx.TimeoutException, httpx2.TimeoutException)
_TRANSPORT_ERRORS = (httpx.TransportError, httpx2.TransportError)
_BAD_FINISH = {"MAX_TOKENS", "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"}


class GeminiProvider:
    """Calls Gemini's `generateContent` through the google-genai SDK."""

    name = PROVIDER

    def __init__(
        self,
        *,
        api_key: str | None = None,
        vertex_project: str | None = None,
        vertex_location: str | None = None,
        base_url: str | None = None,
        timeout_seconds: float = 60,
        credentials: Credentials | None = None,
    ):
        http_options = genai_types.HttpOptions(
            base_url=base_url,
            timeout=int(timeout_seconds * 1000),
            retry_options=genai_types.HttpRetryOptions(attempts=1),
        )
        if vertex_project is not None:
            # Vertex AI with Application Default Credentials (the function's service account)
            # unless `credentials` are given.
            self._client = genai.Client(
                vertexai=True,
                project=vertex_project,
                location=vertex_location,
                credentials=credentials,
                http_options=http_options,
            )
        elif api_key is not None:
            self._client = genai.Client(api_key=api_key, http_options=http_options)
        else:
            raise ValueError("GeminiProvider needs an api_key or a vertex_project")

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        """One `generateContent` call; raises a `ProviderError` subclass or `InvalidRequest`."""
        system, contents = _contents(request.messages)
        config = genai_types.GenerateContentConfig(
            system_instruction=system,
            max_output_tokens=request.max_output_tokens,
            thinking_config=genai_types.ThinkingConfig(
                thinking_budget=thinking_budget(request.model, request.reasoning_effort)
            ),
            http_options=genai_types.HttpOptions(
                timeout=int(request.timeout_seconds * 1000),
                retry_options=genai_types.HttpRetryOptions(attempts=1),
            ),
        )
        if request.json_schema is not None:
            config.response_mime_type = "application/json"
            config.response_json_schema = gemini_schema(request.json_schema)
        started = time.perf_counter()
        streamed = 0
        try:
            if request.on_output is not None:
                sink = request.on_output
                chunks = []
                for chunk in self._client.models.generate_content_stream(
                    model=request.model, contents=contents, config=config
                ):
                    chunks.append(chunk)
                    text = _text(chunk)
                    if text:
                        streamed += count_tokens(text)
                        sink(streamed)
                answer = _Answer.of_stream(chunks, streamed=True)
            else:
                response = self._client.models.generate_content(
                    model=request.model, contents=contents, config=config
                )
                answer = _Answer.of(response)
        except genai_errors.APIError as exc:
            raise _billed(_status_error(exc, request.model), request, streamed) from exc
        except _TIMEOUTS as exc:
            raise _billed(
                ProviderTimeout(
                    f"{type(exc).__name__}: {exc}", provider=PROVIDER, model=request.model
                ),
                request,
                streamed,
            ) from exc
        except _TRANSPORT_ERRORS as exc:
            raise _billed(
                ProviderConnectionError(
                    f"{type(exc).__name__}: {exc}", provider=PROVIDER, model=request.model
                ),
                request,
                streamed,
            ) from exc
        except ValueError as exc:
            # A 200 whose body is not the JSON the SDK expects: the provider's side is broken.
            raise ProviderUnavailable(
                f"unreadable response: {exc}"[:500], provider=PROVIDER, model=request.model
            ) from exc
        latency_ms = (time.perf_counter() - started) * 1000
        usage = answer.usage
        if answer.candidates == 0:
            raise InvalidOutput(
                f"no candidate (prompt block reason: {answer.block_reason})",
                provider=PROVIDER,
                model=request.model,
                usage=usage,
            )
        if answer.streamed and answer.finish is None:
            raise InvalidOutput(
                "the stream ended before the answer finished",
                provider=PROVIDER,
                model=request.model,
                usage=usage,
            )
        if answer.finish in _BAD_FINISH:
            raise InvalidOutput(
                f"answer stopped early: finishReason {answer.finish}",
                provider=PROVIDER,
                model=request.model,
                usage=usage,
            )
        if not answer.text.strip():
            raise InvalidOutput(
                f"empty answer (finishReason {answer.finish})",
                provider=PROVIDER,
                model=request.model,
                usage=usage,
            )
        return ProviderResponse(
            text=answer.text,
            usage=usage,
            model=request.model,
            provider=PROVIDER,
            latency_ms=latency_ms,
        )


@dataclass
class _Answer:
    """What a call answered, whole or streamed: the answer text (thoughts left out), how the
    first candidate finished, how many candidates came, and the usage."""

    text: str
    finish: str | None
    candidates: int
    block_reason: Any
    usage: TokenUsage
    streamed: bool = False

    @classmethod
    def of(cls, response: genai_types.GenerateContentResponse) -> _Answer:
        return cls.of_stream([response])

    @classmethod
    def of_stream(
        cls, chunks: Sequence[genai_types.GenerateContentResponse], *, streamed: bool = False
    ) -> _Answer:
        finish, candidates, block_reason = None, 0, None
        usage = TokenUsage(input_tokens=0)
        for chunk in chunks:
            if chunk.usage_metadata is not None:
                usage = _usage(chunk)  # the last chunk's totals are the call's
            if chunk.candidates:
                candidates = max(candidates, len(chunk.candidates))
                reason = chunk.candidates[0].finish_reason
                if reason:
                    finish = reason.value
            elif chunk.prompt_feedback is not None:
                block_reason = chunk.prompt_feedback.block_reason
        text = "".join(_text(chunk) for chunk in chunks)
        return cls(text, finish, candidates, block_reason, usage, streamed)


def _text(chunk: genai_types.GenerateContentResponse) -> str:
    """The answer text of one response or chunk (its first candidate's non-thought parts)."""
    candidate = chunk.candidates[0] if chunk.candidates else None
    parts = (
        candidate.content.parts
        if candidate and candidate.content and candidate.content.parts
        else []
    )
    return "".join(part.text for part in parts if part.text and not part.thought)


def _billed(
    error: ProviderError | InvalidRequest, request: ProviderRequest, streamed: int
) -> Exception:
    """`error`, with what a stream cut off mid-answer was billed (the prompt and the tokens that
    arrived) when it was."""
    if streamed and isinstance(error, ProviderError):
        error.usage = TokenUsage(
            input_tokens=count_message_tokens(request.messages), output_tokens=streamed
        )
    return error


def _contents(
    messages: Sequence[Message],
) -> tuple[str | None, list[genai_types.Content]]:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system") or None
    contents = [
        genai_types.Content(
            role="model" if m["role"] == "assistant" else "user",
            parts=[genai_types.Part(text=m["content"])],
        )
        for m in messages
        if m["role"] != "system"
    ]
    return system, contents


def _usage(response: genai_types.GenerateContentResponse) -> TokenUsage:
    meta = response.usage_metadata
    if meta is None:
        return TokenUsage(input_tokens=0)
    prompt = meta.prompt_token_count or 0
    return TokenUsage(
        input_tokens=prompt,
        cached_input_tokens=min(meta.cached_content_token_count or 0, prompt),
        output_tokens=meta.candidates_token_count or 0,
        reasoning_tokens=meta.thoughts_token_count or 0,
    )


def _is_bad_key(exc: genai_errors.APIError) -> bool:
    # The Gemini API answers a wrong key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID.
    if exc.code != 400:
        return False
    details = exc.details if isinstance(exc.details, dict) else {}
    error = details.get("error", details)
    reasons = [d.get("reason") for d in error.get("details", []) if isinstance(d, dict)]
    return "API_KEY_INVALID" in reasons or "API key not valid" in str(exc.message)


def _status_error(exc: genai_errors.APIError, model: str) -> ProviderError | InvalidRequest:
    # Redacted before it is cut: a key cut short would no longer be recognised.
    message = redact(f"{exc.code} {exc.status}: {exc.message}")[:500]
    if exc.code == 429:
        return RateLimited(message, provider=PROVIDER, model=model)
    if exc.code in (401, 403) or _is_bad_key(exc):
        return ProviderAuthError(message, provider=PROVIDER, model=model)
    if exc.code == 408:
        return ProviderTimeout(message, provider=PROVIDER, model=model)
    if exc.code >= 500:
        return ProviderUnavailable(message, provider=PROVIDER, model=model)
    return InvalidRequest(f"gemini rejected the request for {model}: {message}")
