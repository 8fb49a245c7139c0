"""The Workflows standard library functions that run inside expressions (and as `call:` targets).

Each function is registered with its documented parameter names, so `${text.split(s, ",")}` and
`call: text.split` with `args: {source: ..., separator: ...}` both work. Blocking functions
(`http.*`, `sys.sleep`, `sys.log`) live in the runtime; they may only be used in `call` steps.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import math
import re
import urllib.parse
import uuid
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import (
    CONNECTION_ERROR,
    CONNECTION_FAILED_ERROR,
    HTTP_ERROR,
    TIMEOUT_ERROR,
    TYPE_ERROR,
    VALUE_ERROR,
    raised,
)
from .values import check_int, encode_json, format_double, is_number, type_name

if TYPE_CHECKING:
    from .runtime import Context

REQUIRED = object()


@dataclass(frozen=True)
class Function:
    """A standard library function: documented parameters and an implementation."""

    name: str
    params: tuple[tuple[str, Any], ...]
    impl: Callable[..., Any]
    needs_context: bool = False

    def bind_named(self, args: dict[str, Any]) -> list[Any]:
        """Order `call:` step arguments by the documented parameter names."""
        unknown = set(args) - {p for p, _ in self.params}
        if unknown:
            raise raised(TYPE_ERROR, f"{self.name}: unexpected argument(s) {sorted(unknown)}")
        out = []
        for param, default in self.params:
            if param in args:
                out.append(args[param])
            elif default is REQUIRED:
                raise raised(TYPE_ERROR, f"{self.name}: missing required argument '{param}'")
            else:
                out.append(default)
        return out

    def __call__(self, ctx: Context, args: list[Any]) -> Any:
        required = sum(1 for _, d in self.params if d is REQUIRED)
        if not required <= len(args) <= len(self.params):
            raise raised(
                TYPE_ERROR,
                f"{self.name}() takes {required}..{len(self.params)} arguments, got {len(args)}",
            )
        full = args + [d for _, d in self.params[len(args) :]]
        return self.impl(ctx, *full) if self.needs_context else self.impl(*full)


FUNCTIONS: dict[str, Function] = {}


def function(
    name: str, *params: str, needs_context: bool = False, **defaults: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `impl` under `name`; parameters without a default are required."""

    def register(impl: Callable[..., Any]) -> Callable[..., Any]:
        spec = tuple((p, defaults.get(p, REQUIRED)) for p in params)
        FUNCTIONS[name] = Function(name, spec, impl, needs_context)
        return impl

    return register


def _expect(fn: str, param: str, value: Any, *types: str) -> None:
    if type_name(value) not in types:
        raise raised(
            TYPE_ERROR, f"{fn}: '{param}' must be {' or '.join(types)}, not {type_name(value)}"
        )


# --- Expression helpers ----------------------------------------------------------------------


@function("default", "value", "default_value")
def _default(value: Any, default_value: Any) -> Any:
    return default_value if value is None else value


@function("keys", "map")
def _keys(value: Any) -> list[str]:
    _expect("keys", "map", value, "map")
    return list(value)


@function("len", "value")
def _len(value: Any) -> int:
    _expect("len", "value", value, "string", "list", "map", "bytes")
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


# --- list, map -------------------------------------------------------------------------------


@function("list.concat", "objs", "val")
def _list_concat(objs: Any, val: Any) -> list[Any]:
    _expect("list.concat", "objs", objs, "list")
    return [*objs, val]


@function("list.prepend", "objs", "val")
def _list_prepend(objs: Any, val: Any) -> list[Any]:
    _expect("list.prepend", "objs", objs, "list")
    return [val, *objs]


@function("map.get", "map", "keys")
def _map_get(mapping: Any, keys: Any) -> Any:
    _expect("map.get", "map", mapping, "map", "null")
    path = [keys] if isinstance(keys, str) else keys
    if not isinstance(path, list) or not all(isinstance(k, str) for k in path):
        raise raised(TYPE_ERROR, "map.get: 'keys' must be a string or a list of strings")
    value = mapping
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


@function("map.merge", "first", "second")
def _map_merge(first: Any, second: Any) -> dict[str, Any]:
    _expect("map.merge", "first", first, "map")
    _expect("map.merge", "second", second, "map")
    return {**first, **second}


def _merge_nested(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    out = dict(first)
    for key, value in second.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_nested(out[key], value)
        else:
            out[key] = value
    return out


@function("map.merge_nested", "first", "second")
def _map_merge_nested(first: Any, second: Any) -> dict[str, Any]:
    _expect("map.merge_nested", "first", first, "map")
    _expect("map.merge_nested", "second", second, "map")
    return _merge_nested(first, second)


@function("map.delete", "map", "key")
def _map_delete(mapping: Any, key: Any) -> dict[str, Any]:
    _expect("map.delete", "map", mapping, "map")
    _expect("map.delete", "key", key, "string")
    return {k: v for k, v in mapping.items() if k != key}


# --- json ------------------------------------------------------------------------------------


@function("json.decode", "data")
def _json_decode(data: Any) -> Any:
    _expect("json.decode", "data", data, "bytes", "string")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise raised(VALUE_ERROR, f"json.decode: invalid JSON: {exc}") from None


def _indent(fn: str, indent: Any) -> int | None:
    if indent is None or indent is False:
        return None
    if indent is True:
        return 2
    if type(indent) is int and indent >= 0:
        return indent
    raise raised(TYPE_ERROR, f"{fn}: 'indent' must be bool or a non-negative int")


@function("json.encode", "data", "indent", indent=None)
def _json_encode(data: Any, indent: Any) -> bytes:
    return encode_json(data, _indent("json.encode", indent)).encode()


@function("json.encode_to_string", "data", "indent", indent=None)
def _json_encode_to_string(data: Any, indent: Any) -> str:
    return encode_json(data, _indent("json.encode_to_string", indent))


# --- text ------------------------------------------------------------------------------------


def _regex(fn: str, pattern: Any) -> re.Pattern[str]:
    _expect(fn, "regex", pattern, "string")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise raised(VALUE_ERROR, f"{fn}: invalid regular expression: {exc}") from None


@function("text.split", "source", "separator")
def _split(source: Any, separator: Any) -> list[str]:
    _expect("text.split", "source", source, "string")
    _expect("text.split", "separator", separator, "string")
    if separator == "":
        return list(source)
    return list(source.split(separator))


@function("text.replace_all", "source", "substr", "repl")
def _replace_all(source: Any, substr: Any, repl: Any) -> str:
    for param, value in (("source", source), ("substr", substr), ("repl", repl)):
        _expect("text.replace_all", param, value, "string")
    return str(source.replace(substr, repl))


@function("text.replace_all_regex", "source", "regex", "repl")
def _replace_all_regex(source: Any, regex: Any, repl: Any) -> str:
    _expect("text.replace_all_regex", "source", source, "string")
    _expect("text.replace_all_regex", "repl", repl, "string")
    return _regex("text.replace_all_regex", regex).sub(repl, source)


@function("text.to_lower", "source")
def _to_lower(source: Any) -> str:
    _expect("text.to_lower", "source", source, "string")
    return str(source.lower())


@function("text.to_upper", "source")
def _to_upper(source: Any) -> str:
    _expect("text.to_upper", "source", source, "string")
    return str(source.upper())


@function("text.substring", "source", "start", "end")
def _substring(source: Any, start: Any, end: Any) -> str:
    _expect("text.substring", "source", source, "string")
    _expect("text.substring", "start", start, "int")
    _expect("text.substring", "end", end, "int")
    start, end = max(0, min(start, len(source))), max(0, min(end, len(source)))
    return str(source[start:end]) if start < end else ""


@function("text.find_all", "source", "substr")
def _find_all(source: Any, substr: Any) -> list[dict[str, Any]]:
    _expect("text.find_all", "source", source, "string")
    _expect("text.find_all", "substr", substr, "string")
    if substr == "":
        raise raised(VALUE_ERROR, "text.find_all: 'substr' must not be empty")
    out, i = [], source.find(substr)
    while i >= 0:
        out.append({"index": i, "match": substr})
        i = source.find(substr, i + len(substr))
    return out


@function("text.find_all_regex", "source", "regex")
def _find_all_regex(source: Any, regex: Any) -> list[dict[str, Any]]:
    _expect("text.find_all_regex", "source", source, "string")
    pattern = _regex("text.find_all_regex", regex)
    return [{"index": m.start(), "match": m.group(0)} for m in pattern.finditer(source)]


@function("text.match_regex", "source", "regex")
def _match_regex(source: Any, regex: Any) -> bool:
    _expect("text.match_regex", "source", source, "string")
    return _regex("text.match_regex", regex).search(source) is not None


@function("text.url_encode", "source")
def _url_encode(source: Any) -> str:
    _expect("text.url_encode", "source", source, "string")
    return urllib.parse.quote(source, safe="-_.~")


@function("text.url_encode_plus", "source")
def _url_encode_plus(source: Any) -> str:
    _expect("text.url_encode_plus", "source", source, "string")
    return urllib.parse.quote_plus(source, safe="-_.~")


@function("text.url_decode", "source")
def _url_decode(source: Any) -> str:
    _expect("text.url_decode", "source", source, "string")
    return urllib.parse.unquote_plus(source, errors="strict")


@function("text.decode", "data", "charset", charset="UTF-8")
def _text_decode(data: Any, charset: Any) -> str:
    _expect("text.decode", "data", data, "bytes")
    try:
        return str(data.decode(charset))
    except (LookupError, UnicodeDecodeError) as exc:
        raise raised(VALUE_ERROR, f"text.decode: {exc}") from None


@function("text.encode", "text", "charset", charset="UTF-8")
def _text_encode(text: Any, charset: Any) -> bytes:
    _expect("text.encode", "text", text, "string")
    try:
        return bytes(text.encode(charset))
    except (LookupError, UnicodeEncodeError) as exc:
        raise raised(VALUE_ERROR, f"text.encode: {exc}") from None


# --- math ------------------------------------------------------------------------------------


def _number(fn: str, param: str, value: Any) -> None:
    _expect(fn, param, value, "int", "double")


@function("math.abs", "x")
def _abs(x: Any) -> Any:
    _number("math.abs", "x", x)
    return abs(x)


@function("math.floor", "x")
def _floor(x: Any) -> int:
    _number("math.floor", "x", x)
    return check_int(math.floor(x))


@function("math.max", "x", "y")
def _max(x: Any, y: Any) -> Any:
    _number("math.max", "x", x)
    _number("math.max", "y", y)
    return x if x >= y else y


@function("math.min", "x", "y")
def _min(x: Any, y: Any) -> Any:
    _number("math.min", "x", x)
    _number("math.min", "y", y)
    return x if x <= y else y


@function("math.sqrt", "x")
def _sqrt(x: Any) -> float:
    _number("math.sqrt", "x", x)
    if x < 0:
        raise raised(VALUE_ERROR, "math.sqrt: math domain error")
    return math.sqrt(x)


# --- time, sys, uuid, base64, hash -----------------------------------------------------------


@function("time.format", "seconds", "timezone", timezone=None)
def _time_format(seconds: Any, timezone: Any) -> str:
    _number("time.format", "seconds", seconds)
    _expect("time.format", "timezone", timezone, "string", "null")
    try:
        tz: dt.tzinfo = zoneinfo.ZoneInfo(timezone) if timezone else dt.UTC
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise raised(VALUE_ERROR, f"time.format: unknown timezone {timezone!r}") from None
    moment = dt.datetime.fromtimestamp(seconds, tz)
    text = moment.isoformat(timespec="microseconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


@function("time.parse", "value")
def _time_parse(value: Any) -> float:
    _expect("time.parse", "value", value, "string")
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise raised(VALUE_ERROR, f"time.parse: not an RFC 3339 timestamp: {value!r}") from None
    if moment.tzinfo is None:
        raise raised(VALUE_ERROR, f"time.parse: timestamp has no time zone: {value!r}")
    return moment.timestamp()


@function("sys.now", needs_context=True)
def _now(ctx: Context) -> float:
    return ctx.clock.now()


@function("sys.get_env", "name", "default", needs_context=True, default=None)
def _get_env(ctx: Context, name: Any, default: Any) -> Any:
    _expect("sys.get_env", "name", name, "string")
    _expect("sys.get_env", "default", default, "string", "null")
    return ctx.env.get(name, default)


@function("uuid.generate")
def _uuid() -> str:
    return str(uuid.uuid4())


@function("base64.encode", "data", "padding", padding=True)
def _b64encode(data: Any, padding: Any) -> str:
    _expect("base64.encode", "data", data, "bytes")
    text = base64.b64encode(data).decode()
    return text if padding else text.rstrip("=")


@function("base64.decode", "data", "padding", padding=True)
def _b64decode(data: Any, padding: Any) -> bytes:
    _expect("base64.decode", "data", data, "string")
    text = data if padding else data + "=" * (-len(data) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise raised(VALUE_ERROR, f"base64.decode: {exc}") from None


_HASHES = {"MD5": "md5", "SHA1": "sha1", "SHA256": "sha256", "SHA384": "sha384", "SHA512": "sha512"}


def _algorithm(fn: str, algorithm: Any) -> str:
    _expect(fn, "algorithm", algorithm, "string")
    if algorithm.upper() not in _HASHES:
        raise raised(VALUE_ERROR, f"{fn}: unsupported algorithm {algorithm!r}")
    return _HASHES[algorithm.upper()]


@function("hash.compute_checksum", "data", "algorithm")
def _checksum(data: Any, algorithm: Any) -> bytes:
    _expect("hash.compute_checksum", "data", data, "bytes")
    return hashlib.new(_algorithm("hash.compute_checksum", algorithm), data).digest()


@function("hash.compute_hmac", "key", "data", "algorithm")
def _hmac(key: Any, data: Any, algorithm: Any) -> bytes:
    _expect("hash.compute_hmac", "key", key, "bytes")
    _expect("hash.compute_hmac", "data", data, "bytes")
    return hmac.new(key, data, _algorithm("hash.compute_hmac", algorithm)).digest()


# --- retry predicates ------------------------------------------------------------------------


def _tags(error: Any) -> list[Any]:
    tags = error.get("tags") if isinstance(error, dict) else None
    return tags if isinstance(tags, list) else []


@function("http.default_retry_predicate", "exception")
def default_retry_predicate(error: Any) -> bool:
    """429, 502, 503, 504, ConnectionError, ConnectionFailedError and TimeoutError are retried."""
    tags = _tags(error)
    if HTTP_ERROR in tags and error.get("code") in (429, 502, 503, 504):
        return True
    return any(t in tags for t in (CONNECTION_ERROR, CONNECTION_FAILED_ERROR, TIMEOUT_ERROR))


@function("http.default_retry_predicate_non_idempotent", "exception")
def default_retry_predicate_non_idempotent(error: Any) -> bool:
    """Only 429, 503 and ConnectionFailedError: a request that may have run is not repeated."""
    tags = _tags(error)
    if HTTP_ERROR in tags and error.get("code") in (429, 503):
        return True
    return CONNECTION_FAILED_ERROR in tags


@function("retry.always", "exception")
def _always(error: Any) -> bool:
    return True


@function("retry.never", "exception")
def _never(error: Any) -> bool:
    return False


# Functions that block (or talk to the world); Workflows forbids them inside expressions.
BLOCKING = {
    "http.get",
    "http.post",
    "http.put",
    "http.patch",
    "http.delete",
    "http.request",
    "sys.sleep",
    "sys.sleep_until",
    "sys.log",
}
UNSUPPORTED_PREFIXES = ("events.", "googleapis.", "experimental.")
