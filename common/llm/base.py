"""The small interface every model provider implements, and the types that cross it.

Money is an integer number of nano-dollars (`common.money`).
"""

from __future__ import annotations

import math
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

# pydantic needs typing_extensions' TypedDict on Python < 3.12 to validate `list[Message]`.
from typing_extensions import TypedDict

from common.platform.secrets import redact

Complexity = Literal["simple", "balanced", "complex"]
ModelTier = Literal["nano", "mini", "full"]
ReasoningEffort = Literal["minimal", "low", "medium", "high"]


class Message(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


class TokenUsage(BaseModel):
    """Tokens as the provider reported them. `output_tokens` excludes reasoning tokens;
    both are billed at the output price."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = Field(ge=0)
    cached_input_tokens: int = Field(default=0, ge=0)  # part of input_tokens
    output_tokens: int = Field(default=0, ge=0)
    reasoning_tokens: int = Field(default=0, ge=0)


class ProviderRequest(BaseModel):
    """One model call, already routed: exactly what a provider sends."""

    model: str
    messages: list[Message]
    max_output_tokens: int = Field(gt=0)
    reasoning_effort: ReasoningEffort | None = None
    # JSON schema for structured output (provider-native mode), with a name for it.
    json_schema: dict[str, Any] | None = None
    schema_name: str | None = None
    timeout_seconds: float = Field(gt=0)


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
}

FALLBACK_ERRORS: tuple[type[ProviderError], ...] = (
    RateLimited,
    ProviderUnavailable,
    ProviderTimeout,
    ProviderConnectionError,
    ProviderAuthError,
    InvalidOutput,
)


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


# --- The budget side of a call -------------------------------------------------------------


class BudgetDenied(Exception):
    """The budget refused a reservation; `reason` is one of the budget's reason codes."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class BudgetBusy(Exception):
    """The budget could not answer now (contention, or a hold too short for the call); nothing
    was spent: try again later. `reason` is a code such as `budget_contention`."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class AttemptRecord(BaseModel):
    """One physical provider call, as the ledger settles it and as the usage record stores it."""

    key: str  # idempotency key: unique per physical attempt
    task_type: str
    model: str
    provider: str
    usage: TokenUsage
    cost_nanos: int = Field(ge=0)
    latency_ms: float = Field(ge=0)
    fallback_used: bool
    ok: bool
    error_code: str | None = None


class Ledger(Protocol):
    """Reserve before every provider attempt, settle after it (also when it failed: the cost of
    any billed tokens, else 0, which releases the reservation). `common.budget.ledger` is one."""

    def reserve(self, *, key: str, model: str, tier: ModelTier, upper_bound_nanos: int) -> float:
        """Hold `upper_bound_nanos` for attempt `key` on `model` (of `tier`) and say for how many
        seconds the hold is sure to last; or raise `BudgetDenied` (or `BudgetBusy`)."""
        ...

    def settle(self, attempt: AttemptRecord) -> None:
        """Release the reservation of `attempt.key` and record its actual cost, exactly once."""
        ...


class NullLedger:
    """A ledger that allows everything and records nothing (unit tests, benchmarks)."""

    def reserve(self, *, key: str, model: str, tier: ModelTier, upper_bound_nanos: int) -> float:
        return math.inf

    def settle(self, attempt: AttemptRecord) -> None:
        return None
