"""Secrets (API keys): Secret Manager in production, the environment or `.env` in development.

`get_secret(name)` returns a secret's value or raises; `find_secret(name)` returns None when the
secret is configured nowhere (for optional keys such as OPENAI_API_KEY, whose absence means "use
the offline provider"). Where a value comes from follows `Settings.app_mode`:

- production: Secret Manager, `projects/{secret_project_id or project_id}/secrets/{NAME}/versions/
  {version}`, the version being "latest" unless `Settings.secret_versions` pins one. Placeholder
  values ("sk-...", "changeme", "your-key-here", empty) are refused with `PlaceholderSecretError`.
- development: the environment variable NAME, then the file `Settings.dotenv_path` (never
  committed; `.env.example` lists every name). A placeholder there counts as "not set", so a
  verbatim copy of `.env.example` runs offline.

Values are cached for `Settings.secret_cache_ttl_seconds` (absences too, so an optional key that
is not configured costs one lookup per TTL, not one per call). Every lookup writes one audit log
line (secret name, source, cache hit or miss, version) and never the value; `redact(text)`
replaces every value this process has read, and anything shaped like an API key (masked forms
included), with "[REDACTED]": log lines, error bodies, stored errors and CLI output go through it.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from common.platform.process import per_settings
from common.platform.settings import Settings

if TYPE_CHECKING:
    from google.cloud.secretmanager_v1 import SecretManagerServiceClient

logger = logging.getLogger(__name__)

#: Every secret name RaptorFlow reads (documented in `.env.example`).
KNOWN_SECRETS: tuple[str, ...] = ("OPENAI_API_KEY", "GEMINI_API_KEY")

REDACTED = "[REDACTED]"

Source = Literal["secret_manager", "environment", "dotenv", "none"]

# Secret Manager's own rule for secret ids; environment variable names fit it too.
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")

# Template values people paste from examples and docs. Real API keys never contain an ellipsis,
# never consist of one repeated filler character after their prefix, and are not English words.
_PLACEHOLDERS = (
    re.compile(r"\.\.\.|…"),
    re.compile(r"^(sk-|sk-proj-|AIza|AIzaSy)?[xX*#.\-_0]*$"),
    re.compile(
        r"^(change[-_ ]?me|replace[-_ ]?me|placeholder|todo|tbd|none|null|dummy|example"
        r"|insert[-_ ]?key[-_ ]?here)$",
        re.IGNORECASE,
    ),
    re.compile(r"^your[-_ ].*[-_ ]here$", re.IGNORECASE),
    re.compile(r"^(<.*>|\$\{.*\}|\{\{.*\}\})$"),
)


class SecretError(Exception):
    """Base class of the errors this module raises; messages never contain a secret's value."""


class SecretNotFound(SecretError, LookupError):
    """A required secret is missing; the message names the secret and where we looked."""


class SecretAccessError(SecretError, RuntimeError):
    """A source exists but could not be read (permission denied, unavailable, corrupted)."""


class PlaceholderSecretError(SecretError, ValueError):
    """Production found a template value ("sk-...", "changeme", empty) instead of a real key."""


def is_placeholder(value: str) -> bool:
    """Whether `value` looks like a template rather than a real secret (empty counts)."""
    stripped = value.strip()
    return not stripped or any(p.search(stripped) for p in _PLACEHOLDERS)


@dataclass(frozen=True)
class _Entry:
    value: str | None
    source: Source
    version: str | None
    expires_at: float


class Secrets:
    """Reads and caches secrets for one `Settings`; thread-safe.

    Args:
        settings: Where to look (mode, project, versions, `.env` path, TTL).
        clock: Monotonic seconds; tests inject a fake one to move past the TTL.
        client: A Secret Manager client; by default one is made on first production lookup
            (over plain gRPC to `settings.secret_manager_endpoint` when that is set).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        client: SecretManagerServiceClient | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._client = client
        self._cache: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._name_locks: dict[str, threading.Lock] = {}

    def find(self, name: str) -> str | None:
        """The secret's value, or None when it is configured nowhere.

        Raises:
            ValueError: `name` is not a valid secret name.
            SecretAccessError: the source could not be read (permission, outage, corruption).
            PlaceholderSecretError: production holds a template value.
        """
        if not _NAME.fullmatch(name):
            raise ValueError(
                f"secret name {name!r} is invalid: use 1-255 letters, digits, '_' or '-'"
            )
        entry = self._cached(name)
        if entry is not None:
            self._audit(name, entry, cache="hit")
            return entry.value
        with self._name_lock(name):
            # Another thread may have fetched it while we waited for the lock.
            entry = self._cached(name)
            if entry is not None:
                self._audit(name, entry, cache="hit")
                return entry.value
            value, source, version = self._fetch(name)
            entry = _Entry(
                value, source, version, self._clock() + self.settings.secret_cache_ttl_seconds
            )
            with self._lock:
                self._cache[name] = entry
        if value is not None:
            _remember(value)
        self._audit(name, entry, cache="miss")
        return value

    def get(self, name: str) -> str:
        """The secret's value; raises `SecretNotFound` rather than returning an empty string."""
        value = self.find(name)
        if value is None:
            raise SecretNotFound(f"secret {name} is not set (looked in: {self.sources(name)})")
        return value

    def sources(self, name: str) -> str:
        """Where `name` is looked for, in words, for error messages."""
        if self.settings.app_mode == "production":
            return f"Secret Manager {self._resource(name)}"
        return f"environment variable {name}, file {self.settings.dotenv_path.resolve()}"

    def clear(self) -> None:
        """Forget every cached value (the next lookups fetch again)."""
        with self._lock:
            self._cache.clear()

    def _cached(self, name: str) -> _Entry | None:
        with self._lock:
            entry = self._cache.get(name)
        if entry is None or self._clock() >= entry.expires_at:
            return None
        return entry

    def _name_lock(self, name: str) -> threading.Lock:
        with self._lock:
            return self._name_locks.setdefault(name, threading.Lock())

    def _fetch(self, name: str) -> tuple[str | None, Source, str | None]:
        if self.settings.app_mode == "production":
            return self._fetch_secret_manager(name)
        value = os.environ.get(name)
        if value is not None and self._usable_in_development(name, value, "environment"):
            return value.strip(), "environment", None
        value = _read_dotenv(self.settings.dotenv_path).get(name)
        if value is not None and self._usable_in_development(name, value, "dotenv"):
            return value.strip(), "dotenv", None
        return None, "none", None

    def _usable_in_development(self, name: str, value: str, source: Source) -> bool:
        if not is_placeholder(value):
            return True
        if value.strip():
            logger.warning(
                "secret holds a placeholder; treating it as not set",
                extra={"json_fields": {"secret": name, "source": source}},
            )
        return False

    def _resource(self, name: str) -> str:
        project = self.settings.secret_project_id or self.settings.project_id
        version = self.settings.secret_versions.get(name, "latest")
        return f"projects/{project}/secrets/{name}/versions/{version}"

    def _fetch_secret_manager(self, name: str) -> tuple[str | None, Source, str | None]:
        from google.api_core import exceptions, retry

        resource = self._resource(name)
        timeout = self.settings.secret_timeout_seconds
        # A short, bounded retry on a transient outage: the lookup happens before any work or
        # money moves, so retrying here is cheaper than failing and replaying the whole step.
        transient = retry.Retry(
            predicate=retry.if_exception_type(
                exceptions.ServiceUnavailable, exceptions.DeadlineExceeded
            ),
            initial=0.1,
            maximum=2.0,
            multiplier=2.0,
            timeout=timeout,
        )
        try:
            response = self._secret_manager().access_secret_version(
                name=resource, retry=transient, timeout=timeout
            )
        except exceptions.NotFound:
            return None, "secret_manager", None
        except exceptions.PermissionDenied as exc:
            raise SecretAccessError(
                f"secret {name}: permission denied reading {resource} from Secret Manager "
                f"(the service account needs roles/secretmanager.secretAccessor): {exc.message}"
            ) from None
        except (exceptions.GoogleAPICallError, exceptions.RetryError) as exc:
            raise SecretAccessError(
                f"secret {name}: Secret Manager could not be read for {resource}: "
                f"{type(exc).__name__}: {getattr(exc, 'message', '')}"
            ) from None
        data = bytes(response.payload.data)
        if "data_crc32c" in response.payload and not _crc_matches(
            data, response.payload.data_crc32c
        ):
            raise SecretAccessError(
                f"secret {name}: the payload of {resource} failed its CRC32C check (corrupted)"
            )
        value = data.decode("utf-8").strip()
        version = response.name.rsplit("/", 1)[-1] or None
        if is_placeholder(value):
            raise PlaceholderSecretError(
                f"secret {name} ({resource}, version {version}) holds a placeholder or empty "
                "value; production refuses it: add a real version with "
                f"`gcloud secrets versions add {name} --data-file=-`"
            )
        return value, "secret_manager", version

    def _secret_manager(self) -> SecretManagerServiceClient:
        with self._lock:
            if self._client is None:
                self._client = _secret_manager_client(self.settings)
            return self._client

    def _audit(self, name: str, entry: _Entry, *, cache: Literal["hit", "miss"]) -> None:
        fields = {
            "secret": name,
            "source": entry.source,
            "cache": cache,
            "version": entry.version,
            "found": entry.value is not None,
        }
        # A miss is a real fetch (audit at INFO); hits happen on every call and stay at DEBUG.
        level = logging.INFO if cache == "miss" else logging.DEBUG
        logger.log(level, "secret lookup", extra={"json_fields": fields})


def _secret_manager_client(settings: Settings) -> SecretManagerServiceClient:
    from google.cloud import secretmanager_v1

    if settings.secret_manager_endpoint:
        import grpc
        from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
            SecretManagerServiceGrpcTransport,
        )

        channel = grpc.insecure_channel(settings.secret_manager_endpoint)
        transport = SecretManagerServiceGrpcTransport(channel=channel)
        return secretmanager_v1.SecretManagerServiceClient(transport=transport)
    return secretmanager_v1.SecretManagerServiceClient()


def _crc_matches(data: bytes, expected: int) -> bool:
    import google_crc32c

    return int(google_crc32c.value(data)) == int(expected)


def _read_dotenv(path: Path) -> dict[str, str]:
    from dotenv import dotenv_values

    if not path.is_file():
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


# Every value read in this process, for `redact`. A compiled alternation is rebuilt only when a
# new value arrives (a handful per process), so `redact` costs one regex scan per call.
_seen: set[str] = set()
_seen_lock = threading.Lock()
_pattern: re.Pattern[str] | None = None

# Key-shaped tokens, redacted whether or not this process read them (another process's key, or
# the masked forms providers quote in a 401: OpenAI's "Incorrect API key provided:
# sk-abc12****************wxyz."). A token with a run of asterisks is a masked secret.
_KEY_SHAPES = re.compile(
    r"\bsk-[A-Za-z0-9_\-*.…]{6,}"  # OpenAI keys: sk-..., sk-proj-..., and masked ones
    r"|\bAIza[A-Za-z0-9_\-*.…]{8,}"  # Google API keys (Gemini)
    # Anything masked with asterisks, from the start of its token: anchored there, a scan is
    # linear (unanchored, a long word without asterisks took quadratic time: 13 s for 40 KB).
    r"|(?<![\w\-:/])[\w\-:/]*\*{4,}[\w\-]*"
    r"|(?<=(?i:key provided: ))[^\s'\",;]+"  # whatever key OpenAI was given, quoted back
    r"|(?<=(?i:bearer ))[^\s'\",;]+"  # an Authorization header, quoted back
)
# A secret this long is also redacted when cut short (a message truncated inside it) or masked
# down to its last characters ("...wxyz", "…wxyz").
_PARTIAL_MIN = 16


def _alternatives(value: str) -> list[str]:
    if len(value) < _PARTIAL_MIN:
        return [re.escape(value)]
    return [
        re.escape(value),
        re.escape(value[:12]) + r"[\w\-]*",
        r"(?<![\w\-])[\w\-]*(?:\.{3}|…)" + re.escape(value[-4:]),
    ]


def _remember(value: str) -> None:
    global _pattern
    with _seen_lock:
        if value in _seen:
            return
        _seen.add(value)
        # Longest first, so a value that contains another is replaced whole.
        values = sorted(_seen, key=len, reverse=True)
        _pattern = re.compile("|".join(a for v in values for a in _alternatives(v)))


def redact(text: str) -> str:
    """`text` with every secret value read by this process, and every key-shaped token (also
    masked ones), replaced by "[REDACTED]"."""
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    return _KEY_SHAPES.sub(REDACTED, text)


@per_settings
def _secrets(settings: Settings) -> Secrets:
    """The process's store, rebuilt when the settings change (tests clear `get_settings`)."""
    return Secrets(settings)


def find_secret(name: str) -> str | None:
    """The secret's value, or None when it is configured nowhere (see `Secrets.find`)."""
    return _secrets().find(name)


def get_secret(name: str) -> str:
    """The secret's value; raises `SecretNotFound` naming the secret and the sources tried."""
    return _secrets().get(name)


def check_secrets(names: Iterable[str] = KNOWN_SECRETS) -> dict[str, bool]:
    """Read every named secret once, at start-up, so bad configuration fails before any work.

    Returns:
        For each name, whether it is configured. Raises (`PlaceholderSecretError`,
        `SecretAccessError`) exactly as a later lookup would.
    """
    store = _secrets()
    return {name: store.find(name) is not None for name in names}
