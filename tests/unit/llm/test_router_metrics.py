"""RouteLLM's routing metrics (tools/router_metrics.py), on rows small enough to check by hand.

Definitions: Ong et al., "RouteLLM: Learning to Route LLMs with Preference Data" (ICLR 2025),
https://arxiv.org/abs/2406.18665, section 5.1 (PGR, APGR, CPT).
"""

from __future__ import annotations

import numpy as np
import pytest

from tools.router_metrics import brier, expected_calibration_error, pgr_curve, reliability

# Four rows: the strong model gains 0.6, 0.3, 0.1 and 0.0 over the weak one (total 1.0).
STRONG = np.array([0.9, 0.8, 0.6, 0.5])
WEAK = np.array([0.3, 0.5, 0.5, 0.5])


def test_routing_the_biggest_gains_first_recovers_the_gap_fastest() -> None:
    oracle = pgr_curve(np.array([4.0, 3.0, 2.0, 1.0]), STRONG, WEAK)
    assert oracle.pgr.tolist() == pytest.approx([0.0, 0.6, 0.9, 1.0, 1.0])
    # Trapezoids of width 1/4 under 0, .6, .9, 1, 1.
    assert oracle.apgr() == pytest.approx(0.25 * (0.3 + 0.75 + 0.95 + 1.0))
    assert oracle.cpt(0.95) == 0.75 and oracle.cpt(0.5) == 0.25
    backwards = pgr_curve(np.array([1.0, 2.0, 3.0, 4.0]), STRONG, WEAK)
    assert backwards.apgr() < 0.5 < oracle.apgr()


def test_a_router_that_cannot_tell_rows_apart_scores_what_random_routing_does() -> None:
    constant = pgr_curve(np.zeros(4), STRONG, WEAK)
    assert constant.pgr.tolist() == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert constant.apgr() == pytest.approx(0.5)
    assert constant.cpt(0.95) == 1.0


def test_tied_rows_count_as_their_expected_value() -> None:
    # Rows 1 and 2 tie: after the first row (gain .6), the next two add .4 in expectation.
    tied = pgr_curve(np.array([3.0, 2.0, 2.0, 1.0]), STRONG, WEAK)
    assert tied.pgr.tolist() == pytest.approx([0.0, 0.6, 0.8, 1.0, 1.0])
    assert tied.threshold[1:].tolist() == [3.0, 2.0, 2.0, 1.0]


def test_no_gap_to_recover_is_an_error() -> None:
    with pytest.raises(ValueError, match="not better"):
        pgr_curve(np.zeros(2), np.array([0.5, 0.5]), np.array([0.5, 0.6]))


def test_calibration_measures() -> None:
    label = np.array([0.0, 0.0, 1.0, 1.0])
    probability = np.array([0.1, 0.1, 0.9, 0.7])
    assert brier(probability, label) == pytest.approx((0.01 + 0.01 + 0.01 + 0.09) / 4)
    assert reliability(probability, label) == [(0.1, 0.0, 2), (0.7, 1.0, 1), (0.9, 1.0, 1)]
    assert expected_calibration_error(probability, label) == pytest.approx(
        (0.1 * 2 + 0.3 + 0.1) / 4
    )
