"""The router: picks a model for a call, bounds its cost, and runs it down the fallback chain.

Every model call in RaptorFlow goes through `Router.execute`:

1. `route` picks the tier from the complexity (explicit > task default > classifier), applies the
   caller's tier gating, and lists the fallback chain (the tier's model at each configured
   provider, in catalogue order, skipping models whose context window cannot hold the call).
2. Each physical attempt -- first try, the one repair of an invalid JSON answer, each fallback --
   reserves its own cost upper bound on the ledger first and settles its actual cost after.
3. `FallbackProvider` moves down the chain on provider-side failures only.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, ValidationError

from common.llm.base import (
    AttemptRecord,
    Complexity,
    InvalidOutput,
    InvalidRequest,
    Ledger,
    Message,
    ModelTier,
    NullLedger,
    Provider,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    ReasoningEffort,
    TokenUsage,
)
from common.llm.catalogue import TIERS, Catalogue, ModelSpec, ProviderName, default_catalogue
from common.llm.complexity import classify
from common.llm.fallback import CircuitBreaker, FallbackProvider, Target
from common.llm.providers.offline import OfflineProvider
from common.llm.schema import JsonSchema, response_schema, schema_name
from common.llm.tasks import DEFAULT_REASONING_EFFORT, task_profile
from common.llm.thinking import thinking_budget
from common.llm.tokens import count_prompt, prompt_token_bound
from common.platform.secrets import find_secret
from common.platform.settings import Settings, get_settings

logger = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)
ComplexitySource = Literal["explicit", "task", "classifier"]
COMPLEXITY_TIER: dict[Complexity, ModelTier] = {
    "simple": "nano",
    "balanced": "mini",
    "complex": "full",
}
_TIER_RANK = {tier: rank for rank, tier in enumerate(TIERS)}
_ROLES = frozenset({"system", "user", "assistant"})
# How much of an invalid answer goes back to the model in the repair request.
_REPAIR_ECHO_CHARS = 20_000


class RoutingDecision(BaseModel):
    """Which model a call goes to, and why."""

    model_config = ConfigDict(frozen=True)

    task_type: str
    model: str
    provider: str
    tier: ModelTier
    complexity: Complexity
    complexity_source: ComplexitySource
    reason: str
    downgraded_from: str | None = None
    fallback_chain: list[str]
    reasoning_effort: ReasoningEffort
    max_output_tokens: int
    catalogue_version: str


@dataclass(frozen=True)
class Completion(Generic[T]):
    """The result of `Router.execute`: the answer and everything it cost."""

    text: str
    parsed: T | None  # the validated schema instance when a schema was given
    model_used: str
    provider: str
    usage: TokenUsage  # summed over every attempt
    cost_nanos: int  # summed over every attempt, failed ones included
    latency_ms: float
    attempts: list[AttemptRecord]
    decision: RoutingDecision
    fallback_used: bool
    downgraded_from: str | None

    def value(self) -> T:
        """`parsed`, for a call made with a schema (raises if there was none)."""
        if self.parsed is None:
            raise ValueError("this completion was made without a schema: read .text instead")
        return self.parsed


class _UnusableAnswer(InvalidOutput):
    """The model answered, but not with JSON valid against the schema: worth one repair."""

    def __init__(self, message: str, *, provider: str, model: str, usage: TokenUsage, text: str):
        super().__init__(message, provider=provider, model=model, usage=usage)
        self.text = text


# Bounded: callers may build a pydantic model per call (e.g. ICPs sized to the request).
@functools.lru_cache(maxsize=64)
def _schema_of(schema: type[BaseModel]) -> JsonSchema:
    return response_schema(schema)


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
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(answer)'}: {err['msg']}"
            for err in exc.errors()[:8]
        )
        raise ValueError(f"{exc.error_count()} problem(s): {problems}"[:1500]) from exc


def _check_messages(messages: Sequence[Message]) -> list[Message]:
    if isinstance(messages, str) or not messages:
        raise InvalidRequest("messages: give at least one {'role': ..., 'content': ...} message")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise InvalidRequest(f"messages[{i}]: must be a mapping with role and content")
        if message.get("role") not in _ROLES:
            raise InvalidRequest(
                f"messages[{i}].role: must be system, user or assistant, "
                f"got {message.get('role')!r}"
            )
        if not isinstance(message.get("content"), str):
            raise InvalidRequest(f"messages[{i}].content: must be a string")
    return [Message(role=m["role"], content=m["content"]) for m in messages]


class _Metered:
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
        self._ledger.reserve(key=key, model=self._spec.name, upper_bound_nanos=bound)
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
                }
            },
        )


class _Repairing:
    """Gives a model one chance to fix an answer that is not valid JSON for the schema."""

    def __init__(self, inner: _Metered):
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


def attempt_upper_bound(spec: ModelSpec, provider_name: str, request: ProviderRequest) -> int:
    """Most one attempt of `request` on `spec` through `provider_name` can cost, in nanos.

    Input: the prompt's token bound (exact o200k_base framing for OpenAI and the offline
    provider, the documented approximation for Gemini), priced uncached. Output: the request's
    `max_output_tokens` (GPT-5 counts reasoning inside it), plus Gemini's thinking budget, since
    a budget is a separate allowance there.
    """
    prompt = prompt_token_bound(provider_name, request.messages, request.json_schema)
    output = request.max_output_tokens
    if provider_name == "gemini":
        output += thinking_budget(spec.name, request.reasoning_effort)
    return spec.upper_bound_nanos(prompt, output)


class Router:
    """Routes, estimates and executes model calls (see the module docstring).

    Args:
        providers: the provider serving each catalogue provider name that is configured
            (the offline provider may stand in for any of them).
        catalogue: models and prices; the bundled catalogue when None.
        timeout_seconds: per-attempt timeout.
        breaker: the circuit breaker shared by every call of this router.
    """

    def __init__(
        self,
        providers: Mapping[ProviderName, Provider],
        *,
        catalogue: Catalogue | None = None,
        timeout_seconds: float = 60.0,
        breaker: CircuitBreaker | None = None,
    ):
        self.catalogue = catalogue or default_catalogue()
        self._providers = dict(providers)
        self._order = [p for p in self.catalogue.provider_order if p in self._providers]
        if not self._order:
            raise ValueError(f"no provider configured for any of {self.catalogue.provider_order}")
        self._timeout = timeout_seconds
        self.breaker = breaker or CircuitBreaker()

    @property
    def providers(self) -> list[str]:
        """The configured providers' names, in fallback order."""
        return [self._providers[p].name for p in self._order]

    def route(
        self,
        task_type: str,
        messages: Sequence[Message],
        complexity: Complexity | None = None,
        allowed_tiers: frozenset[ModelTier] | None = None,
        *,
        reasoning_effort: ReasoningEffort | None = None,
        schema: type[BaseModel] | None = None,
    ) -> RoutingDecision:
        """Decide which model serves this call, which ones back it up, and why.

        Raises:
            InvalidRequest: a bad argument (named), or a prompt too long for every allowed model.
        """
        profile = task_profile(task_type)
        checked = _check_messages(messages)
        source: ComplexitySource
        if complexity is not None:
            if complexity not in get_args(Complexity):
                raise InvalidRequest(
                    f"complexity: must be simple, balanced or complex, got {complexity!r}"
                )
            source, why = "explicit", f"complexity {complexity!r} given by the caller"
        elif profile.complexity is not None:
            complexity, source = profile.complexity, "task"
            why = f"task type {task_type!r} defaults to {complexity!r}"
        else:
            found = classify(checked)
            complexity, source = found.complexity, "classifier"
            why = f"task type {task_type!r} has no default; {found.reason}"
        if reasoning_effort is not None and reasoning_effort not in get_args(ReasoningEffort):
            raise InvalidRequest(
                f"reasoning_effort: must be minimal, low, medium or high, got {reasoning_effort!r}"
            )
        effort = reasoning_effort or DEFAULT_REASONING_EFFORT[complexity]

        wanted = COMPLEXITY_TIER[complexity]
        tier = _gate(wanted, allowed_tiers)
        reasons = [why, f"{complexity} -> {wanted} tier"]
        if tier != wanted:
            reasons.append(f"tier {wanted!r} not allowed for this caller, using {tier!r}")

        counted = count_prompt(checked, _schema_of(schema) if schema is not None else None)
        chain: list[ModelSpec] = []
        for provider_key in self._order:
            spec = self.catalogue.routed(provider_key, tier)
            prompt = counted.bound(self._providers[provider_key].name)
            if prompt + profile.max_output_tokens > spec.context_window:
                reasons.append(
                    f"{spec.name} skipped: ~{prompt} prompt tokens + {profile.max_output_tokens} "
                    f"output exceed its {spec.context_window}-token context window"
                )
                continue
            chain.append(spec)
        if not chain:
            raise InvalidRequest(
                f"messages: the prompt is too long for every allowed model ({'; '.join(reasons)})"
            )
        primary = chain[0]
        downgraded_from = None
        if _TIER_RANK[tier] < _TIER_RANK[wanted]:
            downgraded_from = self.catalogue.routed(primary.provider, wanted).name
        return RoutingDecision(
            task_type=task_type,
            model=primary.name,
            provider=self._providers[primary.provider].name,
            tier=tier,
            complexity=complexity,
            complexity_source=source,
            reason="; ".join(reasons),
            downgraded_from=downgraded_from,
            fallback_chain=[spec.name for spec in chain],
            reasoning_effort=effort,
            max_output_tokens=min(profile.max_output_tokens, primary.max_output_tokens),
            catalogue_version=self.catalogue.version,
        )

    def estimate(
        self,
        task_type: str,
        messages: Sequence[Message],
        complexity: Complexity | None = None,
        allowed_tiers: frozenset[ModelTier] | None = None,
        *,
        reasoning_effort: ReasoningEffort | None = None,
        schema: type[BaseModel] | None = None,
    ) -> int:
        """Upper bound in nano-dollars of ONE attempt on the routed model.

        Input tokens are counted with the real tokenizer (an approximation with a margin for
        Gemini), output is bounded by the task's max output tokens (reasoning included). Pass
        `schema` to include the tokens of the structured-output schema.
        """
        decision = self.route(
            task_type,
            messages,
            complexity,
            allowed_tiers,
            reasoning_effort=reasoning_effort,
            schema=schema,
        )
        return self.upper_bound(decision, messages, schema)

    def upper_bound(
        self,
        decision: RoutingDecision,
        messages: Sequence[Message],
        schema: type[BaseModel] | None = None,
    ) -> int:
        """`estimate` for a call already routed (so a caller needing both routes once)."""
        request = self._request(decision, messages, schema)
        spec = self.catalogue.model(decision.model)
        return attempt_upper_bound(spec, decision.provider, request)

    def execute(
        self,
        task_type: str,
        messages: Sequence[Message],
        *,
        complexity: Complexity | None = None,
        reasoning_effort: ReasoningEffort | None = None,
        schema: type[T] | None = None,
        allowed_tiers: frozenset[ModelTier] | None = None,
        ledger: Ledger | None = None,
        call_key: str,
    ) -> Completion[T]:
        """Run one model call: route, then try the chain until an answer is valid.

        Args:
            task_type: what the call is for (see `common.llm.tasks`).
            messages: the conversation; a prompt's `BUSINESS_JSON: {...}` line grounds the
                offline provider's answers.
            complexity: overrides the task default and the classifier.
            reasoning_effort: overrides the complexity's default effort.
            schema: a pydantic model the answer must validate against (structured output).
            allowed_tiers: the tiers this caller may use (None: all).
            ledger: reserves before and settles after every physical attempt.
            call_key: this logical call's idempotency key; each attempt's key extends it.

        Raises:
            BudgetDenied: the ledger refused a reservation (no further attempt is made).
            InvalidRequest: our request was wrong; not retried on another provider.
            AllProvidersFailed: every model in the chain failed; lists each failure.
        """
        if not call_key:
            raise InvalidRequest("call_key: required (the idempotency key of this call)")
        ledger = ledger if ledger is not None else NullLedger()
        started = time.perf_counter()
        decision = self.route(
            task_type,
            messages,
            complexity,
            allowed_tiers,
            reasoning_effort=reasoning_effort,
            schema=schema,
        )
        records: list[AttemptRecord] = []
        targets = []
        for model in decision.fallback_chain:
            spec = self.catalogue.model(model)
            metered = _Metered(
                provider=self._providers[spec.provider],
                spec=spec,
                schema=schema,
                ledger=ledger,
                call_key=call_key,
                task_type=task_type,
                routed_model=decision.model,
                records=records,
            )
            targets.append(Target(model=model, provider=_Repairing(metered)))
        chain = FallbackProvider(targets, self.breaker)
        response = chain.complete(self._request(decision, messages, schema))
        parsed = parse_answer(response.text, schema) if schema is not None else None
        return Completion(
            text=response.text,
            parsed=parsed,
            model_used=response.model,
            provider=response.provider,
            usage=_total(records),
            cost_nanos=sum(record.cost_nanos for record in records),
            latency_ms=(time.perf_counter() - started) * 1000,
            attempts=records,
            decision=decision,
            fallback_used=response.model != decision.model,
            downgraded_from=decision.downgraded_from,
        )

    def _request(
        self,
        decision: RoutingDecision,
        messages: Sequence[Message],
        schema: type[BaseModel] | None,
    ) -> ProviderRequest:
        return ProviderRequest(
            model=decision.model,
            messages=_check_messages(messages),
            max_output_tokens=decision.max_output_tokens,
            reasoning_effort=decision.reasoning_effort,
            json_schema=_schema_of(schema) if schema is not None else None,
            schema_name=schema_name(schema) if schema is not None else None,
            timeout_seconds=self._timeout,
        )


def _gate(wanted: ModelTier, allowed: frozenset[ModelTier] | None) -> ModelTier:
    if allowed is None:
        return wanted
    unknown = [tier for tier in allowed if tier not in _TIER_RANK]
    if unknown or not allowed:
        raise InvalidRequest(
            f"allowed_tiers: must be a non-empty set of nano, mini, full; got {sorted(allowed)}"
        )
    if wanted in allowed:
        return wanted
    below = [t for t in allowed if _TIER_RANK[t] < _TIER_RANK[wanted]]
    if below:
        return max(below, key=_TIER_RANK.__getitem__)
    return min(allowed, key=_TIER_RANK.__getitem__)


def _total(records: Sequence[AttemptRecord]) -> TokenUsage:
    return TokenUsage(
        input_tokens=sum(r.usage.input_tokens for r in records),
        cached_input_tokens=sum(r.usage.cached_input_tokens for r in records),
        output_tokens=sum(r.usage.output_tokens for r in records),
        reasoning_tokens=sum(r.usage.reasoning_tokens for r in records),
    )


class NoProviderConfigured(RuntimeError):
    """Production has no model provider and offline placeholders were not asked for."""


def build_router(settings: Settings | None = None) -> Router:
    """A router configured from settings and the secrets that are present.

    OpenAI when OPENAI_API_KEY is set (or `openai_base_url` points at a self-hosted server that
    needs no key); Gemini when GEMINI_API_KEY is set or `gemini_use_vertex` is on; the offline
    provider, priced as the first catalogue provider's models, when `llm_offline` is on or, in
    development, when neither is configured; in production that raises `NoProviderConfigured`.
    """
    # The provider SDKs take ~0.4 s to import: only load those a configured provider needs.
    from common.llm.providers.gemini import GeminiProvider
    from common.llm.providers.openai import OpenAIProvider

    settings = settings or get_settings()
    catalogue = default_catalogue(settings.model_catalogue_path)
    timeout = settings.llm_timeout_seconds
    providers: dict[ProviderName, Provider] = {}
    if not settings.llm_offline:
        openai_key = find_secret("OPENAI_API_KEY")
        if openai_key is None and settings.openai_base_url:
            openai_key = "self-hosted"  # OpenAI-compatible servers usually ignore the key
        if openai_key is not None:
            providers["openai"] = OpenAIProvider(
                api_key=openai_key, base_url=settings.openai_base_url, timeout_seconds=timeout
            )
        if settings.gemini_use_vertex:
            providers["gemini"] = GeminiProvider(
                vertex_project=settings.project_id,
                vertex_location=settings.gemini_location or settings.region,
                base_url=settings.gemini_base_url,
                timeout_seconds=timeout,
            )
        else:
            gemini_key = find_secret("GEMINI_API_KEY")
            if gemini_key is not None:
                providers["gemini"] = GeminiProvider(
                    api_key=gemini_key, base_url=settings.gemini_base_url, timeout_seconds=timeout
                )
    if not providers:
        if settings.app_mode == "production" and not settings.llm_offline:
            # Placeholders sold as strategy would be worse than an error.
            raise NoProviderConfigured(
                "no model provider is configured in production: add OPENAI_API_KEY or "
                "GEMINI_API_KEY to Secret Manager (or enable GEMINI_USE_VERTEX), or set "
                "LLM_OFFLINE=true to serve offline placeholders on purpose"
            )
        providers[catalogue.provider_order[0]] = OfflineProvider(
            latency_ms=settings.offline_latency_ms
        )
    router = Router(
        providers,
        catalogue=catalogue,
        timeout_seconds=timeout,
        breaker=CircuitBreaker(cooldown_seconds=settings.llm_circuit_cooldown_seconds),
    )
    logger.info(
        "llm router ready",
        extra={
            "json_fields": {
                "providers": router.providers,
                "catalogue_version": catalogue.version,
            }
        },
    )
    return router


@functools.cache
def get_router() -> Router:
    """The process's router, built on first use from `get_settings()` and the secrets.
    Tests that change settings call `get_router.cache_clear()`."""
    return build_router()


def estimate_task_cost(
    task_type: str,
    input: str | Sequence[Message],
    *,
    complexity: Complexity | None = None,
    allowed_tiers: frozenset[ModelTier] | None = None,
    schema: type[BaseModel] | None = None,
) -> int:
    """Upper bound in nano-dollars of one attempt of `task_type` on `input` (a prompt or the
    messages), for the budget to reserve before a run; see `Router.estimate`."""
    messages = [Message(role="user", content=input)] if isinstance(input, str) else input
    return get_router().estimate(task_type, messages, complexity, allowed_tiers, schema=schema)
