"""Who may call: only a valid Firebase ID token of this project gets past the API's door.

The checks are Firebase's, for ID tokens verified without the Admin SDK:
https://firebase.google.com/docs/auth/admin/verify-id-tokens#verify_id_tokens_using_a_third-party_jwt_library
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from common.backend import auth
from common.backend.app import ROUTES
from common.platform.settings import get_settings
from common.tenants.businesses import Business
from tests.api.conftest import Api, Token, make_key

pytestmark = pytest.mark.emulator


def concrete(path: str) -> str:
    return path.replace("{business_id}", "some-business").replace("{run_id}", "some-run")


def unsigned(claims: dict[str, Any]) -> str:
    """A token as the Auth emulator issues them: `alg: none`, no signature."""

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def claims_for(uid: str) -> dict[str, Any]:
    project = get_settings().project_id
    now = int(time.time())
    return {
        "iss": f"https://securetoken.google.com/{project}",
        "aud": project,
        "sub": uid,
        "iat": now,
        "auth_time": now,
        "exp": now + 3600,
    }


def me(api: Api, authorization: str | None) -> Any:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return api.call("GET", "/v1/me", headers=headers)


@pytest.mark.parametrize(
    "route", [r for r in ROUTES if r.auth], ids=lambda r: f"{r.method} {r.path}"
)
def test_anonymous_callers_get_401_on_every_endpoint(api: Api, project_id: str, route: Any) -> None:
    response = api.call(route.method, concrete(route.path), json_body={})
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthenticated"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_valid_token_identifies_the_user(api: Api, project_id: str, token: Token) -> None:
    response = me(api, f"Bearer {token('alice')}")
    assert response.status_code == 200
    assert response.json == {"uid": "alice", "email": "alice@example.com", "businesses": []}


def test_the_user_sees_the_businesses_they_belong_to(
    api: Api, project_id: str, business: Callable[..., Business], people: dict[str, str]
) -> None:
    mine = business()
    business(members=[people["outsider"]], owners=[people["outsider"]])
    listed = api.call("GET", "/v1/me", people["member"]).json["businesses"]
    assert listed == [
        {"business_id": mine.business_id, "name": mine.name, "tier": "enterprise", "owner": False}
    ]


@pytest.mark.parametrize(
    ("case", "expected_code"),
    [
        ("expired", "token_expired"),
        ("forged signature", "invalid_token"),
        ("unknown key id", "invalid_token"),
        ("wrong audience", "invalid_token"),
        ("wrong issuer", "invalid_token"),
        ("no subject", "invalid_token"),
        ("signed in the future", "invalid_token"),
        ("unsigned (alg none)", "invalid_token"),
        ("tampered payload", "invalid_token"),
        ("not a JWT", "invalid_token"),
    ],
)
def test_bad_tokens_are_refused(
    api: Api, project_id: str, token: Token, case: str, expected_code: str
) -> None:
    now = int(time.time())
    bad: str = {
        "expired": lambda: token("alice", iat=now - 7200, auth_time=now - 7200, exp=now - 3600),
        # Same key id, another key: what a forger without Google's private key can make.
        "forged signature": lambda: token("alice", key=make_key("forger")),
        "unknown key id": lambda: token("alice", kid="no-such-key"),
        "wrong audience": lambda: token("alice", aud="another-project"),
        "wrong issuer": lambda: token("alice", iss="https://securetoken.google.com/another"),
        "no subject": lambda: token("alice", sub=""),
        "signed in the future": lambda: token("alice", auth_time=now + 3600),
        "unsigned (alg none)": lambda: unsigned(claims_for("alice")),
        "tampered payload": lambda: tampered(token("alice")),
        "not a JWT": lambda: "definitely-not-a-token",
    }[case]()  # type: ignore[no-untyped-call]
    response = me(api, f"Bearer {bad}")
    assert response.status_code == 401, response.json
    assert response.json["error"]["code"] == expected_code


def tampered(signed: str) -> str:
    """The same signature on a payload that claims to be someone else."""
    header, payload, signature = signed.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "mallory"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer ", "Basic YWxpY2U6c2VjcmV0", "alice"])
def test_a_missing_or_non_bearer_authorization_is_401(
    api: Api, project_id: str, header: str
) -> None:
    assert me(api, header).status_code == 401


def test_auth_emulator_tokens_are_accepted_only_in_emulator_mode(
    api: Api, project_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator_token = f"Bearer {unsigned(claims_for('alice'))}"
    assert me(api, emulator_token).status_code == 401  # no emulator configured

    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    get_settings.cache_clear()
    assert me(api, emulator_token).json["uid"] == "alice"
    expired = {**claims_for("alice"), "exp": int(time.time()) - 60}
    assert me(api, f"Bearer {unsigned(expired)}").status_code == 401
    other_project = {**claims_for("alice"), "aud": "another-project"}
    assert me(api, f"Bearer {unsigned(other_project)}").status_code == 401

    # Production never trusts an unsigned token, whatever the environment says.
    monkeypatch.setenv("APP_MODE", "production")
    get_settings.cache_clear()
    assert me(api, emulator_token).status_code == 401


def test_keys_fetched_before_still_verify_when_google_cannot_be_reached(api: Api) -> None:
    answers = iter([200, 503, 503])
    certs: dict[str, str] = {}

    class Flaky(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = next(answers, 503)
            self.send_response(code)
            self.send_header("Cache-Control", "public, max-age=0")  # stale at once
            self.end_headers()
            if code == 200:
                self.wfile.write(json.dumps(certs).encode())

        def log_message(self, *_args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/x509"
    try:
        # What the session's key server publishes, served once, then the server fails.
        certs.update(httpx.get(get_settings().firebase_certs_url).json())
        fetched = auth._Certs()
        assert fetched.get(url) == certs
        # Refetched (its max-age passed), the server answers 503: the keys from before serve.
        assert fetched.get(url) == certs
        # A process that never fetched them has nothing to verify with: the error stands.
        with pytest.raises(httpx.HTTPStatusError):
            auth._Certs().get(url)
    finally:
        server.shutdown()
