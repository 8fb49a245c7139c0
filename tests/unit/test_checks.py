"""Checks of sense: a sound answer passes every one; each rule catches an answer seeded with
the flaw it is there for, and says what is wrong in words a model can act on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel

from common.analysis import answers, checks, clv
from common.analysis.prompts import subtask_messages
from common.analysis.registry import SUB_TASKS
from common.llm.providers.offline import placeholder_json
from common.llm.schema import response_schema
from common.models import (
    AnalyticsOutput,
    BusinessInput,
    ClvProjection,
    ContentOutput,
    IcpOutput,
    SelectedPositioning,
)

SAMPLE = Path(__file__).resolve().parents[2] / "local" / "samples" / "tidewater.json"
BUSINESS = BusinessInput.model_validate(json.loads(SAMPLE.read_text()))
INPUTS = checks.Inputs.of(BUSINESS)
M = TypeVar("M", bound=BaseModel)


def sound(schema: type[M], task: str = "a task") -> M:
    """A sound answer: the offline provider's, about the sample business."""
    messages = subtask_messages(task, BUSINESS, {})
    return schema.model_validate_json(placeholder_json(response_schema(schema), messages))


def weak(schema: type[M]) -> M:
    messages = subtask_messages("a task", BUSINESS, {})
    return schema.model_validate_json(
        placeholder_json(response_schema(schema), messages, weak=True)
    )


def edited(answer: M, **changes: Any) -> M:
    data = answer.model_dump()
    for path, value in changes.items():
        node: Any = data
        *parents, last = path.split("__")
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value
    return type(answer).model_validate(data)


def _schemas() -> list[type[BaseModel]]:
    sized = {
        "icps_segments": answers.icp_segments(3),
        "icps_review": answers.icp_review(3),
        "content_weeks": answers.week_batch(3, ["A", "B", "C"]),
        "content_review": answers.calendar_review(4),
    }
    return [sized.get(task, sub.answer) for task, sub in SUB_TASKS.items()]


@pytest.mark.parametrize("schema", _schemas(), ids=list(SUB_TASKS))
def test_a_sound_answer_passes_and_a_weak_one_fails_the_universal_checks(
    schema: type[BaseModel],
) -> None:
    assert checks.universal(sound(schema), INPUTS) == []
    found = checks.universal(weak(schema), INPUTS)
    assert found  # the offline provider's weak answers fail checks, whatever the sub-task
    assert any("merely repeats the business's own description" in p for p in found)


# --- Universal rules ------------------------------------------------------------------------


def test_text_that_merely_repeats_the_input_is_caught() -> None:
    answer = edited(sound(answers.CoreMix), product=BUSINESS.description.split(". ")[0])
    [problem] = checks.universal(answer, INPUTS)
    assert problem.startswith("product merely repeats the business's own description")
    # Quoting a goal within a sentence of its own is analysis, not an echo.
    quoting = edited(answer, product=f"Pricing that serves the goal '{BUSINESS.goals[0]}' first.")
    assert checks.universal(quoting, INPUTS) == []


def test_a_list_holding_an_item_twice_is_caught() -> None:
    answer = sound(answers.ResearchSynthesis)
    twice = edited(answer, situation_analysis__threats__1=answer.situation_analysis.threats[0])
    found = checks.universal(twice, INPUTS)
    assert found[0].startswith("situation_analysis.threats lists the same item twice")


def test_a_long_text_said_twice_is_caught() -> None:
    answer = sound(answers.ServiceMix)
    copied = edited(answer, process=answer.people)
    assert checks.universal(copied, INPUTS) == ["process repeats people word for word"]


# --- Per sub-task ---------------------------------------------------------------------------


def test_three_positioning_options_must_be_distinct_ideas() -> None:
    offered = sound(answers.PositioningOptions)
    assert checks.options(offered, INPUTS) == []
    first = offered.options[0].statement
    reworded = edited(offered, options__2__statement="Truly, " + first.lower())
    [problem] = checks.options(reworded, INPUTS)
    assert "options' statements 1 and 3 are nearly the same" in problem
    same_name = edited(offered, options__1__name=offered.options[0].name)
    assert "options' names 1 and 2 are the same" in checks.options(same_name, INPUTS)[0]


def test_the_selected_option_is_one_the_critic_passed_and_its_own_statement() -> None:
    offered = sound(answers.PositioningOptions)
    chosen = SelectedPositioning(
        option_number=2, statement=offered.options[1].statement, rationale="It fits."
    )
    assert checks.selection(chosen, offered, [True, True, True], INPUTS) == []
    [problem] = checks.selection(chosen, offered, [True, False, True], INPUTS)
    assert problem == "option 2 failed the critic's review; choose among 1, 3"
    # None passed: the best of them may still be chosen (the phase records what fails).
    assert checks.selection(chosen, offered, [False, False, False], INPUTS) == []
    stolen = chosen.model_copy(update={"statement": offered.options[2].statement})
    [problem] = checks.selection(stolen, offered, [True, True, True], INPUTS)
    assert problem.startswith("the statement is option 3's, not option 2's")


def test_a_critic_that_finds_fault_must_say_what_it_is() -> None:
    verdict = sound(answers.OptionCritique)
    assert checks.failed_criteria(verdict) == [] and checks.critique(verdict) == []
    silent = edited(verdict, credible=False, problems=[])
    assert checks.critique(silent) == [
        "a criterion not met must come with the problems that fail it"
    ]
    said = edited(silent, problems=["It promises same-day delivery it cannot run."])
    assert checks.critique(said) == []
    assert checks.verdict_problems("option 2", said) == [
        "option 2 is not credible: It promises same-day delivery it cannot run."
    ]


def test_icp_count_equals_the_request_and_segments_differ() -> None:
    seeds = sound(answers.icp_segments(4))
    assert checks.segments(seeds, 4, INPUTS) == []
    assert checks.segments(seeds, 5, INPUTS)[0] == "give exactly 5 ICPs, not 4"
    same = edited(seeds, icps__3__name=seeds.icps[0].name)
    assert "ICP names 1 and 4 are the same" in checks.segments(same, 4, INPUTS)[0]
    output = sound(IcpOutput)
    assert checks.icps(output, 3, INPUTS) == []
    assert checks.icps(output, 4, INPUTS) == ["3 ICPs where 4 were asked for"]


def test_every_icp_is_used_by_the_calendar_with_no_title_twice() -> None:
    calendar = sound(ContentOutput)
    names = sorted({item.icp for week in calendar.calendar for item in week.items})
    assert checks.calendar(calendar, names) == []
    assert checks.calendar(calendar, [*names, "Night-shift nurses"]) == [
        "the calendar never addresses Night-shift nurses"
    ]
    title = calendar.calendar[0].items[0].title
    repeated = edited(calendar, calendar__11__items__2__title=title)
    assert checks.calendar(repeated, names) == [f"the title {title!r} of week 12 repeats week 1's"]


def test_a_batch_of_weeks_uses_the_icps_it_was_given_and_no_earlier_title() -> None:
    schema = answers.week_batch(3, ["Cafe owners", "Home baristas", "Office managers"])
    batch = sound(schema)
    assert checks.week_batch(batch, 4, ["Cafe owners"]) == []
    one = edited(batch, **{f"weeks__{w}__items__{i}__icp": "Cafe owners"
                           for w in range(3) for i in range(3)})  # fmt: skip
    assert checks.week_batch(one, 4, ["Home baristas"]) == [
        "these ICPs must each get at least one item: Home baristas"
    ]
    later = sound(schema, "plan weeks 4 to 6")
    assert checks.clashes([batch], later, 4) == []
    copied = edited(later, weeks__0__items__0__title=batch.weeks[2].items[1].title)
    [problem] = checks.clashes([batch], copied, 4)
    assert problem.startswith("week 4's title") and problem.endswith("was used before")


def test_a_ladder_ranks_each_competitor_once_and_names_every_one_given() -> None:
    ladder = sound(answers.CompetitorLadder)
    assert checks.ladder(ladder, BUSINESS) == []
    gap = edited(ladder, competitor_ladder__2__rank=5)
    assert checks.ladder(gap, BUSINESS)[0] == "ranks must be 1 to 3, each once; got [1, 2, 5]"
    missing = edited(ladder, competitor_ladder__0__competitor="A local bakery")
    assert f"the named competitor {BUSINESS.competitors[0]!r} is missing from the ladder" in (
        checks.ladder(missing, BUSINESS)
    )


def test_a_swot_item_in_two_quadrants_is_caught() -> None:
    answer = sound(answers.ResearchSynthesis)
    strength = answer.situation_analysis.strengths[0]
    both = edited(answer, situation_analysis__weaknesses__0=strength)
    assert checks.synthesis(both) == [f"{strength!r} is listed under both strengths and weaknesses"]


def test_metrics_and_triggers_need_numbers_and_triggers_an_earlier_phase() -> None:
    metrics = sound(answers.NorthStars)
    assert checks.north_stars(metrics) == []
    vague = edited(metrics, north_star_metrics__0__target="Many more subscribers")
    assert "has no number to measure by" in checks.north_stars(vague)[0]
    triggers = sound(answers.RouteBacks)
    assert checks.route_backs(triggers) == []
    itself = edited(triggers, route_back__0__route_to_phase="analytics")
    assert checks.route_backs(itself) == [
        "trigger 1 routes back to analytics itself; name an earlier phase"
    ]


def test_lifetime_value_inputs_must_be_ones_a_value_can_rest_on() -> None:
    inputs = sound(answers.ClvInputs)
    assert checks.clv_inputs(inputs) == []
    forever = edited(inputs, annual_retention_rate=0.99)
    assert "annual_retention_rate 0.990 above 0.95" in checks.clv_inputs(forever)[0]
    daily = edited(inputs, purchases_per_year=500)
    assert checks.clv_inputs(daily)[0].startswith("purchases_per_year above 365")
    assert checks.clv_inputs(weak(answers.ClvInputs))  # a weak answer's numbers at their bounds


# --- CLV computed in code ---------------------------------------------------------------------


def test_clv_is_computed_from_its_inputs_and_inconsistent_arithmetic_is_caught() -> None:
    inputs = answers.ClvInputs(
        average_order_value_usd=32.0,
        purchases_per_year=9.0,
        gross_margin=0.6,
        annual_retention_rate=0.55,
        assumptions=["Subscribers order about every six weeks"],
    )
    projection = clv.project(inputs)
    # 32 x 9 x 0.6 = 172.80 a year; x 1.10 / (1.10 - 0.55) = 345.60.
    assert projection.clv_usd == pytest.approx(345.60)
    assert projection.max_acquisition_cost_usd == pytest.approx(115.20)
    assert projection.assumptions[0] == "Subscribers order about every six weeks"
    assert any("computed, not estimated" in a for a in projection.assumptions)
    assert clv.problems(projection) == []
    # The report: a $10 value next to a $10 acquisition cost, from a model's guess.
    guessed = projection.model_copy(update={"clv_usd": 10.0, "max_acquisition_cost_usd": 10.0})
    found = clv.problems(guessed)
    assert found[0].startswith("clv_usd 10.00 does not follow from its inputs (345.60")
    assert found[1].startswith("max_acquisition_cost_usd 10.00 is not the lifetime value / 3")
    analytics = sound(AnalyticsOutput)
    assert checks.analytics(analytics)  # the offline guess is not arithmetic either
    fixed = analytics.model_copy(update={"clv": clv.project(analytics.clv)})
    assert checks.analytics(fixed) == []
    assert isinstance(fixed.clv, ClvProjection)
