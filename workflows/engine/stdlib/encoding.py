"""The json, base64 and hash modules."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from ..errors import TYPE_ERROR, VALUE_ERROR, raised
from ..values import encode_json, type_name
from .registry import expect, function


@function("json.decode", "data")
def _json_decode(data: Any) -> Any:
    expect("json.decode", "data", data, "bytes", "string")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise raised(VALUE_ERROR, f"json.decode: invalid JSON: {exc}") from None


def _encode(fn: str, data: Any, indent: Any) -> str:
    """JSON text; `indent` is a bool or a map {prefix, indent} (json.encode's page)."""
    prefix, unit = "", None
    if indent is True or isinstance(indent, dict):
        options = indent if isinstance(indent, dict) else {}
        unknown = set(options) - {"prefix", "indent"}
        if unknown:
            raise raised(TYPE_ERROR, f"{fn}: unknown indent option(s) {sorted(unknown)}")
        prefix, unit = options.get("prefix", ""), options.get("indent", "    ")
        if not (isinstance(prefix, str) and isinstance(unit, str)):
            raise raised(TYPE_ERROR, f"{fn}: 'prefix' and 'indent' must be strings")
    elif indent is not None and indent is not False:
        raise raised(TYPE_ERROR, f"{fn}: 'indent' must be a bool or a map, not {type_name(indent)}")
    if _holds_bytes(data):
        raise raised(VALUE_ERROR, f"{fn}: bytes cannot be JSON-encoded; use base64.encode")
    if unit is None:
        return encode_json(data)
    # Each element begins on a new line: the prefix, then one indent per level of nesting.
    return encode_json(data, indent=unit).replace("\n", "\n" + prefix)


def _holds_bytes(value: Any) -> bool:
    if isinstance(value, bytes):
        return True
    if isinstance(value, list):
        return any(_holds_bytes(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_bytes(v) for v in value.values())
    return False


@function("json.encode", "data", "indent", indent=None)
def _json_encode(data: Any, indent: Any) -> bytes:
    return _encode("json.encode", data, indent).encode()


@function("json.encode_to_string", "data", "indent", indent=None)
def _json_encode_to_string(data: Any, indent: Any) -> str:
    return _encode("json.encode_to_string", data, indent)


@function("base64.encode", "data", "padding", padding=True)
def _b64encode(data: Any, padding: Any) -> str:
    expect("base64.encode", "data", data, "bytes")
    expect("base64.encode", "padding", padding, "bool")
    text = base64.b64encode(data).decode()
    return text if padding else text.rstrip("=")


@function("base64.decode", "data", "padding", padding=True)
def _b64decode(data: Any, padding: Any) -> bytes:
    expect("base64.decode", "data", data, "string")
    expect("base64.decode", "padding", padding, "bool")
    data = data.replace("\r", "").replace("\n", "")  # ignored, as the page says
    text = data if padding else data + "=" * (-len(data) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise raised(VALUE_ERROR, f"base64.decode: {exc}") from None


# The names the hash pages list, exactly.
_HASHES = {name: name.lower() for name in ("MD5", "SHA1", "SHA224", "SHA256", "SHA384", "SHA512")}


def _algorithm(fn: str, algorithm: Any) -> str:
    expect(fn, "algorithm", algorithm, "string")
    if algorithm not in _HASHES:
        raise raised(VALUE_ERROR, f"{fn}: unsupported algorithm {algorithm!r}")
    return _HASHES[algorithm]


@function("hash.compute_checksum", "data", "algorithm")
def _checksum(data: Any, algorithm: Any) -> bytes:
    expect("hash.compute_checksum", "data", data, "bytes")
    return hashlib.new(_algorithm("hash.compute_checksum", algorithm), data).digest()


@function("hash.compute_hmac", "key", "data", "algorithm")
def _hmac(key: Any, data: Any, algorithm: Any) -> bytes:
    expect("hash.compute_hmac", "key", key, "bytes")
    expect("hash.compute_hmac", "data", data, "bytes")
    return hmac.new(key, data, _algorithm("hash.compute_hmac", algorithm)).digest()
