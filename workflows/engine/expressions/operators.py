"""Operators and member access, with Workflows' type rules and error tags."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..errors import INDEX_ERROR, KEY_ERROR, TYPE_ERROR, ZERO_DIVISION_ERROR, raised
from ..values import check_int, check_string, equal, is_number, type_name


def _operand_error(op: str, a: Any, b: Any) -> Exception:
    return raised(
        TYPE_ERROR, f"unsupported operand type(s) for {op}: '{type_name(a)}' and '{type_name(b)}'"
    )


def _numbers(op: str, a: Any, b: Any) -> None:
    if not (is_number(a) and is_number(b)):
        raise _operand_error(op, a, b)


def op_add(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        return check_int(a + b)
    if is_number(a) and is_number(b):
        return float(a) + float(b)
    if isinstance(a, str) and isinstance(b, str):
        return check_string(a + b)
    raise _operand_error("+", a, b)


def op_sub(a: Any, b: Any) -> Any:
    _numbers("-", a, b)
    return check_int(a - b) if type(a) is int and type(b) is int else float(a) - float(b)


def op_mul(a: Any, b: Any) -> Any:
    _numbers("*", a, b)
    return check_int(a * b) if type(a) is int and type(b) is int else float(a) * float(b)


def op_div(a: Any, b: Any) -> Any:
    _numbers("/", a, b)
    if b == 0:
        raise raised(ZERO_DIVISION_ERROR, "division by zero")
    return float(a) / float(b)


def op_floordiv(a: Any, b: Any) -> Any:
    _numbers("//", a, b)
    if b == 0:
        raise raised(ZERO_DIVISION_ERROR, "division by zero")
    if type(a) is int and type(b) is int:
        return check_int(a // b)
    return float(math.floor(float(a) / float(b)))


def op_mod(a: Any, b: Any) -> Any:
    _numbers("%", a, b)
    if b == 0:
        raise raised(ZERO_DIVISION_ERROR, "division by zero")
    return a % b if type(a) is int and type(b) is int else math.fmod(float(a), float(b))


def _orderable(op: str, a: Any, b: Any) -> None:
    if not ((is_number(a) and is_number(b)) or (isinstance(a, str) and isinstance(b, str))):
        raise _operand_error(op, a, b)


def op_lt(a: Any, b: Any) -> bool:
    _orderable("<", a, b)
    return bool(a < b)


def op_gt(a: Any, b: Any) -> bool:
    _orderable(">", a, b)
    return bool(a > b)


def op_le(a: Any, b: Any) -> bool:
    _orderable("<=", a, b)
    return bool(a <= b)


def op_ge(a: Any, b: Any) -> bool:
    _orderable(">=", a, b)
    return bool(a >= b)


def op_eq(a: Any, b: Any) -> bool:
    return equal(a, b)


def op_ne(a: Any, b: Any) -> bool:
    return not equal(a, b)


def op_in(a: Any, b: Any) -> bool:
    if isinstance(b, list):
        return any(equal(a, item) for item in b)
    if isinstance(b, dict):
        return isinstance(a, str) and a in b
    raise raised(TYPE_ERROR, f"argument of type '{type_name(b)}' is not a list or a map")


BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": op_add,
    "-": op_sub,
    "*": op_mul,
    "/": op_div,
    "//": op_floordiv,
    "%": op_mod,
    "<": op_lt,
    ">": op_gt,
    "<=": op_le,
    ">=": op_ge,
    "==": op_eq,
    "!=": op_ne,
    "in": op_in,
}


def get_key(obj: Any, key: str) -> Any:
    """`obj.key` / `obj["key"]`: a missing key is a KeyError (use map.get for optional keys)."""
    if not isinstance(obj, dict):
        raise raised(TYPE_ERROR, f"cannot read key '{key}' of a {type_name(obj)}, expected a map")
    try:
        return obj[key]
    except KeyError:
        raise raised(KEY_ERROR, f"key not found: {key}") from None


def get_item(obj: Any, index: Any) -> Any:
    """`obj[index]` for lists (int index) and maps (string key)."""
    if isinstance(obj, list):
        if type(index) is not int:
            raise raised(TYPE_ERROR, f"list indices must be int, not {type_name(index)}")
        if index < 0 or index >= len(obj):
            raise raised(INDEX_ERROR, f"list index {index} out of range (length {len(obj)})")
        return obj[index]
    if isinstance(obj, dict):
        if not isinstance(index, str):
            raise raised(TYPE_ERROR, f"map keys must be string, not {type_name(index)}")
        return get_key(obj, index)
    raise raised(TYPE_ERROR, f"'{type_name(obj)}' is not subscriptable")


def bool_operand(op: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise raised(TYPE_ERROR, f"operand of '{op}' must be bool, not {type_name(value)}")
    return value
