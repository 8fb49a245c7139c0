"""Percent and ETA arithmetic: a run's points add up to exactly 100."""

from __future__ import annotations

import datetime as dt

import pytest

from common.analysis.phases import PHASES, STEPS, step_delta
from common.runs.documents import eta_seconds
from common.runs.lifecycle import START_WEIGHT


def test_start_phases_and_finish_add_up_to_100() -> None:
    finish = 100 - START_WEIGHT - sum(p.weight for p in PHASES.values())
    assert finish == 3  # what `succeed` adds when it sets percent to 100


@pytest.mark.parametrize("phase", list(PHASES))
def test_each_phase_steps_add_up_to_its_weight(phase: str) -> None:
    weight = PHASES[phase].weight  # type: ignore[index]
    deltas = [step_delta(weight, i) for i in range(len(STEPS))]
    assert sum(deltas) == weight
    assert all(d >= 0 for d in deltas)


def test_eta_extrapolates_from_elapsed_time() -> None:
    start = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
    now = start + dt.timedelta(seconds=30)
    assert eta_seconds(start, 25, now) == 90
    assert eta_seconds(start, 100, now) == 0
    assert eta_seconds(start, 2, now) is None  # too early to tell
    assert eta_seconds(None, 50, now) is None
