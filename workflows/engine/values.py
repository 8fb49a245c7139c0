"""Workflows values as Python objects, and the type rules shared by expressions and the stdlib.

int (64-bit), double (float), string (str), bool, null (None), bytes, list and map (dict with
string keys). Maps and lists are treated as immutable once stored: assignments copy the path they
change, so `b: ${a}` followed by `b.x: 1` never changes `a` (Workflows has value semantics).
"""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import TYPE_ERROR, VALUE_ERROR, limit_exceeded, raised
from .limits import MAX_STRING_BYTES

INT_MIN = -(2**63)
INT_MAX = 2**63 - 1


def format_double(value: float) -> str:
    """Doubles print without a trailing `.0` when whole, like Workflows' `string()`."""
    if math.isfinite(value) and value == int(value) and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def type_name(value: Any) -> str:
    """The Workflows name of a value's type, as used in error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bytes):
        return "bytes"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "map"
    return type(value).__name__


def is_number(value: Any) -> bool:
    """True for int and double (bool is not a number in Workflows)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_int(value: int) -> int:
    """Keep integers within 64 bits, as Workflows does."""
    if value < INT_MIN or value > INT_MAX:
        raise raised(VALUE_ERROR, "integer overflow")
    return value


def string_bytes(value: str) -> int:
    """A string's size in bytes (UTF-8), as the memory and string limits count it."""
    return len(value) if value.isascii() else len(value.encode())


def check_string(value: Any) -> Any:
    """Return `value`, or end the execution if it is a string over the 256 KB string limit.

    The limit is the engine's own, so its ResourceLimitError cannot be caught
    (https://cloud.google.com/workflows/quotas).
    """
    # A character is at most 4 bytes in UTF-8: short strings need no encoding to be cleared.
    if isinstance(value, str) and len(value) * 4 > MAX_STRING_BYTES:
        size = string_bytes(value)
        if size > MAX_STRING_BYTES:
            raise limit_exceeded(
                f"string of {size} bytes exceeds the limit of {MAX_STRING_BYTES} bytes"
            )
    return value


def check_strings(value: Any) -> Any:
    """`check_string` for every string inside a value (an HTTP response body)."""
    if isinstance(value, dict):
        for key, item in value.items():
            check_string(key)
            check_strings(item)
    elif isinstance(value, list):
        for item in value:
            check_strings(item)
    else:
        check_string(value)
    return value


def equal(a: Any, b: Any) -> bool:
    """`==` in Workflows: numbers compare by value across int/double, other types never equal."""
    if is_number(a) and is_number(b):
        return bool(a == b)
    if type_name(a) != type_name(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    return bool(a == b)


def to_json_value(value: Any, what: str = "value") -> Any:
    """Check that a value can leave the engine as JSON (bytes and NaN cannot)."""
    if isinstance(value, bytes):
        raise raised(TYPE_ERROR, f"{what} of type bytes cannot be JSON-encoded; use base64.encode")
    if isinstance(value, float) and not math.isfinite(value):
        raise raised(VALUE_ERROR, f"{what} is not a finite number")
    if isinstance(value, list):
        return [to_json_value(v, what) for v in value]
    if isinstance(value, dict):
        return {k: to_json_value(v, what) for k, v in value.items()}
    return value


def encode_json(value: Any, indent: int | str | None = None) -> str:
    """JSON text of a value, compact unless an indent is given."""
    checked = to_json_value(value)
    if indent is None:
        return json.dumps(checked, separators=(",", ":"), ensure_ascii=False)
    return json.dumps(checked, indent=indent, ensure_ascii=False)


def size_at_most(value: Any, limit: int) -> bool:
    """Whether a value's JSON size is within `limit` bytes; stops counting as soon as it is over."""
    budget = [limit]

    def walk(v: Any) -> bool:
        if isinstance(v, str | bytes):
            budget[0] -= len(v) + 2
        elif isinstance(v, dict):
            budget[0] -= 2
            for k, item in v.items():
                budget[0] -= len(k) + 4
                if budget[0] < 0 or not walk(item):
                    return False
        elif isinstance(v, list):
            budget[0] -= 2
            for item in v:
                if budget[0] < 0 or not walk(item):
                    return False
        else:
            budget[0] -= 8
        return budget[0] >= 0

    return walk(value)


def check_size(value: Any, limit: int, what: str) -> None:
    """Raise ResourceLimitError when a value exceeds a documented size limit."""
    if isinstance(value, dict | list | str | bytes) and not size_at_most(value, limit):
        raise limit_exceeded(f"{what} exceeds the limit of {limit} bytes")
