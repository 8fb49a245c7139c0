"""Task types: what each kind of model call needs by default.

A task's `max_output_tokens` bounds the answer *including* reasoning tokens (GPT-5's
`max_completion_tokens` counts both), so it is also the output side of the pre-flight cost bound.
It is sized for the phase schema's largest valid answer plus room to reason.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from common.llm.base import Complexity, InvalidRequest, ReasoningEffort


class TaskProfile(BaseModel):
    """Defaults for one task type. `complexity=None` leaves the choice to the classifier."""

    model_config = ConfigDict(frozen=True)

    name: str
    complexity: Complexity | None
    max_output_tokens: int = Field(gt=0)
    description: str


def _task(
    name: str, complexity: Complexity | None, max_output_tokens: int, description: str
) -> TaskProfile:
    return TaskProfile(
        name=name,
        complexity=complexity,
        max_output_tokens=max_output_tokens,
        description=description,
    )


TASKS: dict[str, TaskProfile] = {
    task.name: task
    for task in (
        # The six analysis phases.
        _task(
            "research_analysis",
            "complex",
            16_000,
            "SWOT, competitor ladder, evidence and SOSTAC: everything later phases build on",
        ),
        _task(
            "positioning_analysis",
            "balanced",
            8_000,
            "three positioning options and the chosen one",
        ),
        _task("icp_generation", "balanced", 16_000, "3-9 ideal customer profiles"),
        _task(
            "strategy_analysis",
            "complex",
            12_000,
            "marketing 7Ps and north-star metrics: trade-offs across the whole plan",
        ),
        _task(
            "content_calendar",
            "balanced",
            24_000,
            "12-week calendar and creative briefs: long but formulaic output",
        ),
        _task(
            "analytics_projection",
            "balanced",
            12_000,
            "AMEC evaluation stages, CLV projection and route-back triggers",
        ),
        # Small helpers.
        _task("sentence_summary", "simple", 1_000, "a one-sentence summary"),
        _task("classification", "simple", 1_000, "pick a label from a fixed set"),
        _task("extraction", "simple", 4_000, "pull named fields out of a text"),
        _task("general", None, 8_000, "anything else: the classifier decides"),
    )
}

# Task types that are not listed get the classifier and this output bound.
DEFAULT_MAX_OUTPUT_TOKENS = 8_000
DEFAULT_REASONING_EFFORT: dict[Complexity, ReasoningEffort] = {
    "simple": "minimal",
    "balanced": "low",
    "complex": "medium",
}
_TASK_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def task_profile(task_type: str) -> TaskProfile:
    """The profile of `task_type`; an unlisted (well-formed) name gets the defaults.

    Raises:
        InvalidRequest: `task_type` is not a lower-case identifier of at most 64 characters.
    """
    task = TASKS.get(task_type)
    if task is not None:
        return task
    if not _TASK_NAME.match(task_type):
        raise InvalidRequest(
            f"task_type {task_type!r} is invalid: use a lower-case identifier such as "
            "'research_analysis' (letters, digits, underscores; at most 64 characters)"
        )
    return _task(task_type, None, DEFAULT_MAX_OUTPUT_TOKENS, "unlisted task type")
