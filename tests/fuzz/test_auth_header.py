"""Garbage in the `Authorization` header of the API (issue 22): whatever a client puts there —
segments nested past the parser's recursion limit, huge, binary, unicode, claims of the wrong
type, with Google's real signature or without — the answer is a 401 in the JSON error shape
that never quotes the token back, and nothing is written. Also in the Auth emulator's mode,
whose unsigned tokens take another path.

Explicit cases for each kind, then hypothesis (fixed seed, bounded examples); a few go on the
wire to the function as deployed, where gunicorn parses the header first.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from google.cloud import firestore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.platform.settings import get_settings
from tests.api.conftest import Api, ApiInstances, Token, raw_exchange
from tests.fuzz.test_functions import dump

pytestmark = [pytest.mark.emulator, pytest.mark.usefixtures("signed_tokens_only")]

REFUSALS = {"unauthenticated", "invalid_token", "token_expired"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: Any) -> str:
    return b64(json.dumps(value).encode())


def nested(depth: int, opener: str = "[", closer: str = "]") -> str:
    return b64((opener * depth + closer * depth).encode())


def deep_object(depth: int) -> str:
    return b64(('{"a":' * depth + "1" + "}" * depth).encode())


RS256 = segment({"alg": "RS256", "kid": "test-key-1", "typ": "JWT"})
NONE = segment({"alg": "none", "typ": "JWT"})
CLAIMS = segment({"sub": "mallory", "aud": "x", "iss": "y", "exp": 9e9, "iat": 0})

EXPLICIT = {
    # Nested past the recursion limit, in each segment, as arrays and as objects.
    "nested header": f"{nested(2500)}.{CLAIMS}.c2ln",
    "nested payload": f"{RS256}.{nested(3000)}.c2ln",
    "nested object header": f"{deep_object(2000)}.{CLAIMS}.c2ln",
    "nested unsigned payload": f"{NONE}.{deep_object(2500)}.",
    "nested signature": f"{RS256}.{CLAIMS}.{nested(3000)}",
    # Huge.
    "60 KB": "a" * 60_000,
    "60 KB of dots": "." * 60_000,
    "8 KB JWT": f"{RS256}.{segment({'pad': 'x' * 6000})}.c2ln",
    # Binary: bytes in no encoding, NUL, control characters.
    "binary segments": ".".join([b64(bytes(range(256))), b64(b"\xff\xfe\x00"), b64(b"\x00" * 40)]),
    "binary text": "\x00\x01\x02\x7f.\x80\xff.\x1b[31m",
    # Unicode: in the token itself, and inside the decoded JSON.
    "unicode token": "ключ.τοκεν.签名",
    "emoji token": "🔑.🔑.🔑",
    "lone surrogate": "ab\ud800cd.e30.c2ln",
    "unicode claims": ".".join([RS256, segment({"sub": "ü" * 200, "iss": "\u202e"}), "c2ln"]),
    # Types google-auth does not expect.
    "kid is a list": f"{segment({'alg': 'RS256', 'kid': ['a', 'b']})}.{CLAIMS}.c2ln",
    "kid is an object": f"{segment({'alg': 'RS256', 'kid': {'a': 1}})}.{CLAIMS}.c2ln",
    "alg is a number": f"{segment({'alg': 256, 'kid': 'test-key-1'})}.{CLAIMS}.c2ln",
    "header is a list": f"{segment(['RS256'])}.{CLAIMS}.c2ln",
    "header is a string": f"{segment('RS256')}.{CLAIMS}.c2ln",
    "payload is null": f"{RS256}.{segment(None)}.c2ln",
    "NaN in JSON": ".".join([RS256, b64(b'{"exp": NaN, "iat": Infinity}'), "c2ln"]),
    "huge number": ".".join([RS256, b64(b'{"exp": 1' + b"0" * 5000 + b"}"), "c2ln"]),
    # Wrong shapes.
    "two segments": f"{RS256}.{CLAIMS}",
    "five segments": f"{RS256}.{CLAIMS}.a.b.c",
    "empty segments": "..",
    "padding inside": "ab==cd.ef==.gh",
}


def claims(**extra: Any) -> dict[str, Any]:
    project = get_settings().project_id
    now = int(time.time())
    return {
        "iss": f"https://securetoken.google.com/{project}",
        "aud": project,
        "sub": "alice",
        "iat": now - 10,
        "auth_time": now - 10,
        "exp": now + 3600,
    } | extra


# Signed with the key the API trusts: only Google could make these, but they must not crash it.
SIGNED_HOSTILE: dict[str, dict[str, Any]] = {
    "iat is a string": {"iat": "yesterday"},
    "exp is a string": {"exp": "tomorrow"},
    "exp is a list": {"exp": [1]},
    "iat is null": {"iat": None},
    "auth_time is a string": {"auth_time": "now"},
    "auth_time is true": {"auth_time": True},
    "sub is a number": {"sub": 42},
    "sub is an object": {"sub": {"uid": "alice"}},
    "sub is 10 KB": {"sub": "a" * 10_000},
    "aud is a list": {"aud": ["x", ["y"]]},
    "aud is an object": {"aud": {"a": 1}},
    "iss is a number": {"iss": 7},
}


def assert_refused(answer: Any, sent: str) -> None:
    assert answer.status_code == 401, (answer.status_code, answer.get_data()[:300])
    assert answer.mimetype == "application/json"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    body = answer.json
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) <= {"code", "message", "field"} and error["code"] in REFUSALS, error
    # The answer never quotes the token back (no 16-character piece of it).
    token = sent.partition(" ")[2]
    text = json.dumps(body, ensure_ascii=False)
    for start in range(0, max(len(token) - 16, 0), 8):
        piece = token[start : start + 16]
        if piece.strip(".") and len(set(piece)) > 2:
            assert piece not in text, (piece, error)


def send(api: Api, authorization: str) -> Any:
    # As a WSGI server hands it over: any text, without the test client's own checks.
    return api.client.get("/v1/me", environ_base={"HTTP_AUTHORIZATION": authorization})


@pytest.fixture(params=["signed", "emulator"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Google-signed tokens, or (outside production) the Auth emulator's unsigned ones."""
    if request.param == "emulator":
        monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
        get_settings.cache_clear()
    return str(request.param)


def test_every_kind_of_garbage_is_a_clean_401(
    api: Api, project_id: str, db: firestore.Client, mode: str, token: Token
) -> None:
    before = dump(db)
    headers = [f"Bearer {value}" for value in EXPLICIT.values()]
    headers += [f"Bearer {token('alice', **extra)}" for extra in SIGNED_HOSTILE.values()]
    headers += [f"bearer  {EXPLICIT['nested header']}", f"BEARER {EXPLICIT['binary text']}"]
    for header in headers:
        assert_refused(send(api, header), header)
    assert dump(db) == before


segment_text = st.one_of(
    st.binary(max_size=64).map(b64),
    st.text(max_size=40),
    st.integers(min_value=1, max_value=4000).map(nested),
    st.integers(min_value=1, max_value=3000).map(deep_object),
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.text(max_size=8) | st.integers(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=6,
    ).map(segment),
    st.sampled_from([RS256, NONE, CLAIMS, "", "="]),
)


@settings(
    derandomize=True,
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    parts=st.lists(segment_text, min_size=1, max_size=5),
    scheme=st.sampled_from(["Bearer ", "bearer ", "Bearer  ", "Bearer\t", ""]),
)
def test_generated_headers_are_a_clean_401(
    api: Api, project_id: str, mode: str, parts: list[str], scheme: str
) -> None:
    header = scheme + ".".join(parts)
    assert_refused(send(api, header), header)


@pytest.mark.parametrize(
    "value",
    [
        b"Bearer " + b"\x80\xff\xfe" * 30,  # not UTF-8: gunicorn hands it over as latin-1
        b"Bearer " + "ключ.τοκεν.签名".encode(),  # UTF-8 bytes
        b"Bearer " + EXPLICIT["nested header"].encode(),
        b"Bearer " + b"a" * 8000,  # just under gunicorn's limit for one header
    ],
    ids=["latin-1", "utf-8", "nested", "8000 bytes"],
)
def test_on_the_wire_the_deployed_function_refuses_them_alike(
    api_instances: ApiInstances, value: bytes
) -> None:
    request = b"GET /v1/me HTTP/1.1\r\nHost: api.test\r\nAuthorization: " + value
    request += b"\r\nConnection: close\r\n\r\n"
    status, headers, body = raw_exchange(api_instances.ports[0], request)
    assert status == 401, body[:300]
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] in REFUSALS
