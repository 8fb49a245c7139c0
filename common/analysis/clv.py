"""Customer lifetime value, computed: a model states the inputs and its assumptions, code does
the arithmetic, so the value and the acquisition cost it allows always follow from the inputs.

    yearly margin  = average order value * purchases per year * gross margin
    lifetime value = yearly margin * (1 + d) / (1 + d - r)      (d: discount rate, r: retention)
    max acquisition cost = lifetime value / 3

The value is the discounted sum of each year's margin with a customer who stays another year
with probability r (the first year counted in full); 3:1 lifetime value to acquisition cost is
the usual rule of thumb for a sustainable acquisition budget.
"""

from __future__ import annotations

import math
from typing import Any

from common.models import ClvProjection

DISCOUNT_RATE = 0.10
LTV_TO_CAC = 3
# Inputs beyond these are not a projection anyone should act on (checks say why).
MAX_RETENTION = 0.95
MIN_MARGIN = 0.01
MAX_ORDER_USD = 1_000_000.0
# How far a stated value may be from the computed one (rounding to cents).
_TOLERANCE_USD = 0.011
_RULES = (
    f"Lifetime value = yearly margin * (1 + {DISCOUNT_RATE:.0%}) / (1 + {DISCOUNT_RATE:.0%} - "
    "retention): computed, not estimated",
    f"Max acquisition cost = lifetime value / {LTV_TO_CAC} (a {LTV_TO_CAC}:1 value to cost ratio)",
)


def lifetime_value(
    average_order_value_usd: float,
    purchases_per_year: float,
    gross_margin: float,
    annual_retention_rate: float,
) -> float:
    """The discounted lifetime gross margin of one customer, in USD (unrounded)."""
    yearly = average_order_value_usd * purchases_per_year * gross_margin
    return yearly * (1 + DISCOUNT_RATE) / (1 + DISCOUNT_RATE - annual_retention_rate)


def project(inputs: Any) -> ClvProjection:
    """The projection of `inputs` (a `ClvInputs`): its numbers, the computed value and cost,
    its assumptions and the rules the arithmetic followed."""
    value = lifetime_value(
        inputs.average_order_value_usd,
        inputs.purchases_per_year,
        inputs.gross_margin,
        inputs.annual_retention_rate,
    )
    clv_usd = _cents_up(value)
    return ClvProjection(
        average_order_value_usd=inputs.average_order_value_usd,
        purchases_per_year=inputs.purchases_per_year,
        gross_margin=inputs.gross_margin,
        annual_retention_rate=inputs.annual_retention_rate,
        clv_usd=clv_usd,
        max_acquisition_cost_usd=_cents_up(clv_usd / LTV_TO_CAC),
        assumptions=[*inputs.assumptions[: 6 - len(_RULES)], *_RULES],
    )


def problems(projection: ClvProjection) -> list[str]:
    """Where a projection's value or cost does not follow from its own inputs."""
    expected = lifetime_value(
        projection.average_order_value_usd,
        projection.purchases_per_year,
        projection.gross_margin,
        projection.annual_retention_rate,
    )
    found = []
    if abs(projection.clv_usd - expected) > max(_TOLERANCE_USD, expected * 1e-9):
        found.append(
            f"clv_usd {projection.clv_usd:,.2f} does not follow from its inputs "
            f"({expected:,.2f} at a {DISCOUNT_RATE:.0%} discount rate)"
        )
    cost = projection.clv_usd / LTV_TO_CAC
    if abs(projection.max_acquisition_cost_usd - cost) > _TOLERANCE_USD:
        found.append(
            f"max_acquisition_cost_usd {projection.max_acquisition_cost_usd:,.2f} is not the "
            f"lifetime value / {LTV_TO_CAC} ({cost:,.2f})"
        )
    return found


def _cents_up(usd: float) -> float:
    """`usd` rounded up to a cent, never below one (the schema's values are positive)."""
    return max(math.ceil(usd * 100 - 1e-9) / 100, 0.01)
