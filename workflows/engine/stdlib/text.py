"""The text module."""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from ..errors import VALUE_ERROR, raised
from .registry import expect, function


def _regex(fn: str, pattern: Any) -> re.Pattern[str]:
    expect(fn, "regex", pattern, "string")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise raised(VALUE_ERROR, f"{fn}: invalid regular expression: {exc}") from None


@function("text.split", "source", "separator")
def _split(source: Any, separator: Any) -> list[str]:
    expect("text.split", "source", source, "string")
    expect("text.split", "separator", separator, "string")
    if separator == "":
        return list(source)
    return list(source.split(separator))


@function("text.replace_all", "source", "substr", "repl")
def _replace_all(source: Any, substr: Any, repl: Any) -> str:
    for param, value in (("source", source), ("substr", substr), ("repl", repl)):
        expect("text.replace_all", param, value, "string")
    return str(source.replace(substr, repl))


@function("text.replace_all_regex", "source", "regex", "repl")
def _replace_all_regex(source: Any, regex: Any, repl: Any) -> str:
    expect("text.replace_all_regex", "source", source, "string")
    expect("text.replace_all_regex", "repl", repl, "string")
    return _regex("text.replace_all_regex", regex).sub(repl, source)


@function("text.to_lower", "source")
def _to_lower(source: Any) -> str:
    expect("text.to_lower", "source", source, "string")
    return str(source.lower())


@function("text.to_upper", "source")
def _to_upper(source: Any) -> str:
    expect("text.to_upper", "source", source, "string")
    return str(source.upper())


@function("text.substring", "source", "start", "end")
def _substring(source: Any, start: Any, end: Any) -> str:
    expect("text.substring", "source", source, "string")
    expect("text.substring", "start", start, "int")
    expect("text.substring", "end", end, "int")
    start, end = max(0, min(start, len(source))), max(0, min(end, len(source)))
    return str(source[start:end]) if start < end else ""


@function("text.find_all", "source", "substr")
def _find_all(source: Any, substr: Any) -> list[dict[str, Any]]:
    expect("text.find_all", "source", source, "string")
    expect("text.find_all", "substr", substr, "string")
    if substr == "":
        raise raised(VALUE_ERROR, "text.find_all: 'substr' must not be empty")
    out, i = [], source.find(substr)
    while i >= 0:
        out.append({"index": i, "match": substr})
        i = source.find(substr, i + len(substr))
    return out


@function("text.find_all_regex", "source", "regex")
def _find_all_regex(source: Any, regex: Any) -> list[dict[str, Any]]:
    expect("text.find_all_regex", "source", source, "string")
    pattern = _regex("text.find_all_regex", regex)
    return [{"index": m.start(), "match": m.group(0)} for m in pattern.finditer(source)]


@function("text.match_regex", "source", "regex")
def _match_regex(source: Any, regex: Any) -> bool:
    expect("text.match_regex", "source", source, "string")
    return _regex("text.match_regex", regex).search(source) is not None


@function("text.url_encode", "source")
def _url_encode(source: Any) -> str:
    expect("text.url_encode", "source", source, "string")
    return urllib.parse.quote(source, safe="-_.~")


@function("text.url_encode_plus", "source")
def _url_encode_plus(source: Any) -> str:
    expect("text.url_encode_plus", "source", source, "string")
    return urllib.parse.quote_plus(source, safe="-_.~")


@function("text.url_decode", "source")
def _url_decode(source: Any) -> str:
    expect("text.url_decode", "source", source, "string")
    return urllib.parse.unquote_plus(source, errors="strict")


@function("text.decode", "data", "charset", charset="UTF-8")
def _text_decode(data: Any, charset: Any) -> str:
    expect("text.decode", "data", data, "bytes")
    try:
        return str(data.decode(charset))
    except (LookupError, UnicodeDecodeError) as exc:
        raise raised(VALUE_ERROR, f"text.decode: {exc}") from None


@function("text.encode", "text", "charset", charset="UTF-8")
def _text_encode(text: Any, charset: Any) -> bytes:
    expect("text.encode", "text", text, "string")
    try:
        return bytes(text.encode(charset))
    except (LookupError, UnicodeEncodeError) as exc:
        raise raised(VALUE_ERROR, f"text.encode: {exc}") from None
