"""Which tier a call starts on, learned from how calls of its task type ended before.

The cascade (`Router.execute(..., escalate=True)`) asks cheap models first and moves one tier
up only when an answer fails its checks. Where it starts decides what it costs: a task type whose
answers from nano usually pass should start on nano; one whose nano answers usually fail wastes
a call on nano each time and should start higher. `start_tier` chooses the cheapest allowed tier
whose recent first-try pass rate meets the target, from `PassRates` the caller read (usage
records; the reading is cached, never a query per call), and now and then starts one tier
lower than that on purpose (bounded exploration), so a tier that got better is found again.

A rate measured on few calls is noisy: a tier counts as missing the target only when the data
say so with confidence (the upper end of its 95% Wilson interval is below the target), so a
cheap tier passing 70% of the time is not abandoned for a 65% target after two unlucky calls
in five. Pure: no I/O here.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

from common.llm.catalogue import TIERS
from common.spend.records import ModelTier

_Z = 1.96  # 95%


@dataclass(frozen=True)
class PassRate:
    """How often a task type's first answer on a tier passed its checks."""

    passed: int
    tried: int

    @property
    def rate(self) -> float:
        return self.passed / self.tried if self.tried else 0.0

    @property
    def upper(self) -> float:
        """The upper end of the rate's 95% Wilson score interval."""
        if not self.tried:
            return 1.0
        n, p, z = self.tried, self.rate, _Z
        centre = p + z * z / (2 * n)
        spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return min(1.0, (centre + spread) / (1 + z * z / n))

    def meets(self, target: float) -> bool:
        """Whether the rate may meet `target` (not shown to fall short of it)."""
        return self.upper >= target


#: (task type, tier) -> its recent first-try pass rate.
PassRates = Mapping[tuple[str, ModelTier], PassRate]


@dataclass(frozen=True)
class Start:
    """Where a call starts: `tier` (None: the task's own default routing decides) and why."""

    tier: ModelTier | None
    reason: str
    exploring: bool = False


def explores(key: str, rate: float) -> bool:
    """Whether the call `key` is one of the `rate` share chosen to explore (deterministic, so
    a replayed call decides the same)."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def start_tier(
    task_type: str,
    *,
    default: ModelTier | None,
    allowed: frozenset[ModelTier],
    rates: PassRates,
    target: float,
    min_samples: int,
    explore_rate: float,
    key: str,
) -> Start:
    """The tier a call of `task_type` starts on.

    Args:
        default: where the task starts while its outcomes say nothing yet (None: the router's
            own routing: the task profile, else the classifier).
        allowed: the tiers the caller may use.
        rates: recent first-try pass rates by (task type, tier).
        target: the first-try pass rate a tier must reach to be started on (not be shown,
            with 95% confidence, to fall short of).
        min_samples: first tries a tier needs before its rate counts.
        explore_rate: the share of calls started one tier below the choice (when there is
            one), so cheaper tiers keep being measured.
        key: the call's key (decides exploration).
    """
    tiers = [tier for tier in TIERS if tier in allowed]
    if not tiers:
        raise ValueError("allowed: at least one tier")
    known = {
        tier: rates[(task_type, tier)]
        for tier in tiers
        if (task_type, tier) in rates and rates[(task_type, tier)].tried >= min_samples
    }
    prior = _gate(default, tiers)

    def may_pass(tier: ModelTier) -> bool:
        # A tier not measured yet is given the benefit of the doubt from the task's default
        # up (cheap first); below its default it is only explored.
        if tier in known:
            return known[tier].meets(target)
        return prior is not None and TIERS.index(tier) >= TIERS.index(prior)

    passing = [tier for tier in tiers if may_pass(tier)]
    chosen: ModelTier | None
    measured = ", ".join(f"{t} {known[t].rate:.0%} of {known[t].tried}" for t in known)
    if passing and passing[0] in known:
        chosen = passing[0]
        found = known[chosen]
        reason = (
            f"{chosen} passed {found.passed} of its last {found.tried} first tries "
            f"({found.rate:.0%}, up to {found.upper:.0%}; target {target:.0%})"
        )
        cheaper = [t for t in tiers[: tiers.index(chosen)] if t in known]
        if cheaper:
            reason += "; " + ", ".join(f"{t} {known[t].rate:.0%}" for t in cheaper)
    elif passing:
        chosen = passing[0]
        reason = f"{chosen} not measured yet for {task_type}: its default first" + (
            f" ({measured}; target {target:.0%})" if known else ""
        )
    elif known:
        # Every tier measured falls short: start just above the best of them, to learn.
        worst = max(known, key=tiers.index)
        higher = tiers[tiers.index(worst) + 1 :]
        chosen = higher[0] if higher else worst
        reason = f"{measured} first tries passed, short of the {target:.0%} target"
    else:
        chosen = prior
        reason = f"no outcomes of {task_type} yet: the router's own routing"
    if chosen is not None:
        lower = tiers[: tiers.index(chosen)]
        if lower and explores(key, explore_rate):
            return Start(lower[-1], f"exploring {lower[-1]} ({reason})", exploring=True)
    return Start(chosen, reason)


def _gate(tier: ModelTier | None, tiers: list[ModelTier]) -> ModelTier | None:
    """`tier`, or the best allowed one below it (else the lowest allowed)."""
    if tier is None or tier in tiers:
        return tier
    below = [t for t in tiers if TIERS.index(t) < TIERS.index(tier)]
    return below[-1] if below else tiers[0]
