"""The fallback chain, itself a provider, and the per-model circuit breaker it consults.

`FallbackProvider` tries each (model, provider) target in order and moves on only for the typed
`FALLBACK_ERRORS`; anything else (our own `InvalidRequest`, `BudgetDenied`, a bug) propagates at
once. When every target fails it raises `AllProvidersFailed` listing each failure in order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from common.llm.base import (
    FALLBACK_ERRORS,
    AllProvidersFailed,
    InvalidOutput,
    Provider,
    ProviderError,
    ProviderRequest,
    ProviderResponse,
    ProviderUnavailable,
)

DEFAULT_COOLDOWN_SECONDS = 30.0


class CircuitBreaker:
    """Skips a model for `cooldown_seconds` after it failed on the provider's side.

    In memory only: an instance is short-lived and a stale open circuit costs one skipped
    attempt at most. Invalid output does not open the circuit (the model is up; the answer was
    bad), so only availability failures count. `clock` is injectable for tests.
    """

    def __init__(
        self,
        cooldown_seconds: float = DEFAULT_COOLDOWN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._cooldown = cooldown_seconds
        self._clock = clock
        self._open_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def remaining(self, model: str) -> float:
        """Seconds until `model` may be tried again (0 when its circuit is closed)."""
        with self._lock:
            until = self._open_until.get(model)
            if until is None:
                return 0.0
            left = until - self._clock()
            if left <= 0:
                del self._open_until[model]
                return 0.0
            return left

    def record_failure(self, model: str, error: ProviderError) -> None:
        """Open `model`'s circuit if `error` says its provider is unavailable to us."""
        if isinstance(error, InvalidOutput) or self._cooldown <= 0:
            return
        with self._lock:
            self._open_until[model] = self._clock() + self._cooldown

    def record_success(self, model: str) -> None:
        with self._lock:
            self._open_until.pop(model, None)


@dataclass(frozen=True)
class Target:
    """One link of the chain: `provider` asked for `model`."""

    model: str
    provider: Provider


class FallbackProvider:
    """A provider that tries its targets in order (see the module docstring)."""

    name = "fallback"

    def __init__(self, targets: Sequence[Target], breaker: CircuitBreaker | None = None):
        if not targets:
            raise ValueError("a fallback chain needs at least one target")
        self._targets = list(targets)
        self._breaker = breaker or CircuitBreaker()

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        """The first target's answer that succeeds; `request.model` is replaced per target."""
        failures: list[ProviderError] = []
        for target in self._targets:
            wait = self._breaker.remaining(target.model)
            if wait > 0:
                failures.append(
                    ProviderUnavailable(
                        f"skipped: circuit open for another {wait:.0f}s after a recent failure",
                        provider=target.provider.name,
                        model=target.model,
                    )
                )
                continue
            try:
                attempt = request.model_copy(update={"model": target.model})
                response = target.provider.complete(attempt)
            except FALLBACK_ERRORS as error:
                self._breaker.record_failure(target.model, error)
                failures.append(error)
                continue
            self._breaker.record_success(target.model)
            return response
        raise AllProvidersFailed(failures)
