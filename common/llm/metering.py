"""One physical attempt on one provider, metered: reserve its upper bound, call, judge the
answer against the schema and the caller's checks, settle its actual cost; and the asks again
of an answer that fell short, each naming what was wrong."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from common.llm.base import (
    CheckFailed,
    InvalidOutput,
    InvalidRequest,
    Message,
    OutOfTime,
    Provider,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
)
from common.llm.catalogue import ModelSpec
from common.llm.routing import attempt_upper_bound
from common.platform.errors import problems
from common.spend.ledger import Ledger
from common.spend.records import AttemptRecord, ModelTier, Outcome, TokenUsage

logger = logging.getLogger(__name__)
T = TypeVar("T", bound=BaseModel)
#: Judges an answer (the validated schema instance, or the text of a call without a schema):
#: what is wrong with it, in words the model is told when asked again; empty when it passes.
Check = Callable[[Any], Sequence[str]]
# How much of an answer goes back to the model when it is asked again.
_REPAIR_ECHO_CHARS = 20_000
# How much of the checks' words an attempt's record keeps.
_CHECK_FAILURE_CHARS = 500


class _UnusableAnswer(InvalidOutput):
    """The model answered, but not with JSON valid against the schema: worth asking again."""

    def __init__(self, message: str, *, provider: str, model: str, usage: TokenUsage, text: str):
        super().__init__(message, provider=provider, model=model, usage=usage)
        self.text = text


class _FailedChecks(Exception):
    """The answer is valid JSON for the schema but failed the caller's checks."""

    def __init__(self, problems: list[str], response: ProviderResponse):
        super().__init__("; ".join(problems))
        self.problems = problems
        self.response = response


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


@dataclass(frozen=True)
class Stage:
    """The part of a call spent on one tier: its routed model, where its attempts start in the
    call's records, the tier it was escalated from, whether a last failed check escalates, and
    the call's deadline (monotonic seconds)."""

    routed_model: str
    start: int
    escalated_from: ModelTier | None = None
    escalates: bool = False
    deadline: float | None = None


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
        stage: Stage,
        records: list[AttemptRecord],
        check: Check | None = None,
    ):
        self.name = provider.name
        self._provider = provider
        self._spec = spec
        self._schema = schema
        self._ledger = ledger
        self._call_key = call_key
        self._task_type = task_type
        self._stage = stage
        self._records = records
        self._check = check

    def attempt(self, request: ProviderRequest, *, last: bool = True) -> ProviderResponse:
        """One attempt of `request`; `last` says whether no other ask follows on this model
        (an answer failing its checks then ends the tier)."""
        limit = min(request.max_output_tokens, self._spec.max_output_tokens)
        request = request.model_copy(update={"max_output_tokens": limit})
        deadline = self._stage.deadline
        if deadline is not None and time.monotonic() + request.timeout_seconds > deadline:
            raise OutOfTime(
                f"no time left for another {request.timeout_seconds:.0f} s attempt "
                f"on {self._spec.name}"
            )
        key = f"{self._call_key}:{uuid.uuid4().hex}"
        bound = attempt_upper_bound(self._spec, self._provider.name, request)
        self._ledger.reserve(
            key=key, model=self._spec.name, tier=self._spec.tier, upper_bound_nanos=bound
        )
        started = time.perf_counter()
        latency_ms: float | None = None
        usage: TokenUsage | None = None
        error_code: str | None = "internal_error"
        failure: str | None = None
        try:
            response = self._provider.complete(request)
            latency_ms = (time.perf_counter() - started) * 1000
            usage = response.usage
            parsed: Any = response.text
            if self._schema is not None:
                try:
                    parsed = parse_answer(response.text, self._schema)
                except ValueError as exc:
                    raise _UnusableAnswer(
                        f"answer does not match {self._schema.__name__}: {exc}",
                        provider=self._provider.name,
                        model=self._spec.name,
                        usage=usage,
                        text=response.text,
                    ) from exc
            found = list(self._check(parsed)) if self._check is not None else []
            if found:
                error_code, failure = "check_failed", "; ".join(found)
                raise _FailedChecks(found, response)
            error_code = None
            return response
        except ProviderError as exc:
            usage, error_code = exc.usage, exc.code
            raise
        except InvalidRequest:
            error_code = "invalid_request"
            raise
        finally:
            if latency_ms is None:
                latency_ms = (time.perf_counter() - started) * 1000
            self._settle(key, usage, error_code, latency_ms, failure, last)

    def _outcome(self, error_code: str | None, last: bool) -> Outcome:
        if error_code == "check_failed" and last and self._stage.escalates:
            return "escalated"
        if error_code is not None:
            return "failed"
        if self._spec.name != self._stage.routed_model:
            return "fell_back"
        # Earlier attempts on this tier were all on the routed model: the answer was repaired.
        return "repaired" if len(self._records) > self._stage.start else "first_try"

    def _settle(
        self,
        key: str,
        usage: TokenUsage | None,
        error_code: str | None,
        latency_ms: float,
        failure: str | None,
        last: bool,
    ) -> None:
        billed = usage or TokenUsage(input_tokens=0)
        record = AttemptRecord(
            key=key,
            task_type=self._task_type,
            model=self._spec.name,
            provider=self._provider.name,
            usage=billed,
            cost_nanos=self._spec.cost_nanos(billed),
            latency_ms=latency_ms,
            fallback_used=self._spec.name != self._stage.routed_model,
            ok=error_code is None,
            error_code=error_code,
            call_key=self._call_key,
            model_tier=self._spec.tier,
            outcome=self._outcome(error_code, last),
            check_failure=failure[:_CHECK_FAILURE_CHARS] if failure else None,
            escalated_from=self._stage.escalated_from,
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
                    "escalated_from": record.escalated_from,
                }
            },
        )


class Repairing:
    """Asks a model again, up to `asks` times in all, when its answer is not valid JSON for the
    schema or fails the caller's checks, each time naming what was wrong.

    After the last ask an invalid answer is `InvalidOutput` (the chain falls back to the next
    provider) and an answer that still fails its checks is `CheckFailed` (it does not).
    """

    def __init__(self, inner: Metered, asks: int = 2):
        if asks < 1:
            raise ValueError("a model is asked at least once")
        self.name = inner.name
        self._inner = inner
        self._asks = asks

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        current = request
        for ask in range(1, self._asks + 1):
            last = ask == self._asks
            try:
                return self._inner.attempt(current, last=last)
            except _UnusableAnswer as bad:
                if last:
                    raise
                text, why = bad.text, f"That answer is invalid: {bad}."
                fix = "Reply again with only a JSON object that satisfies the response schema."
            except _FailedChecks as failed:
                if last:
                    raise CheckFailed(failed.problems, failed.response) from failed
                text = failed.response.text
                why = (
                    f"That answer (try {ask} of {self._asks}) does not hold up: "
                    + "; ".join(failed.problems)
                    + "."
                )
                fix = (
                    "Reply again with only a JSON object that satisfies the response schema "
                    "and fixes every one of these problems."
                )
            again: list[Message] = [
                Message(role="assistant", content=text[:_REPAIR_ECHO_CHARS]),
                Message(role="user", content=f"{why} {fix}"),
            ]
            current = request.model_copy(update={"messages": [*request.messages, *again]})
        raise AssertionError("unreachable: the last ask returns or raises")
