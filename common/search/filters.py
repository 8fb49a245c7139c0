"""The filter grammar of vector search, Vertex AI Vector Search's restricts.

A metadata value that is a string of at most 256 characters, a list of such strings or a bool
("true"/"false") puts tokens in a *string namespace* named by its key; an int or float (finite)
sets a *numeric namespace*; any other value (longer text, dicts, None) is stored and returned but
cannot be filtered on.

A filter is a dict from namespace to a condition:

    {"business_id": "acme"}                          token equals "acme"
    {"business_id": ["acme", "globex"]}              any of these tokens
    {"kind": {"allow": ["evidence"], "deny": ["draft"]}}
    {"kind": {"deny": ["draft"]}}                    anything without the token "draft"
    {"is_public": True}                              token "true"
    {"year": 2024}                                   numeric EQUAL
    {"created_at": {">=": 1.7e9, "<": 1.8e9}}        numeric, ops < <= == >= > !=

Semantics (Vertex's): conditions on different namespaces are ANDed; the tokens of one allow list
are ORed; a datapoint with any denied token is excluded; a deny-only condition matches every
datapoint without a denied token, including those that lack the namespace; an allow list never
matches a datapoint that lacks the namespace; a numeric condition compares the datapoint's value
with the query's (`value <= 10` for {"<=": 10}) and never matches a datapoint without that
numeric namespace. An empty allow list is refused (in Vertex it would silently match everything).
An index that cannot express a condition refuses it with `InvalidFilter` rather than answer
differently.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Filter = Mapping[str, Any]
NumericOp = Literal["LESS", "LESS_EQUAL", "EQUAL", "GREATER_EQUAL", "GREATER", "NOT_EQUAL"]
MAX_TOKEN_LENGTH = 256
_OPS: dict[str, NumericOp] = {
    "<": "LESS",
    "<=": "LESS_EQUAL",
    "==": "EQUAL",
    ">=": "GREATER_EQUAL",
    ">": "GREATER",
    "!=": "NOT_EQUAL",
}


class InvalidFilter(ValueError):
    """A filter that cannot be expressed; the message names the namespace and the reason."""


@dataclass(frozen=True)
class TokenRestrict:
    """A string-namespace condition: some allowed token (if any are listed), no denied one."""

    namespace: str
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()


@dataclass(frozen=True)
class NumericRestrict:
    """A numeric-namespace condition: `datapoint value <op> value`."""

    namespace: str
    op: NumericOp
    value: float


@dataclass(frozen=True)
class Restricts:
    """A parsed filter (query side) or a datapoint's filterable metadata (tokens, numbers)."""

    tokens: tuple[TokenRestrict, ...] = ()
    numbers: tuple[NumericRestrict, ...] = ()


def parse_filter(filter: Filter | None) -> Restricts:
    """The restricts a filter dict stands for (see the module docstring for the format).

    Raises:
        InvalidFilter: an unknown form, an empty allow list, a non-finite number.
    """
    if not filter:
        return Restricts()
    if not isinstance(filter, Mapping):
        raise InvalidFilter(f"filter must be a dict of namespace to condition, not {filter!r}")
    tokens: list[TokenRestrict] = []
    numbers: list[NumericRestrict] = []
    for namespace, condition in filter.items():
        if not isinstance(namespace, str) or not namespace:
            raise InvalidFilter(f"filter namespace {namespace!r} must be a non-empty string")
        if isinstance(condition, str | bool):
            tokens.append(TokenRestrict(namespace, allow=(_token(namespace, condition),)))
        elif isinstance(condition, int | float):
            numbers.append(NumericRestrict(namespace, "EQUAL", _number(namespace, condition)))
        elif isinstance(condition, list | tuple):
            tokens.append(TokenRestrict(namespace, allow=_token_list(namespace, condition)))
        elif isinstance(condition, Mapping):
            keys = set(condition)
            if keys and keys <= {"allow", "deny"}:
                allow = _token_list(namespace, condition.get("allow", ()), empty_ok=True)
                deny = _token_list(namespace, condition.get("deny", ()), empty_ok=True)
                if not allow and not deny:
                    raise InvalidFilter(f"filter {namespace!r}: allow and deny are both empty")
                if "allow" in condition and not allow:
                    raise InvalidFilter(
                        f"filter {namespace!r}: an empty allow list would match nothing; "
                        "leave it out to exclude by deny alone"
                    )
                tokens.append(TokenRestrict(namespace, allow=allow, deny=deny))
            elif keys and keys <= set(_OPS):
                for symbol, value in condition.items():
                    if isinstance(value, bool) or not isinstance(value, int | float):
                        raise InvalidFilter(
                            f"filter {namespace!r}: {symbol} needs a number, not {value!r}"
                        )
                    numbers.append(
                        NumericRestrict(namespace, _OPS[symbol], _number(namespace, value))
                    )
            else:
                raise InvalidFilter(
                    f"filter {namespace!r}: a dict condition takes either 'allow'/'deny' or "
                    f"comparison operators {sorted(_OPS)}, not {sorted(map(str, keys))}"
                )
        else:
            raise InvalidFilter(
                f"filter {namespace!r}: {condition!r} is not a string, list, bool, number or dict"
            )
    return Restricts(tuple(tokens), tuple(numbers))


def _token(namespace: str, value: str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str) or len(value) > MAX_TOKEN_LENGTH:
        raise InvalidFilter(
            f"filter {namespace!r}: tokens are strings of at most {MAX_TOKEN_LENGTH} characters"
        )
    return value


def _token_list(namespace: str, values: Any, *, empty_ok: bool = False) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, list | tuple):
        raise InvalidFilter(f"filter {namespace!r}: expected a list of strings, not {values!r}")
    if not values and not empty_ok:
        raise InvalidFilter(f"filter {namespace!r}: an empty list would match nothing")
    return tuple(_token(namespace, v) for v in values)


def _number(namespace: str, value: float) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise InvalidFilter(f"filter {namespace!r}: {value!r} is not a finite number")
    return number


def datapoint_restricts(metadata: Mapping[str, Any]) -> Restricts:
    """The filterable part of one datapoint's metadata (see the module docstring)."""
    tokens: list[TokenRestrict] = []
    numbers: list[NumericRestrict] = []
    for key, value in metadata.items():
        if isinstance(value, bool):
            tokens.append(TokenRestrict(key, allow=("true" if value else "false",)))
        elif isinstance(value, str):
            if len(value) <= MAX_TOKEN_LENGTH:
                tokens.append(TokenRestrict(key, allow=(value,)))
        elif isinstance(value, int | float):
            if math.isfinite(value):
                numbers.append(NumericRestrict(key, "EQUAL", float(value)))
        elif (
            isinstance(value, list)
            and value
            and all(isinstance(v, str) and len(v) <= MAX_TOKEN_LENGTH for v in value)
        ):
            tokens.append(TokenRestrict(key, allow=tuple(dict.fromkeys(value))))
    return Restricts(tuple(tokens), tuple(numbers))
