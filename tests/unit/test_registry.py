"""The phase registry is the one definition of the analysis: the workflow, the points of the
progress bar, the task types and the prompts follow it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import yaml

from common.analysis import prompts
from common.analysis.registry import (
    FINISH_WEIGHT,
    MAX_STEP,
    PHASES,
    STAGES,
    SUB_TASKS,
    base_points,
    shares,
    siblings,
)
from common.models import PHASE_ORDER, PHASE_OUTPUTS
from common.runs.documents import START_WEIGHT, eta_seconds
from local.stack import WORKFLOWS_DIR

WORKFLOW = WORKFLOWS_DIR / "marketing_analysis.workflows.yaml"


def _stages_of_the_workflow() -> list[tuple[str, ...]]:
    """The phases the workflow's `analyse` steps run, in order, parallel ones together."""
    steps = yaml.safe_load(WORKFLOW.read_text())["main"]["steps"]
    analyse = next(step["analyse"] for step in steps if "analyse" in step)
    stages: list[tuple[str, ...]] = []

    def phase_of(body: dict[str, Any]) -> str | None:
        if body.get("call") in ("run_phase", "run_phase_or_stop"):
            return str(body["args"]["phase"])
        return None

    for step in analyse["try"]["steps"]:
        [(_, body)] = step.items()
        if (phase := phase_of(body)) is not None:
            stages.append((phase,))
        elif "parallel" in body:
            found = []
            for branch in body["parallel"]["branches"]:
                [(_, inner)] = branch.items()
                for nested in inner["steps"]:
                    [(_, nested_body)] = nested.items()
                    if (phase := phase_of(nested_body)) is not None:
                        found.append(phase)
            stages.append(tuple(found))
    return stages


def test_the_workflow_runs_the_registrys_stages() -> None:
    assert _stages_of_the_workflow() == list(STAGES)
    # Every phase runs once, in the order lower layers know them by.
    assert [phase for stage in STAGES for phase in stage] == list(PHASE_ORDER)
    assert list(PHASES) == list(PHASE_ORDER)


def test_each_phase_builds_only_on_phases_of_earlier_stages() -> None:
    for stage, phases in enumerate(STAGES):
        earlier = {name for done in STAGES[:stage] for name in done}
        for name in phases:
            assert set(PHASES[name].needs) <= earlier, name


def test_start_phases_and_finish_add_up_to_100_and_no_step_moves_more_than_5() -> None:
    assert START_WEIGHT + sum(spec.weight for spec in PHASES.values()) + FINISH_WEIGHT == 100
    steps = [START_WEIGHT, FINISH_WEIGHT]
    for spec in PHASES.values():
        steps.append(spec.start_points)
        for sub in spec.sub_tasks:
            # A sub-task run once per ICP (3 to 9) or per batch shares its points.
            for count in sub.instances:
                steps += shares(sub.points, count)
    assert max(steps) <= MAX_STEP
    assert all(step >= 0 for step in steps)


@pytest.mark.parametrize("count", range(1, 10))
def test_shares_add_up_to_their_points(count: int) -> None:
    for points in range(0, 12):
        split = shares(points, count)
        assert sum(split) == points and len(split) == count and max(split) - min(split) <= 1


def test_a_phase_starts_where_the_earlier_stages_end_and_knows_its_sibling() -> None:
    assert base_points("research") == START_WEIGHT
    assert base_points("positioning") == START_WEIGHT + PHASES["research"].weight
    assert base_points("icps") == base_points("strategy")
    assert base_points("content") == base_points("icps") + (
        PHASES["icps"].weight + PHASES["strategy"].weight
    )
    assert siblings("icps") == ("strategy",) and siblings("research") == ()


def test_every_sub_task_has_its_own_task_type_and_profile() -> None:
    assert len(SUB_TASKS) == sum(len(spec.sub_tasks) for spec in PHASES.values())
    for task_type, sub in SUB_TASKS.items():
        assert task_type == f"{sub.phase}_{sub.name}"
        assert sub.profile.name == task_type
        assert sub.profile.max_output_tokens == sub.max_output_tokens > sub.expected_tokens
        assert sub.start in ("nano", "mini", "full", "strongest", None)
    # The phases' own single-call task types stay the static routing's (the bench's baseline).
    assert not set(SUB_TASKS) & {spec.task_type for spec in PHASES.values()}
    for name, spec in PHASES.items():
        assert spec.output is PHASE_OUTPUTS[name]
        assert name in prompts.INSTRUCTIONS


def test_eta_extrapolates_from_elapsed_time() -> None:
    start = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
    now = start + dt.timedelta(seconds=30)
    assert eta_seconds(start, 25, now) == 90
    assert eta_seconds(start, 100, now) == 0
    assert eta_seconds(start, 2, now) is None  # too early to tell
    assert eta_seconds(None, 50, now) is None
