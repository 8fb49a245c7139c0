"""JSON schemas for structured output, made from pydantic models.

`response_schema(Model)` is the canonical form every provider receives in `ProviderRequest`:
pydantic's `model_json_schema()` with `$ref`s inlined, every property required and
`additionalProperties: false` on every object (what OpenAI's strict mode demands), titles and
defaults dropped, `const` turned into a one-value `enum`. It keeps every validation keyword, so the
offline provider can honour string lengths too. Each provider then keeps only the keywords its
API accepts (`openai_schema`, `gemini_schema`); the answer is always validated with the pydantic
model itself, so a dropped keyword is still enforced (and repaired once) on our side.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from pydantic import BaseModel

JsonSchema = dict[str, Any]

# Keywords OpenAI's strict Structured Outputs accepts (its "supported schemas" list).
_OPENAI_KEYWORDS = frozenset(
    {
        "type",
        "description",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "anyOf",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "pattern",
        "format",
    }
)
# Keywords Gemini's `responseJsonSchema` accepts that we use: OpenAI's, less these.
_GEMINI_KEYWORDS = _OPENAI_KEYWORDS - {
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "pattern",
}
_CHILD_MAPS = ("properties",)
_CHILD_LISTS = ("anyOf", "prefixItems")
_CHILD_SCHEMAS = ("items", "additionalProperties")


class SchemaError(ValueError):
    """A pydantic model that cannot be expressed as a strict structured-output schema."""


def schema_name(model: type[BaseModel]) -> str:
    """A name for `model`'s schema that both APIs accept (letters, digits, _ and -)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", model.__name__)[:64]


def response_schema(model: type[BaseModel]) -> JsonSchema:
    """The canonical strict JSON schema of `model` (see the module docstring)."""
    raw = model.model_json_schema()
    defs: dict[str, JsonSchema] = raw.pop("$defs", {})
    return _strict(raw, defs, ())


def _strict(node: JsonSchema, defs: dict[str, JsonSchema], stack: tuple[str, ...]) -> JsonSchema:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in stack:
            raise SchemaError(f"schema {name} is recursive; structured output needs a finite one")
        if name not in defs:
            raise SchemaError(f"schema reference {node['$ref']} has no definition")
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        node = {**defs[name], **siblings}
        stack = (*stack, name)
    out: JsonSchema = {}
    for key, value in node.items():
        if key in ("title", "default", "examples"):
            continue
        if key == "const":
            out["enum"] = [value]
        elif key in _CHILD_MAPS:
            out[key] = {name: _strict(child, defs, stack) for name, child in value.items()}
        elif key in _CHILD_LISTS:
            out[key] = [_strict(child, defs, stack) for child in value]
        elif key in _CHILD_SCHEMAS and isinstance(value, dict):
            out[key] = _strict(value, defs, stack)
        else:
            out[key] = copy.deepcopy(value)
    if out.get("type") == "object" or "properties" in out:
        properties = out.setdefault("properties", {})
        out["required"] = list(properties)
        out["additionalProperties"] = False
    return out


def _keep(node: JsonSchema, allowed: frozenset[str], exclusive_to_inclusive: bool) -> JsonSchema:
    out: JsonSchema = {}
    for key, value in node.items():
        if exclusive_to_inclusive and key in ("exclusiveMinimum", "exclusiveMaximum"):
            # Gemini has no exclusive bounds: the inclusive one is close, pydantic checks the rest.
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out.setdefault(bound, value)
            continue
        if key not in allowed:
            continue
        if key in _CHILD_MAPS:
            out[key] = {
                n: _keep(child, allowed, exclusive_to_inclusive) for n, child in value.items()
            }
        elif key in _CHILD_LISTS:
            out[key] = [_keep(child, allowed, exclusive_to_inclusive) for child in value]
        elif key in _CHILD_SCHEMAS and isinstance(value, dict):
            out[key] = _keep(value, allowed, exclusive_to_inclusive)
        else:
            out[key] = value
    return out


def openai_schema(schema: JsonSchema) -> JsonSchema:
    """`schema` with only the keywords OpenAI's strict mode accepts (string lengths dropped)."""
    return _keep(schema, _OPENAI_KEYWORDS, exclusive_to_inclusive=False)


def gemini_schema(schema: JsonSchema) -> JsonSchema:
    """`schema` with only the keywords Gemini's `responseJsonSchema` accepts."""
    return _keep(schema, _GEMINI_KEYWORDS, exclusive_to_inclusive=True)
