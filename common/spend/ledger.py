"""The ledger a paid call reserves on before it runs and settles on after it, and the two ways
a reservation is not granted."""

from __future__ import annotations

from typing import Protocol

from common.spend.records import AttemptRecord, ModelTier


class BudgetDenied(Exception):
    """The budget refused a reservation; `reason` is one of the budget's reason codes."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class BudgetBusy(Exception):
    """The budget could not answer now (contention, or money held by work in flight that comes
    back shortly); nothing was spent: try again later. `reason` is a code such as
    `budget_contention`."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class Ledger(Protocol):
    """Reserve before every paid attempt, settle after it (also when it failed: the cost of any
    billed tokens, else 0, which releases the reservation). `common.budget.ledger` is one."""

    def reserve(self, *, key: str, model: str, tier: ModelTier, upper_bound_nanos: int) -> None:
        """Hold `upper_bound_nanos` for attempt `key` on `model` (of `tier`) until it settles;
        or raise `BudgetDenied` (or `BudgetBusy`). Once this returns, the hold is durable: a
        holder that dies before settling is charged the hold, never less."""
        ...

    def settle(self, attempt: AttemptRecord) -> None:
        """Release the reservation of `attempt.key` and record its actual cost, exactly once."""
        ...


class NullLedger:
    """A ledger that allows everything and records nothing (unit tests, benchmarks)."""

    def reserve(self, *, key: str, model: str, tier: ModelTier, upper_bound_nanos: int) -> None:
        return None

    def settle(self, attempt: AttemptRecord) -> None:
        return None
