"""One physical attempt on one provider, metered: reserve its upper bound, call, judge the
answer against the schema, settle its actual cost; and the one repair of an invalid answer."""

from __future__ import annotations

import logging
import time
import uuid
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from common.llm.base import (
    InvalidOutput,
    InvalidRequest,
    Message,
    Provider,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
)
from common.llm.catalogue import ModelSpec
from common.llm.routing import attempt_upper_bound
from common.platform.errors import problems
from common.spend.ledger import Ledger
from common.spend.records import AttemptRecord, Outcome, TokenUsage

logger = logging.getLogger(__name__)
T = TypeVar("T", bound=BaseModel)
# How much of an invalid answer goes back to the model in the repair request.
_REPAIR_ECHO_CHARS = 20_000


class _UnusableAnswer(InvalidOutput):
    """The model answered, but not with JSON valid against the schema: worth one repair."""

    def __init__(self, message: str, *, provider: str, model: str, usage: TokenUsage, text: str):
        super().__init__(message, provider=provider, model=model, usage=usage)
        self.text = text


def parse_answer(text: str, schema: type[T]) -> T:
    """Validate a model's answer against `schema` (code fences tolerated).

    Raises:
        ValueError: not JSON, or JSON that the schema rejects; the message lists the problems.
    """
    candidate = text.strip()
    if candidate.startswith("```"):
        candidate = candidate.strip("`").removeprefix("json").strip()
    try:
        return schema.model_validate_json(candidate)
    except ValidationError as exc:
        found = "; ".join(
            f"{field}: {message}" for field, message in problems(exc, root="(answer)")[:8]
        )
        raise ValueError(f"{exc.error_count()} problem(s): {found}"[:1500]) from exc


class Metered:
    """One physical attempt on one provider: reserve, call, judge the answer, settle."""

    def __init__(
        self,
        *,
        provider: Provider,
        spec: ModelSpec,
        schema: type[BaseModel] | None,
        ledger: Ledger,
        call_key: str,
        task_type: str,
        routed_model: str,
        records: list[AttemptRecord],
    ):
        self.name = provider.name
        self._provider = provider
        self._spec = spec
        self._schema = schema
        self._ledger = ledger
        self._call_key = call_key
        self._task_type = task_type
        self._routed_model = routed_model
        self._records = records

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        limit = min(request.max_output_tokens, self._spec.max_output_tokens)
        request = request.model_copy(update={"max_output_tokens": limit})
        key = f"{self._call_key}:{uuid.uuid4().hex}"
        bound = attempt_upper_bound(self._spec, self._provider.name, request)
        self._ledger.reserve(
            key=key, model=self._spec.name, tier=self._spec.tier, upper_bound_nanos=bound
        )
        started = time.perf_counter()
        usage: TokenUsage | None = None
        error_code: str | None = "internal_error"
        try:
            response = self._provider.complete(request)
            usage = response.usage
            if self._schema is not None:
                try:
                    parse_answer(response.text, self._schema)
                except ValueError as exc:
                    raise _UnusableAnswer(
                        f"answer does not match {self._schema.__name__}: {exc}",
                        provider=self._provider.name,
                        model=self._spec.name,
                        usage=usage,
                        text=response.text,
                    ) from exc
            error_code = None
            return response
        except ProviderError as exc:
            usage, error_code = exc.usage, exc.code
            raise
        except InvalidRequest:
            error_code = "invalid_request"
            raise
        finally:
            self._settle(key, usage, error_code, started)

    def _outcome(self, error_code: str | None) -> Outcome:
        if error_code is not None:
            return "failed"
        if self._spec.name != self._routed_model:
            return "fell_back"
        # Earlier attempts of this call were all on the routed model: the answer was repaired.
        return "repaired" if self._records else "first_try"

    def _settle(
        self, key: str, usage: TokenUsage | None, error_code: str | None, started: float
    ) -> None:
        billed = usage or TokenUsage(input_tokens=0)
        record = AttemptRecord(
            key=key,
            task_type=self._task_type,
            model=self._spec.name,
            provider=self._provider.name,
            usage=billed,
            cost_nanos=self._spec.cost_nanos(billed),
            latency_ms=(time.perf_counter() - started) * 1000,
            fallback_used=self._spec.name != self._routed_model,
            ok=error_code is None,
            error_code=error_code,
            call_key=self._call_key,
            model_tier=self._spec.tier,
            outcome=self._outcome(error_code),
        )
        self._records.append(record)
        self._ledger.settle(record)
        logger.info(
            "llm attempt",
            extra={
                "json_fields": {
                    "attempt_key": record.key,
                    "task_type": record.task_type,
                    "model": record.model,
                    "provider": record.provider,
                    "ok": record.ok,
                    "error_code": record.error_code,
                    "input_tokens": billed.input_tokens,
                    "cached_input_tokens": billed.cached_input_tokens,
                    "output_tokens": billed.output_tokens,
                    "reasoning_tokens": billed.reasoning_tokens,
                    "cost_nanos": record.cost_nanos,
                    "latency_ms": round(record.latency_ms, 1),
                    "fallback_used": record.fallback_used,
                    "outcome": record.outcome,
                }
            },
        )


class Repairing:
    """Gives a model one chance to fix an answer that is not valid JSON for the schema."""

    def __init__(self, inner: Metered):
        self.name = inner.name
        self._inner = inner

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        try:
            return self._inner.complete(request)
        except _UnusableAnswer as bad:
            repair: list[Message] = [
                Message(role="assistant", content=bad.text[:_REPAIR_ECHO_CHARS]),
                Message(
                    role="user",
                    content=(
                        f"That answer is invalid: {bad}. Reply again with only a JSON object "
                        "that satisfies the response schema."
                    ),
                ),
            ]
            return self._inner.complete(
                request.model_copy(update={"messages": [*request.messages, *repair]})
            )
