"""The business input and phase outputs reject what a user or a model could get wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from common.models import AnalyticsOutput, BusinessInput, ContentOutput

SAMPLE = json.loads(
    (Path(__file__).resolve().parents[2] / "local/samples/tidewater.json").read_text()
)


def errors_for(**changes: Any) -> list[str]:
    with pytest.raises(ValidationError) as invalid:
        BusinessInput.model_validate({**SAMPLE, **changes})
    return [".".join(str(p) for p in e["loc"]) for e in invalid.value.errors()]


def test_the_sample_business_is_valid() -> None:
    assert BusinessInput.model_validate(SAMPLE).icp_count == 3


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"business_id": "Has Spaces"}, "business_id"),
        ({"description": "too short"}, "description"),
        ({"goals": []}, "goals"),
        ({"icp_count": 2}, "icp_count"),
        ({"icp_count": 10}, "icp_count"),
        ({"website": "ftp://example.com"}, "website"),
        ({"name": ""}, "name"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_business_input_names_the_field(changes: dict[str, Any], field: str) -> None:
    assert field in errors_for(**changes)


def test_a_missing_field_is_named() -> None:
    data = {k: v for k, v in SAMPLE.items() if k != "industry"}
    with pytest.raises(ValidationError) as invalid:
        BusinessInput.model_validate(data)
    assert invalid.value.errors()[0]["loc"] == ("industry",)


def week(number: int) -> dict[str, Any]:
    item = {
        "channel": "email",
        "format": "newsletter",
        "title": "t",
        "icp": "i",
        "call_to_action": "c",
    }
    return {"week": number, "theme": "theme", "items": [item]}


BRIEF = {
    "name": "n",
    "objective": "o",
    "audience": "a",
    "key_message": "k",
    "format": "f",
    "tone": "t",
    "mandatories": ["m"],
}


def test_a_content_calendar_must_run_weeks_1_to_12_in_order() -> None:
    ContentOutput.model_validate(
        {"calendar": [week(n) for n in range(1, 13)], "asset_templates": [BRIEF]}
    )
    shuffled = [week(n) for n in [2, 1, *range(3, 13)]]
    with pytest.raises(ValidationError, match=r"1\.\.12 in order"):
        ContentOutput.model_validate({"calendar": shuffled, "asset_templates": [BRIEF]})


def test_amec_stages_must_each_appear_once_in_order() -> None:
    stages = ["inputs", "activities", "outputs", "outtakes", "outcomes", "impact"]
    clv = {
        "average_order_value_usd": 40,
        "purchases_per_year": 12,
        "gross_margin": 0.5,
        "annual_retention_rate": 0.6,
        "clv_usd": 600,
        "max_acquisition_cost_usd": 150,
        "assumptions": ["a"],
    }
    trigger = {"metric": "m", "threshold": "t", "route_to_phase": "positioning", "action": "a"}

    def analytics(order: list[str]) -> dict[str, Any]:
        amec = [{"stage": s, "objective": "o", "metrics": ["m"]} for s in order]
        return {"amec": amec, "clv": clv, "route_back": [trigger]}

    AnalyticsOutput.model_validate(analytics(stages))
    with pytest.raises(ValidationError, match="in order"):
        AnalyticsOutput.model_validate(analytics(list(reversed(stages))))
