"""The router: every model call in RaptorFlow goes through `Router.execute`.

1. `route` (`common.llm.routing`) picks the model and its fallback chain.
2. Each physical attempt -- first try, each ask again of an answer that was invalid or failed
   the caller's checks, each fallback -- reserves its own cost upper bound on the ledger first
   and settles its actual cost after (`common.llm.metering`).
3. `FallbackProvider` moves down the chain on provider-side failures only.
4. With `escalate`, an answer that still fails its checks after its asks moves the call one
   tier up (within the allowed tiers): the cascade, cheap first, stronger only when needed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import BaseModel

from common.llm.base import (
    AllProvidersFailed,
    CheckFailed,
    Complexity,
    InvalidOutput,
    InvalidRequest,
    Message,
    OutputSink,
    Provider,
    ProviderResponse,
    ReasoningEffort,
)
from common.llm.catalogue import Catalogue, ProviderName, default_catalogue
from common.llm.fallback import CircuitBreaker, FallbackProvider, Target
from common.llm.metering import Check, Metered, Repairing, Stage, parse_answer
from common.llm.routing import (
    Call,
    RoutingDecision,
    attempt_upper_bound,
    plan,
    request_for,
    tier_above,
)
from common.llm.tasks import TaskProfile
from common.spend.ledger import Ledger, NullLedger
from common.spend.records import AttemptRecord, ModelTier, TokenUsage

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class Escalation:
    """The call moved up from one tier to the next because of `reason`."""

    from_tier: ModelTier
    to_tier: ModelTier
    from_model: str
    to_model: str
    reason: str


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
    decision: RoutingDecision  # the last tier's: the one that answered
    fallback_used: bool
    downgraded_from: str | None
    escalations: list[Escalation] = field(default_factory=list)
    # What the answer still fails when even the top allowed tier could not satisfy the checks
    # (empty when it passed them all, or when there were none).
    unresolved: list[str] = field(default_factory=list)

    def value(self) -> T:
        """`parsed`, for a call made with a schema (raises if there was none)."""
        if self.parsed is None:
            raise ValueError("this completion was made without a schema: read .text instead")
        return self.parsed


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
        call = Call(task_type, messages, complexity, allowed_tiers, reasoning_effort, schema)
        names = {key: self._providers[key].name for key in self._order}
        return plan(self.catalogue, names, call)[0]  # no bound: the tokenizer may not be needed

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
        Gemini), output is bounded by the task's max output tokens (reasoning included); the
        structured-output schema counts too.
        """
        call = Call(task_type, messages, complexity, allowed_tiers, reasoning_effort, schema)
        return self.bounded(call)[1]

    def bounded(self, call: Call) -> tuple[RoutingDecision, int]:
        """`route` and `estimate` at once, the prompt counted once."""
        names = {key: self._providers[key].name for key in self._order}
        decision, counted = plan(self.catalogue, names, call)
        request = request_for(decision, call.messages, call.schema, self._timeout)
        spec = self.catalogue.model(decision.model)
        prompt = counted.bound(decision.provider)
        return decision, attempt_upper_bound(spec, decision.provider, request, prompt)

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
        check: Check | None = None,
        asks: int = 2,
        escalate: bool = False,
        tier: ModelTier | None = None,
        why: str | None = None,
        profile: TaskProfile | None = None,
        on_output: OutputSink | None = None,
        deadline: float | None = None,
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
            check: judges a schema-valid answer (see `common.llm.metering.Check`); an answer
                that fails is asked again naming its problems.
            asks: how many times in all one model is asked for this call (the first ask and
                the asks again of an invalid or failing answer).
            escalate: whether an answer that still fails after its asks (or invalid JSON from
                every provider of the tier) moves the call one allowed tier up; the top allowed
                tier, with nothing above it to take over, gets one ask more.
            tier: the tier to start on (overrides complexity), for the reason `why`.
            profile: the task's defaults when `task_type` is not one `common.llm.tasks` lists.
            on_output: streams each answer, telling it the output tokens so far.
            deadline: `time.monotonic()` by which every attempt must be able to finish; an
                attempt that could not is not made (`OutOfTime`).

        Returns:
            The answer; `unresolved` lists what it still fails when no tier could satisfy the
            checks (the last answer is returned rather than nothing).

        Raises:
            BudgetDenied: the ledger refused a reservation (no further attempt is made).
            InvalidRequest: our request was wrong; not retried on another provider.
            AllProvidersFailed: every model in the chain failed; lists each failure.
            OutOfTime: the deadline left no room for the next attempt.
        """
        if not call_key:
            raise InvalidRequest("call_key: required (the idempotency key of this call)")
        ledger = ledger if ledger is not None else NullLedger()
        started = time.perf_counter()
        call = Call(
            task_type,
            messages,
            complexity,
            allowed_tiers,
            reasoning_effort,
            schema,
            tier=tier,
            why=why,
            profile=profile,
        )
        decision = self._decide(call)
        records: list[AttemptRecord] = []
        escalations: list[Escalation] = []
        unresolved: list[str] = []
        while True:
            above = tier_above(decision.tier, allowed_tiers) if escalate else None
            stage = Stage(
                routed_model=decision.model,
                start=len(records),
                escalated_from=escalations[-1].from_tier if escalations else None,
                escalates=above is not None,
                deadline=deadline,
            )
            # The top of a cascade gets one ask more: nothing above it can take over.
            here = asks + 1 if escalate and above is None else asks
            chain = self._chain(decision, call, ledger, call_key, records, stage, check, here)
            request = request_for(decision, messages, schema, self._timeout)
            if on_output is not None:
                request = request.model_copy(update={"on_output": on_output})
            try:
                response: ProviderResponse = chain.complete(request)
                break
            except CheckFailed as failed:
                if above is None:
                    response, unresolved = failed.response, failed.problems
                    break
                reason = "; ".join(failed.problems)
            except AllProvidersFailed as failed:
                invalid = all(isinstance(f, InvalidOutput) for f in failed.failures)
                if above is None or not invalid:
                    raise
                reason = "every model of the tier answered invalid JSON"
            below = decision
            decision = self._decide(
                Call(
                    task_type,
                    messages,
                    None,
                    allowed_tiers,
                    reasoning_effort,
                    schema,
                    tier=above,
                    why=f"escalated from {below.tier} ({below.model}): {reason}",
                    profile=profile,
                )
            )
            escalations.append(
                Escalation(below.tier, decision.tier, below.model, decision.model, reason)
            )
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
            escalations=escalations,
            unresolved=unresolved,
        )

    def _decide(self, call: Call) -> RoutingDecision:
        names = {key: self._providers[key].name for key in self._order}
        return plan(self.catalogue, names, call)[0]

    def _chain(
        self,
        decision: RoutingDecision,
        call: Call,
        ledger: Ledger,
        call_key: str,
        records: list[AttemptRecord],
        stage: Stage,
        check: Check | None,
        asks: int,
    ) -> FallbackProvider:
        targets = []
        for model in decision.fallback_chain:
            spec = self.catalogue.model(model)
            metered = Metered(
                provider=self._providers[spec.provider],
                spec=spec,
                schema=call.schema,
                ledger=ledger,
                call_key=call_key,
                task_type=call.task_type,
                stage=stage,
                records=records,
                check=check,
            )
            targets.append(Target(model=model, provider=Repairing(metered, asks)))
        return FallbackProvider(targets, self.breaker)


def _total(records: Sequence[AttemptRecord]) -> TokenUsage:
    return TokenUsage(
        input_tokens=sum(r.usage.input_tokens for r in records),
        cached_input_tokens=sum(r.usage.cached_input_tokens for r in records),
        output_tokens=sum(r.usage.output_tokens for r in records),
        reasoning_tokens=sum(r.usage.reasoning_tokens for r in records),
    )
