"""Money: an integer number of nano-dollars (1e-9 USD) everywhere it is counted.

Every catalogue price is a whole number of nano-dollars per token, so costs add up exactly, with
no float drift, and Firestore increments them atomically. Dollars appear only at the edges: in
limits people type (`Decimal`, converted exactly) and in what is shown (`usd`, `format_usd`).
"""

from __future__ import annotations

from decimal import Decimal

NANOS_PER_USD = 1_000_000_000


def nanos(usd: Decimal | int | str) -> int:
    """`usd` dollars as nano-dollars, exactly (a fraction of a nano is an error, not rounded)."""
    amount = Decimal(usd) * NANOS_PER_USD
    if amount != amount.to_integral_value():
        raise ValueError(f"${usd} is not a whole number of nano-dollars")
    return int(amount)


def usd(amount_nanos: int) -> float:
    """Nano-dollars as dollars, for display and JSON (never for further arithmetic)."""
    return amount_nanos / NANOS_PER_USD


def format_usd(amount_nanos: int, places: int = 6) -> str:
    """`$0.001234` style, with `places` decimals."""
    return f"${usd(amount_nanos):.{places}f}"
