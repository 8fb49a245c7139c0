"""Who is calling: a Firebase ID token from `Authorization: Bearer ...`, verified.

Firebase ID tokens are RS256 JWTs signed by Google's securetoken keys; the checks are Firebase's
("Verify ID tokens using a third-party JWT library",
https://firebase.google.com/docs/auth/admin/verify-id-tokens#verify_id_tokens_using_a_third-party_jwt_library):
`alg` RS256 with a `kid` among the published keys, a valid signature, `exp` in the future and
`iat` in the past, `aud` the project id, `iss` https://securetoken.google.com/<project id>, a
non-empty `sub` (the uid) and `auth_time` in the past. google-auth's `jwt.decode` does the
signature, time and audience checks; the keys are fetched and cached here as long as their
`Cache-Control: max-age` allows.

The Firebase Auth emulator signs nothing (`alg: none`): its tokens are accepted only when
FIREBASE_AUTH_EMULATOR_HOST is set and the app is not in production mode.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
from google.auth import exceptions as auth_exceptions
from google.auth import jwt

from common.platform.errors import AppError, Busy
from common.platform.settings import get_settings

CLOCK_SKEW_SECONDS = 5
_MAX_AGE = re.compile(r"max-age=(\d+)")


class Unauthenticated(AppError):
    """No token, or a token that is not a valid Firebase ID token of this project."""

    status = 401
    code = "unauthenticated"


@dataclass(frozen=True)
class User:
    """A verified caller."""

    uid: str
    email: str | None = None


class _Certs:
    """The securetoken x509 certificates (kid -> PEM), refetched when their max-age passes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._url = ""
        self._certs: dict[str, str] = {}
        self._expires = 0.0

    def get(self, url: str) -> dict[str, str]:
        with self._lock:
            if url != self._url or time.monotonic() >= self._expires:
                response = httpx.get(url, timeout=10)
                response.raise_for_status()
                match = _MAX_AGE.search(response.headers.get("cache-control", ""))
                self._certs = dict(response.json())
                self._url = url
                self._expires = time.monotonic() + (int(match.group(1)) if match else 0)
            return self._certs


_certs = _Certs()


def _part(segment: str) -> dict[str, Any]:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError) as error:
        raise Unauthenticated("the ID token is not a JWT", code="invalid_token") from error
    if not isinstance(decoded, dict):
        raise Unauthenticated("the ID token is not a JWT", code="invalid_token")
    return decoded


def _emulator_claims(token: str) -> dict[str, Any]:
    """The claims of an Auth emulator token (unsigned), after the same time checks."""
    segments = token.split(".")
    if len(segments) != 3 or _part(segments[0]).get("alg") != "none":
        raise Unauthenticated("not an Auth emulator token", code="invalid_token")
    claims = _part(segments[1])
    now = time.time()
    if not isinstance(claims.get("exp"), int | float) or claims["exp"] < now - CLOCK_SKEW_SECONDS:
        raise Unauthenticated("the ID token has expired: sign in again", code="token_expired")
    if claims.get("aud") != get_settings().project_id:
        raise Unauthenticated("the ID token is for another project", code="invalid_token")
    return claims


def _verified_claims(token: str) -> dict[str, Any]:
    settings = get_settings()
    header = _part(token.split(".", 1)[0])
    if header.get("alg") != "RS256" or not header.get("kid"):
        raise Unauthenticated("the ID token is not signed with RS256", code="invalid_token")
    try:
        certs = _certs.get(settings.firebase_certs_url)
    except (httpx.HTTPError, ValueError) as error:
        raise Busy(
            "cannot fetch Firebase's token keys; try again", code="auth_unavailable"
        ) from error
    try:
        claims: dict[str, Any] = jwt.decode(  # type: ignore[no-untyped-call]
            token,
            certs=certs,
            audience=settings.project_id,
            clock_skew_in_seconds=CLOCK_SKEW_SECONDS,
        )
    except (auth_exceptions.GoogleAuthError, ValueError) as error:
        expired = "expired" in str(error).lower()
        raise Unauthenticated(
            "the ID token has expired: sign in again" if expired else f"invalid ID token: {error}",
            code="token_expired" if expired else "invalid_token",
        ) from error
    return claims


def verify(authorization: str | None) -> User:
    """The user an `Authorization` header value speaks for.

    Raises:
        Unauthenticated: no bearer token, or one that fails any of Firebase's checks.
    """
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("sign in: the request needs `Authorization: Bearer <ID token>`")
    settings = get_settings()
    emulated = settings.firebase_auth_emulator_host and settings.app_mode != "production"
    claims = _emulator_claims(token) if emulated else _verified_claims(token)
    issuer = f"https://securetoken.google.com/{settings.project_id}"
    if claims.get("iss") != issuer:
        raise Unauthenticated(f"the ID token was not issued by {issuer}", code="invalid_token")
    uid = claims.get("sub")
    if not isinstance(uid, str) or not uid or len(uid) > 128:
        raise Unauthenticated("the ID token names no user", code="invalid_token")
    auth_time = claims.get("auth_time")
    if not isinstance(auth_time, int | float) or auth_time > time.time() + CLOCK_SKEW_SECONDS:
        raise Unauthenticated("the ID token's sign-in time is invalid", code="invalid_token")
    email = claims.get("email")
    return User(uid=uid, email=email if isinstance(email, str) else None)
