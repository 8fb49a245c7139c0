"""The text module (https://cloud.google.com/workflows/docs/reference/stdlib/text/overview).

Regular expressions use RE2, as Workflows does, through Google's own bindings: RE2's syntax (no
backreferences, no lookaround) and, where the pages say so, leftmost-longest matching.
"""

from __future__ import annotations

import functools
import re
import urllib.parse
from typing import Any

from ..errors import VALUE_ERROR, raised
from .registry import expect, function

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


@functools.lru_cache(maxsize=256)
def _compile(pattern: str, longest: bool) -> Any:
    re2 = _re2()
    options = re2.Options()
    options.longest_match = longest
    options.log_errors = False
    return re2.compile(pattern, options)


def _re2() -> Any:
    # Imported when first needed: google-re2 is a development dependency (the engine runs only
    # locally), so the rest of the engine works without it.
    try:
        import re2  # type: ignore[import-untyped]
    except ImportError:
        raise RuntimeError(
            "the local Workflows engine needs google-re2 for regular expressions: "
            "pip install -e '.[dev]'"
        ) from None
    return re2


def _regexp(fn: str, source: Any, pattern: Any, *, longest: bool) -> Any:
    expect(fn, "source", source, "string")
    expect(fn, "regexp", pattern, "string")
    try:
        return _compile(pattern, longest)
    except _re2().error as exc:
        message = exc.args[0].decode() if isinstance(exc.args[0], bytes) else str(exc)
        raise raised(VALUE_ERROR, f"{fn}: invalid regular expression: {message}") from None


@function("text.split", "source", "separator")
def _split(source: Any, separator: Any) -> list[str]:
    expect("text.split", "source", source, "string")
    expect("text.split", "separator", separator, "string")
    if separator == "":
        # A string, but not a usable one: a ValueError, as the error types page defines it.
        raise raised(VALUE_ERROR, "text.split: 'separator' must not be empty")
    return list(source.split(separator))


@function("text.replace_all", "source", "substr", "repl")
def _replace_all(source: Any, substr: Any, repl: Any) -> str:
    for param, value in (("source", source), ("substr", substr), ("repl", repl)):
        expect("text.replace_all", param, value, "string")
    return str(source.replace(substr, repl))


@function("text.replace_all_regex", "source", "regexp", "repl")
def _replace_all_regex(source: Any, regexp: Any, repl: Any) -> str:
    pattern = _regexp("text.replace_all_regex", source, regexp, longest=True)
    expect("text.replace_all_regex", "repl", repl, "string")
    # `repl` is literal: Workflows supports no backreferences such as \1.
    return str(pattern.sub(lambda match: repl, source))


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
    # A negative index counts from the end; indexes outside the string are clamped to it.
    length = len(source)
    start, end = (max(0, min(i + length if i < 0 else i, length)) for i in (start, end))
    return str(source[start:end]) if start < end else ""


@function("text.find_all", "source", "substr")
def _find_all(source: Any, substr: Any) -> list[int]:
    expect("text.find_all", "source", source, "string")
    expect("text.find_all", "substr", substr, "string")
    out, i = [], source.find(substr)
    while i >= 0:  # non-overlapping, leftmost first
        out.append(i)
        i = source.find(substr, i + max(len(substr), 1))
    return out


@function("text.find_all_regex", "source", "regexp")
def _find_all_regex(source: Any, regexp: Any) -> list[dict[str, Any]]:
    pattern = _regexp("text.find_all_regex", source, regexp, longest=True)
    return [{"index": m.start(), "match": m.group(0)} for m in pattern.finditer(source)]


@function("text.match_regex", "source", "regexp")
def _match_regex(source: Any, regexp: Any) -> bool:
    return _regexp("text.match_regex", source, regexp, longest=False).search(source) is not None


@function("text.url_encode", "source")
def _url_encode(source: Any) -> str:
    expect("text.url_encode", "source", source, "string")
    # Letters, digits and .-_ stay; everything else is escaped, ~ included (which Python's
    # quote always keeps).
    return urllib.parse.quote(source, safe="-_.").replace("~", "%7E")


@function("text.url_encode_plus", "source")
def _url_encode_plus(source: Any) -> str:
    expect("text.url_encode_plus", "source", source, "string")
    return urllib.parse.quote_plus(source, safe="-_.").replace("~", "%7E")


@function("text.url_decode", "source")
def _url_decode(source: Any) -> str:
    expect("text.url_decode", "source", source, "string")
    if _BAD_ESCAPE.search(source):
        raise raised(VALUE_ERROR, "text.url_decode: '%' not followed by two hexadecimal digits")
    return urllib.parse.unquote_plus(source, errors="replace")


@function("text.decode", "data", "charset", charset="UTF-8")
def _text_decode(data: Any, charset: Any) -> str:
    expect("text.decode", "data", data, "bytes")
    expect("text.decode", "charset", charset, "string")
    try:
        # Bytes that do not decode become U+FFFD, as the page says.
        return str(data.decode(charset, errors="replace"))
    except LookupError:
        raise raised(VALUE_ERROR, f"text.decode: unsupported charset {charset!r}") from None


@function("text.encode", "text", "charset", charset="UTF-8")
def _text_encode(text: Any, charset: Any) -> bytes:
    expect("text.encode", "text", text, "string")
    expect("text.encode", "charset", charset, "string")
    try:
        return bytes(text.encode(charset))
    except (LookupError, UnicodeEncodeError) as exc:
        raise raised(VALUE_ERROR, f"text.encode: {exc}") from None
