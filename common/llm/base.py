"""The small interface every model provider implements, and the types that cross it.

Money is an integer number of nano-dollars (`common.money`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

# pydantic needs typing_extensions' TypedDict on Python < 3.12 to validate `list[Message]`.
from typing_extensions import TypedDict

from common.platform.secrets import redact
from common.spend.records import TokenUsage

Complexity = Literal["simple", "balanced", "complex"]
ReasoningEffort = Literal["minimal", "low", "medium", "high"]


class Message(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


#: Hears how many output tokens a streamed answer has so far (called as they arrive, from the
#: thread making the call; it must not raise).
OutputSink = Callable[[int], None]


class ProviderRequest(BaseModel):
    """One model call, already routed: exactly what a provider sends.

    With `on_output` set the provider streams the answer and calls it as tokens arrive;
    without, it asks for the whole answer at once. Either way it returns the whole answer.
    """

    model: str
    messages: list[Message]
    max_output_tokens: int = Field(gt=0)
    reasoning_effort: ReasoningEffort | None = None
    # JSON schema for structured output (provider-native mode), with a name for it.
    json_schema: dict[str, Any] | None = None
    schema_name: str | None = None
    timeout_seconds: float = Field(gt=0)
    on_output: OutputSink | None = Field(default=None, exclude=True, repr=False)


class ProviderResponse(BaseModel):
    text: str
    usage: TokenUsage
    model: str
    provider: str
    latency_ms: float


class Provider(Protocol):
    """A model provider: one attempt per call, no retries of its own (SDK `max_retries=0`)."""

    name: str

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        """Run the call or raise a `ProviderError` subclass."""
        ...


# --- Errors: the fallback chain moves on only for these (provider-side failures). -------------


class ProviderError(Exception):
    """A provider could not answer. `usage` is set when tokens were still billed.

    The message is redacted: a provider or a proxy may quote the API key back in a 401/403,
    and this text travels on (HTTP answers, the run's error, the CLI).
    """

    code = "provider_error"

    def __init__(self, message: str, *, provider: str, model: str, usage: TokenUsage | None = None):
        super().__init__(redact(message))
        self.provider = provider
        self.model = model
        self.usage = usage


class RateLimited(ProviderError):
    code = "rate_limited"


class ProviderUnavailable(ProviderError):
    code = "provider_unavailable"  # 5xx


class ProviderTimeout(ProviderError):
    code = "timeout"


class ProviderConnectionError(ProviderError):
    code = "connection_error"


class ProviderAuthError(ProviderError):
    code = "auth_failed"  # 401/403: a bad or revoked key is the provider's side of the chain


class InvalidOutput(ProviderError):
    code = "invalid_output"  # not JSON, or JSON that fails the schema (after one repair)


#: Each `ProviderError.code` in words, for progress a person reads.
FAILURE_TEXT: dict[str, str] = {
    "provider_error": "failed",
    "rate_limited": "is rate limited",
    "provider_unavailable": "is unavailable",
    "timeout": "timed out",
    "connection_error": "could not be reached",
    "auth_failed": "refused the API key",
    "invalid_output": "answered invalid JSON",
    "check_failed": "answered with an answer that failed its checks",
}

FALLBACK_ERRORS: tuple[type[ProviderError], ...] = (
    RateLimited,
    ProviderUnavailable,
    ProviderTimeout,
    ProviderConnectionError,
    ProviderAuthError,
    InvalidOutput,
)


class CheckFailed(Exception):
    """An answer valid against its schema failed the caller's checks on every ask its tier
    allows. Not a provider's failure: the chain does not fall back on it (another provider's
    model of the same tier is no better judge), the router moves up a tier or gives up.

    Attributes:
        problems: what the last answer failed, in the checks' words.
        response: the last answer.
    """

    def __init__(self, problems: list[str], response: ProviderResponse):
        super().__init__("; ".join(problems))
        self.problems = problems
        self.response = response


class OutOfTime(Exception):
    """The call's deadline leaves no room for another attempt (nothing was reserved for it):
    the caller stops and is retried later."""


class InvalidRequest(Exception):
    """Our own request was wrong (400/404/422 from a provider, a prompt over the context window):
    falling back would only repeat the mistake, so it is raised at once. The message is
    redacted, as a `ProviderError`'s is."""

    def __init__(self, message: str):
        super().__init__(redact(message))


class AllProvidersFailed(Exception):
    """Every provider in the chain failed; `failures` holds each one's error, in order."""

    def __init__(self, failures: list[ProviderError]):
        self.failures = failures
        summary = "; ".join(f"{f.provider}/{f.model}: {f.code}: {f}" for f in failures)
        super().__init__(f"all providers failed: {summary}")

    @property
    def refused_keys(self) -> bool:
        """Whether every provider refused our credentials: trying again cannot help."""
        return all(isinstance(failure, ProviderAuthError) for failure in self.failures)
