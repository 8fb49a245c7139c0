"""Complexity: explicit beats the task default, which beats the automatic classifier."""

from __future__ import annotations

import pytest

from common.analysis.phases import PHASE_TASKS
from common.llm import Router
from common.llm.base import InvalidRequest, Message
from common.llm.complexity import classify
from common.llm.providers.offline import OfflineProvider
from common.llm.tasks import TASKS, task_profile

SIMPLE = "Summarize in one sentence: our spring sale starts Monday and runs for two weeks."
BALANCED = """Write three taglines for a coffee subscription aimed at remote workers.
Each tagline must be under 8 words and should mention mornings.
- tone: warm
- avoid puns"""
COMPLEX = """Analyze our three pricing options and compare them against the two competitors below.
Evaluate the trade-offs for each customer segment, justify which option we should prioritize,
and explain why step by step.
Constraints: the plan must stay within a $20k budget, must launch within 6 weeks, should not
require new hires, and each recommendation must cite the data.
## Data
- Option A: $29/month
- Option B: $49/month
- Option C: usage-based
## Segments
1. Solo founders
2. Agencies
3. Enterprises
"""


def _user(text: str) -> list[Message]:
    return [Message(role="user", content=text)]


@pytest.mark.parametrize(
    ("text", "expected"), [(SIMPLE, "simple"), (BALANCED, "balanced"), (COMPLEX, "complex")]
)
def test_classifier_reads_length_structure_reasoning_and_constraints(
    text: str, expected: str
) -> None:
    assert classify(_user(text)).complexity == expected


def test_classifier_explains_its_score() -> None:
    found = classify(_user(COMPLEX))
    assert "compare" in found.reason and "must" in found.reason
    assert f"score {found.score}" in found.reason


def test_a_very_long_prompt_is_not_simple() -> None:
    assert classify(_user("Please read the following notes carefully. " * 3000)).complexity != (
        "simple"
    )


def test_every_phase_task_has_a_default() -> None:
    for task in PHASE_TASKS.values():
        assert TASKS[task].complexity is not None, task
    assert task_profile("sentence_summary").complexity == "simple"
    assert task_profile("positioning_analysis").complexity == "balanced"
    assert task_profile("strategy_analysis").complexity == "complex"


def test_task_names_are_checked() -> None:
    assert task_profile("brand_voice_review").complexity is None  # unlisted: classifier decides
    with pytest.raises(InvalidRequest, match="task_type 'Bad Name!' is invalid"):
        task_profile("Bad Name!")


@pytest.fixture
def router() -> Router:
    return Router({"openai": OfflineProvider()})


def test_explicit_complexity_wins(router: Router) -> None:
    decision = router.route("sentence_summary", _user(SIMPLE), complexity="complex")
    assert (decision.model, decision.complexity_source) == ("gpt-5", "explicit")
    assert "given by the caller" in decision.reason


def test_task_default_beats_the_classifier(router: Router) -> None:
    decision = router.route("strategy_analysis", _user(SIMPLE))
    assert (decision.model, decision.tier, decision.complexity_source) == ("gpt-5", "full", "task")
    assert "'strategy_analysis' defaults to 'complex'" in decision.reason
    summary = router.route("sentence_summary", _user(COMPLEX))
    assert summary.model == "gpt-5-nano"


@pytest.mark.parametrize(
    ("text", "model"),
    [(SIMPLE, "gpt-5-nano"), (BALANCED, "gpt-5-mini"), (COMPLEX, "gpt-5")],
)
def test_classifier_routes_tasks_without_a_default(router: Router, text: str, model: str) -> None:
    decision = router.route("general", _user(text))
    assert decision.model == model
    assert decision.complexity_source == "classifier"
    assert "classifier score" in decision.reason


def test_bad_complexity_is_named(router: Router) -> None:
    with pytest.raises(InvalidRequest, match="complexity: must be simple, balanced or complex"):
        router.route("general", _user(SIMPLE), complexity="hard")  # type: ignore[arg-type]


def test_instructions_after_long_pasted_material_still_count() -> None:
    pasted = "Store 12 sold 40 units of SKU 881 on Tuesday.\n" * 2000
    found = classify(_user(pasted + COMPLEX))
    assert found.complexity == "complex"
    assert "compare" in found.reason
