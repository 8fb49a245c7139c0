"""The offline provider: deterministic, schema-valid, grounded answers that budgets can bound."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
from pydantic import BaseModel, Field, create_model

from common.analysis.phases import PHASE_TASKS
from common.llm import Router, get_router
from common.llm.base import ProviderRequest
from common.llm.providers import offline
from common.llm.providers.offline import OfflineProvider, business_from, placeholder_json
from common.llm.schema import response_schema
from common.llm.tasks import task_profile
from common.llm.tokens import count_message_tokens, count_tokens
from common.models import (
    PHASE_OUTPUTS,
    AnalyticsOutput,
    BusinessInput,
    ContentOutput,
    Icp,
    IcpOutput,
    PhaseName,
    ResearchOutput,
)
from common.platform.settings import get_settings
from common.spend.ledger import NullLedger
from tests.unit.llm.doubles import BUSINESS, RecordingLedger, business_messages

PHASES = list(PHASE_OUTPUTS.items())
IDS = [name for name, _ in PHASES]
# The largest business input the API accepts: longest texts, most goals/competitors/ICPs.
LARGEST = BusinessInput(
    business_id="z" * 63,
    name="N" * 200,
    industry="I" * 200,
    description="D" * 5000,
    goals=["G" * 200] * 10,
    target_market="T" * 2000,
    competitors=["C" * 200] * 10,
    icp_count=9,
)
# Emoji cost several tokens each: the worst case for token counts per character.
EMOJI = LARGEST.model_copy(
    update={"name": "🚀" * 200, "goals": ["📈" * 200] * 10, "competitors": ["🦖" * 200] * 10}
)


def _request(schema: type[BaseModel], business: BusinessInput = BUSINESS) -> ProviderRequest:
    return ProviderRequest(
        model="gpt-5-mini",
        messages=business_messages(business),
        max_output_tokens=100_000,
        json_schema=response_schema(schema),
        timeout_seconds=5,
    )


@pytest.mark.parametrize(("phase", "schema"), PHASES, ids=IDS)
def test_answers_are_valid_and_deterministic(phase: PhaseName, schema: type[BaseModel]) -> None:
    provider = OfflineProvider()
    first = provider.complete(_request(schema))
    second = provider.complete(_request(schema))
    assert first.text == second.text
    schema.model_validate_json(first.text)
    assert first.provider == "offline" and first.model == "gpt-5-mini"


@pytest.mark.parametrize(("phase", "schema"), PHASES, ids=IDS)
def test_answers_are_about_the_business_and_marked(
    phase: PhaseName, schema: type[BaseModel]
) -> None:
    text = OfflineProvider().complete(_request(schema)).text
    assert "Acme Analytics" in text
    assert "[offline]" in text
    strings = _strings(json.loads(text))
    # Every free text is marked as a placeholder, apart from enum values and competitor names.
    unmarked = [s for s in strings if not s.startswith("[offline]")]
    assert set(unmarked) <= {"Shopify Analytics", "Glew", "low", "medium", "high"} | set(
        _enum_values(response_schema(schema))
    )


def test_research_weaves_in_industry_goals_and_competitors() -> None:
    research = ResearchOutput.model_validate_json(
        OfflineProvider().complete(_request(ResearchOutput)).text
    )
    assert [rung.rank for rung in research.competitor_ladder] == [1, 2, 3]
    # The named competitors first, then placeholders: no competitor twice on one ladder.
    assert [rung.competitor for rung in research.competitor_ladder] == [
        "Shopify Analytics",
        "Glew",
        "[offline] Competitor 3 of Acme Analytics",
    ]
    assert "B2B SaaS" in research.situation_analysis.summary
    assert "Grow trial signups 30%" in research.situation_analysis.summary
    assert any("Enter the EU market" in s for s in research.situation_analysis.strengths)


def test_arrays_follow_the_schema_and_run_in_order() -> None:
    content = ContentOutput.model_validate_json(
        OfflineProvider().complete(_request(ContentOutput)).text
    )
    assert [week.week for week in content.calendar] == list(range(1, 13))
    assert all(len(week.items) == 3 for week in content.calendar)
    analytics = AnalyticsOutput.model_validate_json(
        OfflineProvider().complete(_request(AnalyticsOutput)).text
    )
    assert [stage.stage for stage in analytics.amec] == [
        "inputs",
        "activities",
        "outputs",
        "outtakes",
        "outcomes",
        "impact",
    ]
    assert 0 < analytics.clv.gross_margin <= 1 and 0 <= analytics.clv.annual_retention_rate < 1


def test_icp_count_is_honoured() -> None:
    icps = IcpOutput.model_validate_json(OfflineProvider().complete(_request(IcpOutput)).text)
    assert len(icps.icps) == BUSINESS.icp_count
    sized = create_model(
        "IcpOutput", __base__=IcpOutput, icps=(list[Icp], Field(min_length=5, max_length=5))
    )
    assert len(json.loads(OfflineProvider().complete(_request(sized)).text)["icps"]) == 5


def test_usage_is_counted_with_the_real_tokenizer() -> None:
    request = _request(ResearchOutput)
    response = OfflineProvider().complete(request)
    assert response.usage.input_tokens == count_message_tokens(request.messages)
    assert response.usage.output_tokens == count_tokens(response.text)
    assert response.usage.reasoning_tokens == response.usage.cached_input_tokens == 0


def test_plain_text_without_a_schema() -> None:
    request = _request(ResearchOutput).model_copy(update={"json_schema": None})
    text = OfflineProvider().complete(request).text
    assert text.startswith("[offline]") and "Acme Analytics" in text


def test_without_a_business_line_answers_stay_valid() -> None:
    request = _request(ResearchOutput).model_copy(
        update={"messages": [{"role": "user", "content": "Research the market."}]}
    )
    ResearchOutput.model_validate_json(OfflineProvider().complete(request).text)
    assert business_from(request.messages).name == "the business"


@pytest.mark.parametrize(
    "business", [BUSINESS, LARGEST, EMOJI], ids=["typical", "largest", "emoji"]
)
@pytest.mark.parametrize(("phase", "schema"), PHASES, ids=IDS)
def test_estimate_is_never_below_the_actual_offline_cost(
    phase: PhaseName, schema: type[BaseModel], business: BusinessInput
) -> None:
    router = Router({"openai": OfflineProvider()})
    task = PHASE_TASKS[phase]
    messages = business_messages(business)
    for complexity in (None, "simple", "complex"):
        estimate = router.estimate(task, messages, complexity)
        ledger = RecordingLedger()
        completion = router.execute(
            task,
            messages,
            complexity=complexity,
            schema=schema,
            ledger=ledger,
            call_key=f"run:{phase}",
        )
        assert completion.cost_nanos > 0
        assert estimate >= completion.cost_nanos
        assert ledger.reservations[0].upper_bound_nanos >= completion.cost_nanos
        # The answer fits the task's output bound, so the bound really is one.
        assert completion.usage.output_tokens <= completion.decision.max_output_tokens


def test_latency_setting_makes_each_call_wait(
    router_env: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []
    # The offline provider's clock only: patching `time.sleep` itself would also make every
    # background thread of the process (the budget's housekeeping) spin and be recorded.
    router_env.setattr(
        offline, "time", SimpleNamespace(sleep=waits.append, perf_counter=time.perf_counter)
    )
    router_env.setenv("OFFLINE_LATENCY_MS", "250")
    get_settings.cache_clear()  # a background thread may have read the settings before
    router = get_router()
    assert router.providers == ["offline"]
    router.execute(
        "sentence_summary", business_messages(), ledger=NullLedger(), call_key="demo:summary"
    )
    assert waits == [0.25]


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _enum_values(schema: object) -> list[str]:
    if isinstance(schema, dict):
        found = [v for v in schema.get("enum", []) if isinstance(v, str)]
        return found + [v for child in schema.values() for v in _enum_values(child)]
    if isinstance(schema, list):
        return [v for child in schema for v in _enum_values(child)]
    return []


def test_placeholder_json_is_compact_json() -> None:
    text = placeholder_json(response_schema(ResearchOutput), business_messages())
    assert text == json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))


def _longest_bounds(schema: dict[str, object], value: object, path: str = "answer") -> list[str]:
    """Where `value` falls short of "as large as `schema` allows": arrays below maxItems."""
    short: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        assert isinstance(properties, dict)
        for key, child in value.items():
            short += _longest_bounds(properties[key], child, f"{path}.{key}")
    elif isinstance(value, list):
        high = schema.get("maxItems")
        if high is not None and len(value) != high and not path.endswith(".icps"):
            short.append(f"{path}: {len(value)} of {high}")
        items = schema.get("items", {})
        assert isinstance(items, dict)
        for n, child in enumerate(value):
            short += _longest_bounds(items, child, f"{path}[{n}]")
    return short


@pytest.mark.parametrize(("phase", "model"), PHASES, ids=IDS)
def test_the_longest_answer_fills_the_schema_within_the_tasks_output_bound(
    phase: PhaseName, model: type[BaseModel]
) -> None:
    # The worst case the production-parity run sends each phase (tests/parity).
    schema = response_schema(model)
    bound = task_profile(PHASE_TASKS[phase]).max_output_tokens
    messages = business_messages(LARGEST)
    text = placeholder_json(schema, messages, longest=True, max_tokens=bound)
    answer = model.model_validate_json(text)
    assert count_tokens(text) <= bound
    assert _longest_bounds(schema, json.loads(text)) == []
    if phase == "icps":
        assert isinstance(answer, IcpOutput) and len(answer.icps) == LARGEST.icp_count
    typical = placeholder_json(schema, messages)
    assert len(text) > len(typical)
    if phase == "research":
        # All the evidence and competitors the schema allows.
        assert isinstance(answer, ResearchOutput)
        assert len(answer.evidence) == 20 and len(answer.competitor_ladder) == 10


def test_a_streamed_offline_answer_is_heard_in_chunks_over_its_latency() -> None:
    waits: list[float] = []
    heard: list[int] = []
    provider = OfflineProvider(latency_ms=800, sleep=waits.append)
    request = _request(ContentOutput).model_copy(update={"on_output": heard.append})
    response = provider.complete(request)
    assert heard == sorted(heard) and len(heard) > 1
    assert heard[-1] == response.usage.output_tokens  # the whole answer, in the end
    assert sum(waits) == pytest.approx(0.8)  # the latency, spread over the chunks
    assert response.text == OfflineProvider().complete(_request(ContentOutput)).text


def test_texts_of_an_answer_and_of_different_requests_never_repeat_each_other() -> None:
    content = ContentOutput.model_validate_json(
        OfflineProvider().complete(_request(ContentOutput)).text
    )
    titles = [item.title for week in content.calendar for item in week.items]
    assert len(set(titles)) == len(titles) == 36
    other = _request(ContentOutput).model_copy(
        update={"messages": business_messages(task="Plan weeks 4 to 6.")}
    )
    again = ContentOutput.model_validate_json(OfflineProvider().complete(other).text)
    assert not set(titles) & {item.title for week in again.calendar for item in week.items}


def test_weak_answers_come_at_the_given_rate_repeat_the_description_and_stay_valid() -> None:
    provider = OfflineProvider(weak_rates={"gpt-5-nano": 0.3}, seed=7)
    weak = 0
    for n in range(200):
        request = _request(AnalyticsOutput).model_copy(
            update={"model": "gpt-5-nano", "messages": business_messages(task=f"Ask {n}.")}
        )
        answer = AnalyticsOutput.model_validate_json(provider.complete(request).text)
        if provider.weak(request):
            weak += 1
            assert answer.amec[0].objective == BUSINESS.description.rstrip(".") or (
                answer.amec[0].objective in BUSINESS.description
            )
            assert answer.clv.annual_retention_rate > 0.99
        else:
            assert answer.amec[0].objective.startswith("[offline]")
    assert 40 <= weak <= 80  # about 30% of 200
    mini = _request(AnalyticsOutput)  # gpt-5-mini: no rate given, never weak
    assert not provider.weak(mini)
    seeded = OfflineProvider(weak_rates={"gpt-5-nano": 0.3}, seed=7)
    assert [seeded.weak(r) for r in [mini]] == [provider.weak(mini)]


def _sub_task_schemas() -> list[tuple[str, type[BaseModel]]]:
    from common.analysis import answers
    from common.analysis.registry import SUB_TASKS

    sized = {
        "icps_segments": answers.icp_segments(9),
        "icps_review": answers.icp_review(9),
        "content_weeks": answers.week_batch(3, [f"ICP {n}" for n in range(9)]),
        "content_review": answers.calendar_review(4),
    }
    return [(task, sized.get(task, sub.answer)) for task, sub in SUB_TASKS.items()]


@pytest.mark.parametrize(("task", "model"), _sub_task_schemas(), ids=lambda v: str(v)[:30])
def test_the_longest_sub_task_answer_fills_its_schema_within_its_output_bound(
    task: str, model: type[BaseModel]
) -> None:
    # The worst case the production-parity run sends each sub-task (tests/parity).
    from common.analysis.registry import SUB_TASKS

    bound = SUB_TASKS[task].max_output_tokens
    schema = response_schema(model)
    text = placeholder_json(schema, business_messages(LARGEST), longest=True, max_tokens=bound)
    model.model_validate_json(text)
    assert count_tokens(text) <= bound
    assert _longest_bounds(schema, json.loads(text)) == []
