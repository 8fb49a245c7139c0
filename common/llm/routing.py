"""Routing policy: which model serves a call, which ones back it up, why, and what one attempt
can cost at most. Pure functions of the catalogue and the prompt: no provider, no key.

Complexity comes from the caller (explicit), else the task type's default, else the classifier;
it maps to a tier, which the caller's allowed tiers may lower; the chain is that tier's model at
each provider, in catalogue order, skipping models whose context window cannot hold the call.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict

from common.llm.base import Complexity, InvalidRequest, Message, ProviderRequest, ReasoningEffort
from common.llm.catalogue import TIERS, Catalogue, ModelSpec, ProviderName
from common.llm.complexity import classify
from common.llm.schema import JsonSchema, response_schema, schema_name
from common.llm.tasks import DEFAULT_REASONING_EFFORT, TaskProfile, task_profile
from common.llm.thinking import thinking_budget
from common.llm.tokens import PromptCount, count_prompt
from common.spend.records import ModelTier

ComplexitySource = Literal["explicit", "task", "classifier"]
COMPLEXITY_TIER: dict[Complexity, ModelTier] = {
    "simple": "nano",
    "balanced": "mini",
    "complex": "full",
}
TIER_COMPLEXITY: dict[ModelTier, Complexity] = {
    tier: complexity for complexity, tier in COMPLEXITY_TIER.items()
}
_TIER_RANK = {tier: rank for rank, tier in enumerate(TIERS)}
_ROLES = frozenset({"system", "user", "assistant"})


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


# Bounded: callers may build a pydantic model per call (e.g. ICPs sized to the request).
@functools.lru_cache(maxsize=64)
def schema_of(schema: type[BaseModel]) -> JsonSchema:
    return response_schema(schema)


def check_messages(messages: Sequence[Message]) -> list[Message]:
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


@dataclass(frozen=True)
class Call:
    """What a caller asks of the router, before it is routed.

    Attributes:
        complexity: overrides the task default and the classifier.
        allowed_tiers: the tiers this caller may use (None: all).
        reasoning_effort: overrides the complexity's default effort.
        schema: a pydantic model the answer must validate against (structured output).
        unseen_bytes: text the prompt will carry that is not in `messages` yet, at most this many
            UTF-8 bytes (counted into every bound).
        tier: the tier to route to (before the allowed tiers gate it), overriding complexity;
            `why` says why the caller chose it.
        profile: the task's defaults, for a task type `common.llm.tasks` does not list.
    """

    task_type: str
    messages: Sequence[Message]
    complexity: Complexity | None = None
    allowed_tiers: frozenset[ModelTier] | None = None
    reasoning_effort: ReasoningEffort | None = None
    schema: type[BaseModel] | None = None
    unseen_bytes: int = 0
    tier: ModelTier | None = None
    why: str | None = None
    profile: TaskProfile | None = None


def plan(
    catalogue: Catalogue, providers: Mapping[ProviderName, str], call: Call
) -> tuple[RoutingDecision, PromptCount]:
    """Route `call` over `providers` (catalogue provider -> the name its provider reports, in
    fallback order), counting the prompt once.

    Raises:
        InvalidRequest: a bad argument (named), or a prompt too long for every allowed model.
    """
    task_type, complexity, reasoning_effort, schema = (
        call.task_type,
        call.complexity,
        call.reasoning_effort,
        call.schema,
    )
    profile = call.profile or task_profile(task_type)
    checked = check_messages(call.messages)
    source: ComplexitySource
    if call.tier is not None:
        if call.tier not in _TIER_RANK:
            raise InvalidRequest(f"tier: must be nano, mini or full, got {call.tier!r}")
        complexity, source = TIER_COMPLEXITY[call.tier], "explicit"
        why = call.why or f"tier {call.tier!r} chosen by the caller"
    elif complexity is not None:
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
    tier = gate(wanted, call.allowed_tiers)
    reasons = [why, f"{complexity} -> {wanted} tier"]
    if tier != wanted:
        reasons.append(f"tier {wanted!r} not allowed for this caller, using {tier!r}")

    counted = count_prompt(
        checked, schema_of(schema) if schema is not None else None, unseen_bytes=call.unseen_bytes
    )
    chain: list[ModelSpec] = []
    for provider_key in providers:
        spec = catalogue.routed(provider_key, tier)
        fits, prompt = counted.fits(
            providers[provider_key], spec.context_window - profile.max_output_tokens
        )
        if not fits:
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
        downgraded_from = catalogue.routed(primary.provider, wanted).name
    decision = RoutingDecision(
        task_type=task_type,
        model=primary.name,
        provider=providers[primary.provider],
        tier=tier,
        complexity=complexity,
        complexity_source=source,
        reason="; ".join(reasons),
        downgraded_from=downgraded_from,
        fallback_chain=[spec.name for spec in chain],
        reasoning_effort=effort,
        max_output_tokens=min(profile.max_output_tokens, primary.max_output_tokens),
        catalogue_version=catalogue.version,
    )
    return decision, counted


def gate(wanted: ModelTier, allowed: frozenset[ModelTier] | None) -> ModelTier:
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


def tier_above(tier: ModelTier, allowed: frozenset[ModelTier] | None) -> ModelTier | None:
    """The next tier up from `tier` that `allowed` holds (None: all), or None at the top."""
    for candidate in TIERS[_TIER_RANK[tier] + 1 :]:
        if allowed is None or candidate in allowed:
            return candidate
    return None


def request_for(
    decision: RoutingDecision,
    messages: Sequence[Message],
    schema: type[BaseModel] | None,
    timeout_seconds: float,
) -> ProviderRequest:
    """The request the routed model receives for `messages`."""
    return ProviderRequest(
        model=decision.model,
        messages=check_messages(messages),
        max_output_tokens=decision.max_output_tokens,
        reasoning_effort=decision.reasoning_effort,
        json_schema=schema_of(schema) if schema is not None else None,
        schema_name=schema_name(schema) if schema is not None else None,
        timeout_seconds=timeout_seconds,
    )


def attempt_upper_bound(
    spec: ModelSpec, provider_name: str, request: ProviderRequest, prompt_tokens: int | None = None
) -> int:
    """Most one attempt of `request` on `spec` through `provider_name` can cost, in nanos.

    Input: `prompt_tokens` when the caller has counted them (`PromptCount.bound`), else the
    prompt's token bound, priced uncached. Output: the request's `max_output_tokens` (GPT-5
    counts reasoning inside it), plus Gemini's thinking budget, since a budget is a separate
    allowance there.
    """
    if prompt_tokens is None:
        prompt_tokens = count_prompt(request.messages, request.json_schema).bound(provider_name)
    output = request.max_output_tokens
    if provider_name == "gemini":
        output += thinking_budget(spec.name, request.reasoning_effort)
    return spec.upper_bound_nanos(prompt_tokens, output)


class Estimator:
    """Routes and bounds calls from the catalogue alone, as if every catalogue provider were
    configured: what a budget check needs, without a key or a provider.

    Its bound is the largest of the first attempt's bounds over the chain, so it holds whichever
    provider serves the call.
    """

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self._providers: dict[ProviderName, str] = {p: p for p in catalogue.provider_order}

    def bounded(self, call: Call) -> tuple[RoutingDecision, int]:
        """The routing decision, and the most the first attempt can cost in nano-dollars."""
        decision, counted = plan(self.catalogue, self._providers, call)
        request = request_for(decision, call.messages, call.schema, timeout_seconds=1)
        bounds = []
        for model in decision.fallback_chain:
            spec = self.catalogue.model(model)
            prompt = counted.bound(spec.provider)
            bounds.append(attempt_upper_bound(spec, spec.provider, request, prompt))
        return decision, max(bounds)
