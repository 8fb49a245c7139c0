"""Routing metrics as RouteLLM defines them (Ong et al. 2024, https://arxiv.org/abs/2406.18665).

Rows are (prompt, strong model, weak model) with each model's quality in [0, 1]. A router gives
each row a score; routing the highest-scored share c of rows to the strong model yields the
routed quality Q(c), the mean over rows of the chosen model's quality. Then

- PGR(c) = (Q(c) - Q_weak) / (Q_strong - Q_weak), the performance gap recovered;
- APGR = the area under PGR(c) for c from 0 to 1 (trapezoids over every row count);
- CPT(x) = the smallest share c with PGR(c) >= x (the share of strong calls needed).

Rows with equal scores cannot be told apart by a threshold, so within a tie the curve is the
expected value of breaking it at random (a straight line). A router that gives every row the same
score therefore scores exactly what random routing does on average: PGR(c) = c, APGR 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Curve:
    """PGR against the share of strong calls, at every row count 0..n."""

    share: Array
    pgr: Array
    threshold: Array  # the score of the last row routed strong at each count (inf at 0)

    def apgr(self) -> float:
        """Area under the PGR curve."""
        return float(np.trapezoid(self.pgr, self.share))

    def cpt(self, target: float) -> float:
        """Smallest share of strong calls reaching PGR `target` (1.0 if never reached)."""
        reached = np.nonzero(self.pgr >= target - 1e-12)[0]
        return float(self.share[reached[0]]) if reached.size else 1.0


def pgr_curve(scores: Array, strong: Array, weak: Array) -> Curve:
    """The PGR curve of routing the highest `scores` first (ties as their expected value)."""
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    gain = (strong - weak)[order]
    count = len(scores)
    cumulative = np.concatenate([[0.0], np.cumsum(gain)])
    starts = np.concatenate([[0], np.nonzero(np.diff(ranked))[0] + 1])
    ends = np.concatenate([starts[1:], [count]])
    expected = cumulative.copy()
    for start, end in zip(starts, ends, strict=True):
        if end - start > 1:
            steps = end - start + 1
            expected[start : end + 1] = np.linspace(cumulative[start], cumulative[end], steps)
    total = cumulative[-1]
    if total <= 0:
        raise ValueError("the strong model is not better than the weak one on these rows")
    threshold = np.concatenate([[np.inf], ranked])
    return Curve(share=np.arange(count + 1) / count, pgr=expected / total, threshold=threshold)


def brier(probability: Array, label: Array) -> float:
    """Mean squared error of a probability against 0/1 labels."""
    return float(np.mean((probability - label) ** 2))


def reliability(probability: Array, label: Array, bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean predicted, observed rate, rows) per equal-width probability bin that has rows."""
    index = np.minimum((probability * bins).astype(int), bins - 1)
    table = []
    for b in range(bins):
        chosen = index == b
        if chosen.any():
            table.append(
                (float(probability[chosen].mean()), float(label[chosen].mean()), int(chosen.sum()))
            )
    return table


def expected_calibration_error(probability: Array, label: Array, bins: int = 10) -> float:
    """Row-weighted mean |predicted - observed| over `reliability`'s bins."""
    table = reliability(probability, label, bins)
    return sum(abs(p - o) * n for p, o, n in table) / len(probability)
