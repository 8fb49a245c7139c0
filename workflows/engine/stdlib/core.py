"""Expression helpers: default, keys, len, get_type and the conversions.

https://cloud.google.com/workflows/docs/reference/stdlib/expression-helpers
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import TYPE_ERROR, VALUE_ERROR, raised
from ..values import check_int, format_double, is_number, type_name
from .registry import expect, function


@function("default", "value", "default_value")
def _default(value: Any, default_value: Any) -> Any:
    return default_value if value is None else value


@function("keys", "map")
def _keys(value: Any) -> list[str]:
    expect("keys", "map", value, "map")
    # Always sorted (https://cloud.google.com/workflows/docs/reference/syntax/iteration).
    return sorted(value)


@function("len", "value")
def _len(value: Any) -> int:
    expect("len", "value", value, "string", "list", "map", "bytes")
    return len(value)


@function("get_type", "value")
def _get_type(value: Any) -> str:
    return type_name(value)


@function("string", "value")
def _string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_double(value)
    raise raised(TYPE_ERROR, f"string: cannot convert {type_name(value)} to string")


@function("int", "value")
def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise raised(TYPE_ERROR, "int: cannot convert bool to int")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise raised(VALUE_ERROR, f"int: cannot convert {value} to int")
        return check_int(int(value))
    if isinstance(value, str):
        try:
            return check_int(int(value.strip(), 10))
        except ValueError:
            raise raised(VALUE_ERROR, f"int: cannot convert {value!r} to int") from None
    raise raised(TYPE_ERROR, f"int: cannot convert {type_name(value)} to int")


@function("double", "value")
def _double(value: Any) -> float:
    if is_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise raised(VALUE_ERROR, f"double: cannot convert {value!r} to double") from None
    raise raised(TYPE_ERROR, f"double: cannot convert {type_name(value)} to double")


@function("bool", "value")
def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if isinstance(value, str):
        raise raised(VALUE_ERROR, f"bool: cannot convert {value!r} to bool")
    raise raised(TYPE_ERROR, f"bool: cannot convert {type_name(value)} to bool")
