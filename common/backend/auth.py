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
import math
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
# A Firebase ID token is about 1 KB (custom claims are capped at 1000 bytes); anything much
# longer is refused before it is decoded.
MAX_TOKEN_CHARS = 8192
# What a hostile token can make decoding raise, in our code or google-auth's: bad base64 or
# JSON (ValueError, binascii.Error), JSON nested past the interpreter's recursion limit
# (RecursionError), claims of the wrong type (TypeError, KeyError), numbers out of range
# (OverflowError), and google-auth's own refusals.
_HOSTILE = (
    ValueError,
    TypeError,
    KeyError,
    RecursionError,
    OverflowError,
    binascii.Error,
    auth_exceptions.GoogleAuthError,
)
_MAX_AGE = re.compile(r"max-age=(\d+)")
# The hint a caller without a token gets. No placeholder follows "Bearer ": error text is
# redacted, and whatever follows "Bearer " there is taken for a token.
SIGN_IN_HINT = "sign in: send the header `Authorization: Bearer` followed by a Firebase ID token"


class Unauthenticated(AppError):
    """No token, or a token that is not a valid Firebase ID token of this project."""

    status = 401
    code = "unauthenticated"

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="raptorflow"'}


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
        """The certificates at `url`; when their max-age has passed and fetching them again
        fails, the ones fetched before (a key is valid long after its max-age: Google rotates
        them daily and keeps the old one published), else the error."""
        with self._lock:
            if url != self._url or time.monotonic() >= self._expires:
                try:
                    response = httpx.get(url, timeout=10)
                    response.raise_for_status()
                    certs = dict(response.json())
                except (httpx.HTTPError, ValueError):
                    if url == self._url and self._certs:
                        return self._certs
                    raise
                match = _MAX_AGE.search(response.headers.get("cache-control", ""))
                self._certs = certs
                self._url = url
                self._expires = time.monotonic() + (int(match.group(1)) if match else 0)
            return self._certs


_certs = _Certs()


def _invalid(message: str = "the ID token is not a valid Firebase ID token") -> Unauthenticated:
    return Unauthenticated(message, code="invalid_token")


def _part(segment: str) -> dict[str, Any]:
    """One JWT segment's JSON object (`ValueError` and kin when it is none: see `_HOSTILE`)."""
    decoded = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    if not isinstance(decoded, dict):
        raise ValueError("a JWT segment is not a JSON object")
    return decoded


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _emulator_claims(token: str) -> dict[str, Any]:
    """The claims of an Auth emulator token (unsigned), after the same time checks."""
    segments = token.split(".")
    if len(segments) != 3 or _part(segments[0]).get("alg") != "none":
        raise _invalid("not an Auth emulator token")
    claims = _part(segments[1])
    if not _number(claims.get("exp")) or claims["exp"] < time.time() - CLOCK_SKEW_SECONDS:
        raise Unauthenticated("the ID token has expired: sign in again", code="token_expired")
    if claims.get("aud") != get_settings().project_id:
        raise _invalid("the ID token is for another project")
    return claims


def _refusal(error: Exception) -> Unauthenticated:
    """Why google-auth refused a token, in our words: its own text may quote the whole token
    ("Wrong number of segments in token: b'...'"), which must reach neither logs nor answers."""
    text = str(error).lower()
    if "expired" in text:
        return Unauthenticated("the ID token has expired: sign in again", code="token_expired")
    if "audience" in text:
        return _invalid("the ID token is for another project")
    if "too early" in text:
        return _invalid("the ID token is not valid yet: check the clock")
    if "signature" in text or "certificate" in text:
        return _invalid("the ID token's signature is not Firebase's")
    return _invalid()


def _verified_claims(token: str) -> dict[str, Any]:
    settings = get_settings()
    header = _part(token.split(".", 1)[0])
    if header.get("alg") != "RS256" or not isinstance(header.get("kid"), str):
        raise _invalid("the ID token is not signed with RS256")
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
    except _HOSTILE as error:
        raise _refusal(error) from None
    return claims


def _claims(token: str) -> dict[str, Any]:
    settings = get_settings()
    emulated = settings.firebase_auth_emulator_host and settings.app_mode != "production"
    try:
        return _emulator_claims(token) if emulated else _verified_claims(token)
    except AppError:
        raise
    except _HOSTILE:
        # Not a token at all (bad base64 or JSON, nesting deep enough to exhaust the parser's
        # recursion, segments of the wrong type): the answer says no more than that.
        raise _invalid("the ID token is not a JWT") from None


def verify(authorization: str | None) -> User:
    """The user an `Authorization` header value speaks for.

    Raises:
        Unauthenticated: no bearer token, or one that fails any of Firebase's checks, however
            malformed (never another error, whatever the header holds).
        Busy: Google's token keys cannot be fetched right now (503).
    """
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated(SIGN_IN_HINT)
    if len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise _invalid("the ID token is not a JWT")
    settings = get_settings()
    claims = _claims(token)
    issuer = f"https://securetoken.google.com/{settings.project_id}"
    if claims.get("iss") != issuer:
        raise _invalid(f"the ID token was not issued by {issuer}")
    uid = claims.get("sub")
    if not isinstance(uid, str) or not uid or len(uid) > 128:
        raise _invalid("the ID token names no user")
    auth_time = claims.get("auth_time")
    if not isinstance(auth_time, int | float) or not _number(auth_time):
        raise _invalid("the ID token's sign-in time is invalid")
    if auth_time > time.time() + CLOCK_SKEW_SECONDS:
        raise _invalid("the ID token's sign-in time is invalid")
    email = claims.get("email")
    return User(uid=uid, email=email if isinstance(email, str) else None)
