"""The math module."""

from __future__ import annotations

import math
from typing import Any

from ..errors import VALUE_ERROR, raised
from ..values import check_int
from .registry import expect, function


def number(fn: str, param: str, value: Any) -> None:
    expect(fn, param, value, "int", "double")


@function("math.abs", "x")
def _abs(x: Any) -> Any:
    number("math.abs", "x", x)
    return abs(x)


@function("math.floor", "x")
def _floor(x: Any) -> int:
    number("math.floor", "x", x)
    return check_int(math.floor(x))


@function("math.max", "x", "y")
def _max(x: Any, y: Any) -> Any:
    number("math.max", "x", x)
    number("math.max", "y", y)
    return x if x >= y else y


@function("math.min", "x", "y")
def _min(x: Any, y: Any) -> Any:
    number("math.min", "x", x)
    number("math.min", "y", y)
    return x if x <= y else y


@function("math.sqrt", "x")
def _sqrt(x: Any) -> float:
    number("math.sqrt", "x", x)
    if x < 0:
        raise raised(VALUE_ERROR, "math.sqrt: math domain error")
    return math.sqrt(x)
