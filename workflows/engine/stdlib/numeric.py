"""The math module."""

from __future__ import annotations

import math
from typing import Any

from ..errors import VALUE_ERROR, raised
from ..values import INT_MIN, check_int
from .registry import expect, function


def number(fn: str, param: str, value: Any) -> None:
    expect(fn, param, value, "int", "double")


@function("math.abs", "x")
def _abs(x: Any) -> Any:
    number("math.abs", "x", x)
    if type(x) is int and x == INT_MIN:
        # Its absolute value is one more than the largest int64: "ValueError: If x is MinInt64"
        # (https://cloud.google.com/workflows/docs/reference/stdlib/math/abs).
        raise raised(VALUE_ERROR, "math.abs: the absolute value of MinInt64 is not an int64")
    return abs(x)


def _widen(x: Any, y: Any, chosen: Any) -> Any:
    # "If both numbers are integers, returns an integer; otherwise, a floating-point number"
    # (https://cloud.google.com/workflows/docs/reference/stdlib/math/max and .../min).
    return chosen if type(x) is int and type(y) is int else float(chosen)


@function("math.floor", "x")
def _floor(x: Any) -> int:
    number("math.floor", "x", x)
    return check_int(math.floor(x))


@function("math.max", "x", "y")
def _max(x: Any, y: Any) -> Any:
    number("math.max", "x", x)
    number("math.max", "y", y)
    return _widen(x, y, x if x >= y else y)


@function("math.min", "x", "y")
def _min(x: Any, y: Any) -> Any:
    number("math.min", "x", x)
    number("math.min", "y", y)
    return _widen(x, y, x if x <= y else y)


@function("math.sqrt", "x")
def _sqrt(x: Any) -> float:
    number("math.sqrt", "x", x)
    if x < 0:
        raise raised(VALUE_ERROR, "math.sqrt: math domain error")
    return math.sqrt(x)
