"""`http.*` calls: request encoding, response decoding and Workflows' error tags.

One pooled httpx client serves every execution, so repeated calls to the same function reuse their
connection. `auth: {type: OIDC|OAuth2}` is accepted and not acted on: on Google Cloud the platform
mints the token and the callee checks it; locally nothing is sent.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from typing import Any

import httpx

from .errors import (
    CONNECTION_ERROR,
    CONNECTION_FAILED_ERROR,
    HTTP_ERROR,
    TIMEOUT_ERROR,
    TYPE_ERROR,
    VALUE_ERROR,
    limit_exceeded,
    raised,
)
from .limits import MAX_RESPONSE_BYTES
from .values import check_strings, encode_json, format_double, is_number, type_name

DEFAULT_TIMEOUT_SECONDS = 300.0
MAX_TIMEOUT_SECONDS = 1800.0
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# Documented arguments of http.request; the method-named shortcuts take the same minus `method`.
REQUEST_PARAMS: tuple[str, ...] = ("method", "url", "headers", "body", "query", "auth", "timeout")
REQUEST_PARAMS += ("private_service_name",)
AUTH_TYPES = ("OIDC", "OAuth2")

_client: httpx.Client | None = None
_client_lock = threading.Lock()


def client() -> httpx.Client:
    """The shared connection pool (created on first use, never at import)."""
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(
                trust_env=False,  # never route a workflow's calls through the host's proxy settings
                follow_redirects=True,
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            )
        return _client


def _header_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_double(value)
    if isinstance(value, int):
        return str(value)
    raise raised(TYPE_ERROR, f"header values must be strings or numbers, not {type_name(value)}")


def _query_pairs(query: Any) -> list[tuple[str, str]]:
    if not isinstance(query, dict):
        raise raised(TYPE_ERROR, f"'query' must be a map, not {type_name(query)}")
    pairs = []
    for key, value in query.items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append((key, _header_value(item)))
    return pairs


def _encode_body(body: Any, headers: dict[str, str]) -> bytes:
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
    if isinstance(body, bytes):
        return body
    if content_type is None:
        headers["Content-Type"] = "application/json"
        return encode_json(body).encode()
    media = content_type.split(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return encode_json(body).encode()
    if media == "application/x-www-form-urlencoded" and isinstance(body, dict):
        return urllib.parse.urlencode(_query_pairs(body)).encode()
    if isinstance(body, str):
        return body.encode()
    raise raised(TYPE_ERROR, f"cannot encode a {type_name(body)} body as {content_type}")


def _decode_body(response: httpx.Response) -> Any:
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    content = response.content
    if media == "application/json" or media.endswith("+json"):
        if not content.strip():
            return None
        try:
            return json.loads(content)
        except ValueError:
            return response.text
    if media.startswith("text/"):
        return response.text
    return content if content else None


def _response_headers(response: httpx.Response) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_key, raw_value in response.headers.raw:
        key, value = raw_key.decode("latin-1"), raw_value.decode("latin-1")
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def request(method: str, args: dict[str, Any]) -> dict[str, Any]:
    """Make one HTTP call and return `{body, code, headers}`, or raise a tagged Workflows error."""
    url = args.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise raised(VALUE_ERROR, f"'url' must be an http(s) URL, got {url!r}")
    method = method.upper()
    if method not in HTTP_METHODS:
        raise raised(VALUE_ERROR, f"unsupported HTTP method {method!r}")
    headers_arg = args.get("headers") or {}
    if not isinstance(headers_arg, dict):
        raise raised(TYPE_ERROR, f"'headers' must be a map, not {type_name(headers_arg)}")
    headers = {k: _header_value(v) for k, v in headers_arg.items()}
    auth = args.get("auth")
    if auth is not None and (not isinstance(auth, dict) or auth.get("type") not in AUTH_TYPES):
        raise raised(VALUE_ERROR, "'auth.type' must be OIDC or OAuth2")
    timeout = args.get("timeout", DEFAULT_TIMEOUT_SECONDS)
    if not is_number(timeout) or not 0 < timeout <= MAX_TIMEOUT_SECONDS:
        raise raised(VALUE_ERROR, f"'timeout' must be seconds in (0, 1800], got {timeout!r}")
    content = _encode_body(args["body"], headers) if args.get("body") is not None else None
    try:
        target = httpx.URL(url)
        if args.get("query") is not None:
            # `query` adds to the parameters already in the URL instead of replacing them.
            pairs: Any = _query_pairs(args["query"])
            target = target.copy_merge_params(
                httpx.QueryParams(target.params.multi_items() + pairs)
            )
        response = client().request(
            method, target, headers=headers, content=content, timeout=float(timeout)
        )
    except httpx.TimeoutException as exc:
        raise raised(TIMEOUT_ERROR, f"HTTP request to {url} timed out after {timeout} s") from exc
    except httpx.ConnectError as exc:
        raise raised(CONNECTION_FAILED_ERROR, f"failed to connect to {url}: {exc}") from exc
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise raised(VALUE_ERROR, f"invalid URL {url!r}: {exc}") from exc
    except httpx.TransportError as exc:
        raise raised(CONNECTION_ERROR, f"connection to {url} broke: {exc!r}") from exc
    if len(response.content) > MAX_RESPONSE_BYTES:
        raise limit_exceeded("HTTP response exceeds the 2 MB limit")
    result = {
        "body": check_strings(_decode_body(response)),
        "code": response.status_code,
        "headers": _response_headers(response),
    }
    if not 200 <= response.status_code < 300:
        raise raised(
            HTTP_ERROR, f"HTTP server responded with error code {response.status_code}", **result
        )
    return result
