"""Strict JSON schemas from pydantic models, in the shape each provider accepts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, Field

from common.llm.schema import (
    SchemaError,
    gemini_schema,
    openai_schema,
    response_schema,
    schema_name,
)
from common.models import PHASE_OUTPUTS, AnalyticsOutput, ContentOutput, PositioningOutput


def _objects(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if node.get("type") == "object":
            yield node
        for value in node.values():
            yield from _objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value)


def _keys(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            found.add(key)
            if key == "properties":
                for child in value.values():
                    found |= _keys(child)
            else:
                found |= _keys(value)
    elif isinstance(node, list):
        for value in node:
            found |= _keys(value)
    return found


@pytest.mark.parametrize("model", list(PHASE_OUTPUTS.values()), ids=list(PHASE_OUTPUTS))
def test_every_object_is_closed_and_fully_required(model: type[BaseModel]) -> None:
    schema = openai_schema(response_schema(model))
    objects = list(_objects(schema))
    assert objects
    for node in objects:
        assert node["additionalProperties"] is False
        assert node["required"] == list(node["properties"])
    assert not {"$ref", "$defs", "title", "default"} & _keys(schema)


def test_validation_keywords_are_kept() -> None:
    content = response_schema(ContentOutput)
    calendar = content["properties"]["calendar"]
    assert (calendar["minItems"], calendar["maxItems"]) == (12, 12)
    week = calendar["items"]["properties"]["week"]
    assert (week["type"], week["minimum"], week["maximum"]) == ("integer", 1, 12)
    analytics = response_schema(AnalyticsOutput)
    stage = analytics["properties"]["amec"]["items"]["properties"]["stage"]
    assert stage["enum"][0] == "inputs"
    margin = analytics["properties"]["clv"]["properties"]["gross_margin"]
    assert (margin["exclusiveMinimum"], margin["maximum"]) == (0, 1)
    # String lengths stay in the canonical schema (the offline provider honours them) ...
    assert (
        response_schema(PositioningOutput)["properties"]["options"]["items"]["properties"]["name"][
            "maxLength"
        ]
        == 200
    )


def test_each_provider_gets_only_keywords_it_accepts() -> None:
    canonical = response_schema(AnalyticsOutput)
    openai = openai_schema(canonical)
    assert "maxLength" not in _keys(openai) and "minLength" not in _keys(openai)
    assert openai["properties"]["clv"]["properties"]["gross_margin"]["exclusiveMinimum"] == 0
    gemini = gemini_schema(canonical)
    assert not {"exclusiveMinimum", "exclusiveMaximum", "maxLength"} & _keys(gemini)
    assert gemini["properties"]["clv"]["properties"]["gross_margin"]["minimum"] == 0
    assert gemini["properties"]["clv"]["properties"]["annual_retention_rate"]["maximum"] == 1


def test_optional_fields_become_required_and_nullable() -> None:
    class Note(BaseModel):
        text: str
        tag: str | None = None
        weight: int = Field(default=1, ge=1)

    schema = response_schema(Note)
    assert schema["required"] == ["text", "tag", "weight"]
    assert {"type": "null"} in schema["properties"]["tag"]["anyOf"]
    assert "default" not in schema["properties"]["weight"]


def test_recursive_models_are_refused() -> None:
    class Node(BaseModel):
        name: str
        children: list[Node]

    with pytest.raises(SchemaError, match="recursive"):
        response_schema(Node)


def test_schema_names_fit_both_apis() -> None:
    class Weird_Name(BaseModel):
        x: int

    assert schema_name(Weird_Name) == "Weird_Name"
    assert schema_name(ContentOutput) == "ContentOutput"
