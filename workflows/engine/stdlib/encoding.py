"""The json, base64 and hash modules."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from ..errors import TYPE_ERROR, VALUE_ERROR, raised
from ..values import encode_json
from .registry import expect, function


@function("json.decode", "data")
def _json_decode(data: Any) -> Any:
    expect("json.decode", "data", data, "bytes", "string")
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


@function("base64.encode", "data", "padding", padding=True)
def _b64encode(data: Any, padding: Any) -> str:
    expect("base64.encode", "data", data, "bytes")
    text = base64.b64encode(data).decode()
    return text if padding else text.rstrip("=")


@function("base64.decode", "data", "padding", padding=True)
def _b64decode(data: Any, padding: Any) -> bytes:
    expect("base64.decode", "data", data, "string")
    text = data if padding else data + "=" * (-len(data) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise raised(VALUE_ERROR, f"base64.decode: {exc}") from None


_HASHES = {"MD5": "md5", "SHA1": "sha1", "SHA256": "sha256", "SHA384": "sha384", "SHA512": "sha512"}


def _algorithm(fn: str, algorithm: Any) -> str:
    expect(fn, "algorithm", algorithm, "string")
    if algorithm.upper() not in _HASHES:
        raise raised(VALUE_ERROR, f"{fn}: unsupported algorithm {algorithm!r}")
    return _HASHES[algorithm.upper()]


@function("hash.compute_checksum", "data", "algorithm")
def _checksum(data: Any, algorithm: Any) -> bytes:
    expect("hash.compute_checksum", "data", data, "bytes")
    return hashlib.new(_algorithm("hash.compute_checksum", algorithm), data).digest()


@function("hash.compute_hmac", "key", "data", "algorithm")
def _hmac(key: Any, data: Any, algorithm: Any) -> bytes:
    expect("hash.compute_hmac", "key", key, "bytes")
    expect("hash.compute_hmac", "data", data, "bytes")
    return hmac.new(key, data, _algorithm("hash.compute_hmac", algorithm)).digest()
