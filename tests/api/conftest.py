"""Fixtures for the backend API: real RS256 Firebase-style ID tokens and a loopback key server.

Firebase ID tokens are RS256 JWTs whose keys Google publishes as x509 certificates by key id
(https://firebase.google.com/docs/auth/admin/verify-id-tokens#verify_id_tokens_using_a_third-party_jwt_library).
Here a key pair made for the session plays Google's part: its certificate is served on loopback
with `Cache-Control: max-age`, the API is pointed at it (FIREBASE_CERTS_URL), and tokens are
signed with google-auth's signer, so every check the API makes on a signature is a real one.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import flask.testing
import functions_framework
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from common.platform.settings import get_settings
from common.tenants.businesses import Business, save_business
from local import emulator, stack
from tests.integration.conftest import (  # noqa: F401  (fixtures used by these tests)
    business_input,
    local_stack,
    on_stack,
    register,
)

KID = "test-key-1"


@dataclass(frozen=True)
class KeyPair:
    private_pem: str
    certificate_pem: str


def make_key(name: str) -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=7))
        .sign(key, hashes.SHA256())
    )
    return KeyPair(
        private_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
    )


@pytest.fixture(scope="session")
def google_key() -> KeyPair:
    """The key pair standing in for Google's current securetoken key."""
    return make_key("securetoken")


@pytest.fixture(scope="session")
def certs_url(google_key: KeyPair) -> Iterator[str]:
    """A loopback server publishing `{kid: certificate}` as Google's x509 endpoint does."""
    body = json.dumps({KID: google_key.certificate_pem}).encode()

    class Certs(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "public, max-age=3600")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Certs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/robot/v1/metadata/x509/securetoken"
    server.shutdown()


Token = Callable[..., str]


@pytest.fixture
def token(google_key: KeyPair) -> Token:
    """`token(uid, **claims)`: a Firebase ID token for `uid` on the configured project, signed
    with Google's key (`key=` another KeyPair to forge one, `kid=` another key id)."""

    def _token(uid: str, *, key: KeyPair | None = None, kid: str = KID, **claims: Any) -> str:
        project = get_settings().project_id
        now = int(time.time())
        payload = {
            "iss": f"https://securetoken.google.com/{project}",
            "aud": project,
            "sub": uid,
            "user_id": uid,
            "email": f"{uid}@example.com",
            "iat": now - 10,
            "auth_time": now - 10,
            "exp": now + 3600,
            "firebase": {"sign_in_provider": "password", "identities": {}},
            **claims,
        }
        pem = (key or google_key).private_pem
        signer = crypt.RSASigner.from_string(pem, key_id=kid)  # type: ignore[no-untyped-call]
        signed: bytes = jwt.encode(signer, payload)  # type: ignore[no-untyped-call]
        return signed.decode()

    return _token


@pytest.fixture
def signed_tokens_only(certs_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The API verifies signatures against the loopback keys; no emulator shortcut."""
    monkeypatch.setenv("FIREBASE_CERTS_URL", certs_url)
    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST", raising=False)
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def _signed_tokens_only(signed_tokens_only: None) -> None:
    """Every API test trusts the loopback keys alone."""


@dataclass
class Api:
    """The `api` function (loaded by functions-framework from functions/api/main.py)."""

    client: flask.testing.FlaskClient
    token: Token

    def call(
        self,
        method: str,
        path: str,
        uid: str | None = None,
        *,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        sent = dict(headers or {})
        if uid is not None:
            sent["Authorization"] = f"Bearer {self.token(uid)}"
        return self.client.open(path, method=method, json=json_body, headers=sent, **kwargs)


@pytest.fixture(scope="session")
def api_app() -> flask.Flask:
    app: flask.Flask = functions_framework.create_app(
        "api", str(stack.FUNCTIONS_DIR / "api" / "main.py")
    )
    return app


@pytest.fixture
def api(api_app: flask.Flask, token: Token) -> Api:
    return Api(api_app.test_client(), token)


@pytest.fixture
def people() -> dict[str, str]:
    """Unique uids for this test: an owner, a member, an outsider."""
    suffix = uuid.uuid4().hex[:8]
    return {name: f"{name}-{suffix}" for name in ("owner", "member", "outsider")}


@pytest.fixture
def business(people: dict[str, str]) -> Callable[..., Business]:
    """Register a business whose owner and member are `people`'s (on the configured project)."""

    def _business(tier: str = "enterprise", **extra: Any) -> Business:
        registered = Business.model_validate(
            {
                "business_id": f"biz-{uuid.uuid4().hex[:10]}",
                "name": "Tidewater Coffee",
                "tier": tier,
                "members": [people["owner"], people["member"]],
                "owners": [people["owner"]],
                **extra,
            }
        )
        save_business(registered)
        return registered

    return _business


# --- The api function as deployed: functions-framework under gunicorn, two instances ------------


@dataclass
class ApiInstances:
    """Two processes of the `api` function (as two Cloud Run instances would be), on the
    session's emulator in a project of their own, with an engine to start runs on (whose
    workflows end at once: no phase function runs here)."""

    stacks: list[stack.LocalStack]

    @property
    def project_id(self) -> str:
        return self.stacks[0].project_id

    @property
    def ports(self) -> list[int]:
        """Each instance's own port: gunicorn itself, no ingress in front."""
        return [running.functions["api"].port for running in self.stacks]

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.ports]


@pytest.fixture(scope="session")
def api_instances(
    firestore_emulator: emulator.FirestoreEmulator,
    certs_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ApiInstances]:
    project = f"api-{uuid.uuid4().hex[:8]}"
    env = {
        "FIREBASE_CERTS_URL": certs_url,
        "FIREBASE_AUTH_EMULATOR_HOST": "",  # signed tokens only, whatever this shell has
        "API_RUN_BURST": "5",
        "API_RUN_REFILL_SECONDS": "3600",
        "DOTENV_PATH": "/nonexistent/.env",
    }
    logs = tmp_path_factory.mktemp("api-logs")
    first = stack.start(
        project,
        log_dir=logs / "1",
        functions={"api": stack.FunctionConfig(env=env)},
        firestore=firestore_emulator,
    )
    stacks = [first]
    try:
        assert first.engine is not None
        # The second instance starts runs on the first's engine, as both would on Google's.
        second = stack.start(
            project,
            log_dir=logs / "2",
            functions={"api": stack.FunctionConfig(env=env)},
            function_env={"EXECUTIONS_ENDPOINT": first.engine.address},
            firestore=firestore_emulator,
        )
        stacks.append(second)
        yield ApiInstances(stacks)
    finally:
        for running in stacks:
            running.stop()


@pytest.fixture
def served(api_instances: ApiInstances, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiInstances]:
    """This test's own code (seeding, reading back) on the instances' project and engine."""
    for name, value in api_instances.stacks[0].client_env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield api_instances
    get_settings.cache_clear()


@pytest.fixture
def http_client() -> Iterator[httpx.Client]:
    """One HTTP client for many threads (httpx's is thread-safe), with room for 64 at once."""
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    with httpx.Client(timeout=120, limits=limits) as client:
        yield client


def raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `request` as bytes to 127.0.0.1:`port`; the answer's status, headers and body
    (whatever a client could put on the wire, also what no HTTP library would send)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body
