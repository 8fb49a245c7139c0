"""What one paid call costs and how it ended: the record every attempt settles with, which the
budget stores as the call's usage record (the one place a cost is written)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ModelTier = Literal["nano", "mini", "full"]
# How a call's answer came about, as its attempts record it (AttemptRecord.outcome).
Outcome = Literal["first_try", "repaired", "fell_back", "escalated", "failed"]


class TokenUsage(BaseModel):
    """Tokens as the provider reported them. `output_tokens` excludes reasoning tokens;
    both are billed at the output price."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = Field(ge=0)
    cached_input_tokens: int = Field(default=0, ge=0)  # part of input_tokens
    output_tokens: int = Field(default=0, ge=0)
    reasoning_tokens: int = Field(default=0, ge=0)


class AttemptRecord(BaseModel):
    """One physical paid call, as the ledger settles it and as the usage record stores it."""

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
    # Feedback for the router's next training (`raptorflow router-report`); None on records
    # made before these existed. The logical call this attempt belongs to, its model's tier,
    # and the outcome: first_try (the call's first attempt gave a valid answer), repaired (the
    # repair of an invalid answer did), fell_back (a later model of the chain did), failed
    # (this attempt gave no usable answer; the chain may go on), escalated (this attempt's answer
    # failed its checks on the last ask its tier allows, and the call moved one tier up, where
    # outcomes start again: the first answer there is a first_try).
    call_key: str | None = None
    model_tier: ModelTier | None = None
    outcome: Outcome | None = None
    # The cascade (issue 20): what this attempt's answer failed (the checks' words, as the model
    # was told them when it was asked again; None when it passed or was never judged), and on
    # every attempt made after the call moved up a tier, the tier it moved up from.
    check_failure: str | None = None
    escalated_from: ModelTier | None = None
