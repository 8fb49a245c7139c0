"""The api function as deployed (functions-framework under gunicorn) answers everything in the
JSON error shape, and nothing a client sends makes it answer 5xx: issue 22's findings 1 and 4,
sent as bytes on the wire to the process itself.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from common.platform.secrets import redact
from tests.api.conftest import Api, ApiInstances, raw_exchange

pytestmark = pytest.mark.emulator


def nested_token(depth: int = 2500) -> str:
    """Finding 1: a "token" whose first segment decodes to JSON nested `depth` deep (6.7 KB
    for 2500, under gunicorn's 8190-byte header limit): google-auth's parser and ours recurse
    past the interpreter's limit on it."""
    header = base64.urlsafe_b64encode(b"[" * depth + b"]" * depth).rstrip(b"=").decode()
    return f"{header}.e30.c2ln"


def assert_error_shape(body: bytes, code: str | None = None) -> dict[str, Any]:
    error = json.loads(body)["error"]
    assert {"code", "message"} <= set(error) <= {"code", "message", "field"}, error
    if code is not None:
        assert error["code"] == code, error
    return dict(error)


def request_bytes(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: api.test", *headers, "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def test_a_deeply_nested_token_is_a_401_not_a_crash(
    api: Api, api_instances: ApiInstances, http_client: httpx.Client
) -> None:
    token = nested_token()
    assert 6000 < len(token) < 8000
    # In process, and through gunicorn on both instances.
    answers = [api.call("GET", "/v1/me", headers={"Authorization": f"Bearer {token}"})]
    for url in api_instances.urls:
        answers.append(
            http_client.get(f"{url}/v1/me", headers={"Authorization": f"Bearer {token}"})
        )
    for answer in answers:
        assert answer.status_code == 401
        assert answer.headers["Content-Type"].startswith("application/json")
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        body = answer.json() if isinstance(answer, httpx.Response) else answer.json
        assert body["error"]["code"] == "invalid_token"


@pytest.mark.parametrize(
    ("name", "request_line", "extra", "status", "code"),
    [
        # Flask's router refuses a path ending in a newline: our 404, not its HTML page.
        ("path ending in %0A", "GET /v1/me%0A", (), 404, "unknown_path"),
        ("run path ending in %0A", "GET /v1/runs/abc%0A", (), 404, "unknown_path"),
        ("robots.txt", "GET /robots.txt", (), 404, "unknown_path"),
        # gunicorn refuses these before any Python of ours runs.
        ("12 KB header", "GET /v1/me", ("X-Padding: " + "a" * 12_000,), 431, "headers_too_large"),
        ("lower-case method", "get /v1/me", (), 400, "bad_request"),
        ("unknown method", "G3T /v1/me", (), 405, "method_not_allowed"),
        ("no HTTP version", "GET /v1/me HTTP/9", (), 400, "bad_request"),
        ("header without a colon", "GET /v1/me", ("Authorization Bearer x",), 400, "bad_request"),
    ],
)
def test_what_the_framework_refuses_is_in_the_json_shape(
    api_instances: ApiInstances,
    name: str,
    request_line: str,
    extra: tuple[str, ...],
    status: int,
    code: str,
) -> None:
    method, path, *version = request_line.split(" ")
    raw = request_bytes(method, path, *extra)
    if version:  # the line as given, not as request_bytes would write it
        raw = raw.replace(b" HTTP/1.1", b" " + version[0].encode(), 1)
    for port in api_instances.ports:
        answered, headers, body = raw_exchange(port, raw)
        assert answered == status, (name, body[:300])
        assert headers["content-type"].startswith("application/json"), (name, body[:300])
        assert_error_shape(body, code)


def test_a_bearer_token_quoted_by_gunicorn_is_redacted(api_instances: ApiInstances) -> None:
    """What gunicorn says of a refused request may quote it; our answer never repeats a token."""
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
    raw = request_bytes("GET", "/v1/me", f"Authorization: Bearer {token}\x01")
    answered, _, body = raw_exchange(api_instances.ports[0], raw)
    assert answered == 400
    assert token not in body.decode("latin-1")
    assert_error_shape(body, "bad_request")


def test_the_sign_in_hint_survives_redaction(api: Api, project_id: str) -> None:
    """Finding 4: the hint "Bearer <ID token>" came out as "Bearer [REDACTED] token>"."""
    answer = api.call("GET", "/v1/me")
    assert answer.status_code == 401
    hint = answer.json["error"]["message"]
    assert "Authorization: Bearer" in hint and "ID token" in hint
    assert "REDACTED" not in hint and redact(hint) == hint
    # Redaction itself is as strong as before: a token after "Bearer " is still removed.
    assert redact("Authorization: Bearer abc.def.ghi") == "Authorization: Bearer [REDACTED]"


def test_an_unknown_method_is_405_with_allow_on_the_wire(
    api_instances: ApiInstances, http_client: httpx.Client
) -> None:
    url = api_instances.urls[0]
    answer = http_client.request("BREW", f"{url}/v1/me")
    assert answer.status_code == 405
    assert answer.headers["Allow"] == "GET, OPTIONS"
    assert_error_shape(answer.content, "method_not_allowed")


def test_a_bug_in_the_api_is_a_json_500_without_its_text(
    api: Api, project_id: str, token: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only our own bugs may answer 5xx, and in the same shape, never with their text."""

    def broken(uid: str) -> None:
        raise RuntimeError("a bug holding sk-proj-AAAAAAAAAAAAAAAAAAAAAAAA")

    monkeypatch.setattr("common.backend.app.members.businesses_of", broken)
    answer = api.call("GET", "/v1/me", "alice")
    assert answer.status_code == 500 and answer.headers["X-Google-Status"] == "crash"
    assert answer.json == {
        "error": {"code": "internal", "message": "internal error: see the function's log"}
    }
