"""Test doubles for our own protocols (Ledger, Provider) and a sample business prompt.

The real providers are exercised against loopback servers in tests/protocol/llm; here the router's
own logic is driven by a provider that replays a script.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from common.llm.base import Message, ProviderError, ProviderRequest, ProviderResponse
from common.models import BusinessInput
from common.spend.ledger import BudgetDenied
from common.spend.records import AttemptRecord, ModelTier, TokenUsage

BUSINESS = BusinessInput(
    business_id="acme-analytics",
    name="Acme Analytics",
    industry="B2B SaaS",
    description="Point-of-sale analytics for independent retailers.",
    goals=["Grow trial signups 30%", "Enter the EU market"],
    target_market="Independent retailers in the US with 1-20 stores",
    competitors=["Shopify Analytics", "Glew"],
    icp_count=4,
)


def business_messages(
    business: BusinessInput = BUSINESS, task: str = "Research the market."
) -> list[Message]:
    line = "BUSINESS_JSON: " + business.model_dump_json(exclude_none=True)
    return [
        Message(role="system", content="You are a senior marketing strategist."),
        Message(role="user", content=f"{line}\nTASK: {task}"),
    ]


@dataclass
class Reservation:
    key: str
    model: str
    upper_bound_nanos: int


@dataclass
class RecordingLedger:
    """Records every reserve and settle; `deny_after` reservations succeed, then BudgetDenied."""

    deny_after: int | None = None
    reservations: list[Reservation] = field(default_factory=list)
    settled: list[AttemptRecord] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def reserve(self, *, key: str, model: str, tier: ModelTier, upper_bound_nanos: int) -> None:
        if self.deny_after is not None and len(self.reservations) >= self.deny_after:
            self.events.append(f"denied:{model}")
            raise BudgetDenied("daily_budget_exceeded", "daily budget exceeded")
        self.reservations.append(Reservation(key, model, upper_bound_nanos))
        self.events.append(f"reserve:{model}")

    def settle(self, attempt: AttemptRecord) -> None:
        self.settled.append(attempt)
        self.events.append(f"settle:{attempt.model}")


Step = str | Exception | Callable[[ProviderRequest], str]


@dataclass
class ScriptedProvider:
    """Answers each call with the next step: a text, an exception to raise, or a function of
    the request. Records every request it receives."""

    name: str
    steps: deque[Step] = field(default_factory=deque)
    usage: TokenUsage = field(
        default_factory=lambda: TokenUsage(
            input_tokens=1000, cached_input_tokens=100, output_tokens=200, reasoning_tokens=50
        )
    )
    requests: list[ProviderRequest] = field(default_factory=list)

    def push(self, *steps: Step) -> ScriptedProvider:
        self.steps.extend(steps)
        return self

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        self.requests.append(request)
        if not self.steps:
            raise AssertionError(f"{self.name}: unexpected call for {request.model}")
        step = self.steps.popleft()
        if isinstance(step, Exception):
            raise step
        text = step(request) if callable(step) else step
        return ProviderResponse(
            text=text, usage=self.usage, model=request.model, provider=self.name, latency_ms=1.0
        )


def failure(kind: type[ProviderError], provider: str, model: str, **kw: object) -> ProviderError:
    return kind(f"scripted {kind.__name__}", provider=provider, model=model, **kw)  # type: ignore[arg-type]
