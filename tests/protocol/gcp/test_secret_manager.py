"""Production secrets through the real Secret Manager client against a loopback gRPC server."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from common.platform import secrets
from common.platform.secrets import (
    PlaceholderSecretError,
    SecretAccessError,
    SecretNotFound,
    Secrets,
)
from common.platform.settings import Settings, get_settings

from .loopback import FakeSecretManager

KEY_V1 = "sk-proj-Prod1Key9fK2LmQ7xR4tB8vN1c"
KEY_V2 = "sk-proj-Prod2Key3Zq8Wm1Lp6Rt0Yx4Hd"
GEMINI = "AIzaSyProdGemini4f8Gh2Jk9Lm3Np6Qr1St"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def production(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        return make_settings(**{"app_mode": "production", "secret_timeout_seconds": 2, **overrides})

    return make


def test_found_reads_latest_version_of_the_named_secret(
    secret_manager: FakeSecretManager,
    production: Callable[..., Settings],
    log_lines: Callable[[], list[str]],
) -> None:
    secret_manager.add_version("proj-test", "OPENAI_API_KEY", KEY_V1.encode())
    secret_manager.add_version("proj-test", "OPENAI_API_KEY", (KEY_V2 + "\n").encode())
    store = Secrets(production())

    assert store.get("OPENAI_API_KEY") == KEY_V2
    assert [r.name for r in secret_manager.requests] == [
        "projects/proj-test/secrets/OPENAI_API_KEY/versions/latest"
    ]
    audit = [json.loads(line) for line in log_lines() if '"secret lookup"' in line]
    assert audit[0]["source"] == "secret_manager"
    assert audit[0]["cache"] == "miss"
    assert audit[0]["version"] == "2"


def test_pinned_version_and_separate_secret_project_are_used(
    secret_manager: FakeSecretManager, production: Callable[..., Settings]
) -> None:
    secret_manager.add_version("vault-proj", "OPENAI_API_KEY", KEY_V1.encode())
    secret_manager.add_version("vault-proj", "OPENAI_API_KEY", KEY_V2.encode())
    store = Secrets(
        production(secret_project_id="vault-proj", secret_versions={"OPENAI_API_KEY": "1"})
    )

    assert store.get("OPENAI_API_KEY") == KEY_V1
    assert secret_manager.requests[0].name == (
        "projects/vault-proj/secrets/OPENAI_API_KEY/versions/1"
    )


def test_pinned_versions_are_read_from_the_environment_as_json(
    secret_manager: FakeSecretManager,
    loopback_endpoint_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret_manager.add_version("proj-test", "GEMINI_API_KEY", GEMINI.encode())
    secret_manager.add_version("proj-test", "GEMINI_API_KEY", b"AIzaSyNewerVersionNotPinned000000")
    monkeypatch.setenv("SECRET_VERSIONS", '{"GEMINI_API_KEY": "1"}')
    get_settings.cache_clear()

    assert secrets.get_secret("GEMINI_API_KEY") == GEMINI


def test_not_found_is_none_for_find_and_names_the_resource_for_get(
    secret_manager: FakeSecretManager, production: Callable[..., Settings]
) -> None:
    store = Secrets(production())

    assert store.find("OPENAI_API_KEY") is None
    store.clear()
    with pytest.raises(SecretNotFound) as caught:
        store.get("OPENAI_API_KEY")
    assert str(caught.value) == (
        "secret OPENAI_API_KEY is not set (looked in: Secret Manager "
        "projects/proj-test/secrets/OPENAI_API_KEY/versions/latest)"
    )


def test_permission_denied_is_an_error_naming_secret_and_source(
    secret_manager: FakeSecretManager, production: Callable[..., Settings]
) -> None:
    secret_manager.add_version("proj-test", "OPENAI_API_KEY", KEY_V1.encode())
    secret_manager.denied.add("OPENAI_API_KEY")

    with pytest.raises(SecretAccessError) as caught:
        Secrets(production()).find("OPENAI_API_KEY")
    message = str(caught.value)
    assert message.startswith("secret OPENAI_API_KEY: permission denied reading ")
    assert "projects/proj-test/secrets/OPENAI_API_KEY/versions/latest" in message
    assert "roles/secretmanager.secretAccessor" in message
    assert KEY_V1 not in message


def test_unavailable_then_recovered_within_one_lookup(
    secret_manager: FakeSecretManager, production: Callable[..., Settings]
) -> None:
    secret_manager.add_version("proj-test", "OPENAI_API_KEY", KEY_V1.encode())
    secret_manager.unavailable = 2

    assert Secrets(production()).get("OPENAI_API_KEY") == KEY_V1
    assert len(secret_manager.requests) == 3


def test_a_lasting_outage_fails_clearly_and_is_not_cached(
    secret_manager: FakeSecretManager, production: Callable[..., Settings]
) -> None:
    secret_manager.add_version("proj-test", "OPENAI_API_KEY", KEY_V1.encode())
    secret_manager.unavailable = 10_000
    store = Secrets(production(secret_timeout_seconds=0.5))

    with pytest.raises(SecretAccessError) as caught:
        store.get("OPENAI_API_KEY")
    assert "secret OPENAI_API_KEY: Secret Manager could not be read" in str(caught.value)

    secret_manager.unavailable = 0
    assert store.get("OPENAI_API_KEY") == KEY_V1


@pytest.mark.parametrize("stored", [b"sk-...", b"changeme", b"your-openai-key-here", b"", b"  \n"])
def test_production_refuses_placeholders(
    secret_manager: FakeSecretManager, production: Callable[..., Settings], stored: bytes
) -> None:
    secret_manager.add_version("proj-test", "OPENAI_API_KEY", stored)

    with pytest.raises(PlaceholderSecretError) as caught:
        Secrets(production()).find("OPENAI_API_KEY")
    message = str(caught.value)
    assert "secret OPENAI_API_KEY" in message
    assert "placeholder" in message
    if stored.strip():
        assert stored.decode() not in message


def test_start_up_check_refuses_a_placeholder(
    secret_manager: FakeSecretManager,
    loopback_endpoint_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret_manager.add_version("proj-test", "OPENAI_API_KEY", KEY_V1.encode())
    secret_manager.add_version("proj-test", "GEMINI_API_KEY", b"AIzaSy...")

    with pytest.raises(PlaceholderSecretError, match="GEMINI_API_KEY"):
        secrets.check_secrets()


def test_corrupted_payload_is_refused(
    secret_manager: FakeSecretManager, production: Callable[..., Settings]
) -> None:
    secret_manager.add_version("proj-test", "OPENAI_API_KEY", KEY_V1.encode())
    secret_manager.corrupt.add("OPENAI_API_KEY")

    with pytest.raises(SecretAccessError, match="CRC32C"):
        Secrets(production()).get("OPENAI_API_KEY")


def test_cache_serves_within_ttl_and_fetches_the_new_version_after_it(
    secret_manager: FakeSecretManager, production: Callable[..., Settings]
) -> None:
    secret_manager.add_version("proj-test", "OPENAI_API_KEY", KEY_V1.encode())
    clock = Clock()
    store = Secrets(production(secret_cache_ttl_seconds=3600), clock=clock)
    assert store.get("OPENAI_API_KEY") == KEY_V1

    secret_manager.add_version("proj-test", "OPENAI_API_KEY", KEY_V2.encode())
    clock.now = 3599
    assert store.get("OPENAI_API_KEY") == KEY_V1
    assert len(secret_manager.requests) == 1

    clock.now = 3600
    assert store.get("OPENAI_API_KEY") == KEY_V2
    assert len(secret_manager.requests) == 2


def test_no_secret_value_in_any_log_line_across_fetches_refreshes_and_errors(
    secret_manager: FakeSecretManager,
    production: Callable[..., Settings],
    log_lines: Callable[[], list[str]],
) -> None:
    secret_manager.add_version("proj-test", "OPENAI_API_KEY", KEY_V1.encode())
    secret_manager.add_version("proj-test", "GEMINI_API_KEY", GEMINI.encode())
    clock = Clock()
    store = Secrets(production(secret_cache_ttl_seconds=10), clock=clock)
    messages: list[str] = []

    store.get("OPENAI_API_KEY")
    store.get("GEMINI_API_KEY")
    store.get("OPENAI_API_KEY")  # hit
    secret_manager.add_version("proj-test", "OPENAI_API_KEY", KEY_V2.encode())
    secret_manager.unavailable = 1
    clock.now = 10
    store.get("OPENAI_API_KEY")  # refresh through a transient outage
    secret_manager.denied.add("GEMINI_API_KEY")
    for failing in ("GEMINI_API_KEY", "ABSENT_KEY"):
        try:
            store.get(failing)
        except (SecretAccessError, SecretNotFound) as exc:
            messages.append(str(exc))
    secret_manager.add_version("proj-test", "PLACEHOLDER_KEY", b"sk-proj-...")
    try:
        store.get("PLACEHOLDER_KEY")
    except PlaceholderSecretError as exc:
        messages.append(str(exc))

    lines = log_lines()
    audits = [json.loads(line) for line in lines if '"secret lookup"' in line]
    assert [(a["secret"], a["cache"]) for a in audits] == [
        ("OPENAI_API_KEY", "miss"),
        ("GEMINI_API_KEY", "miss"),
        ("OPENAI_API_KEY", "hit"),
        ("OPENAI_API_KEY", "miss"),
        ("ABSENT_KEY", "miss"),
    ]
    assert audits[3]["version"] == "2"
    assert len(messages) == 3
    for text in [*lines, *messages]:
        for value in (KEY_V1, KEY_V2, GEMINI, "sk-proj-..."):
            assert value not in text


@pytest.fixture
def loopback_endpoint_env(
    secret_manager: FakeSecretManager,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Production mode through the environment, as a deployed function reads it."""
    endpoint = make_settings().secret_manager_endpoint
    assert endpoint is not None
    monkeypatch.setenv("APP_MODE", "production")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "proj-test")
    monkeypatch.setenv("SECRET_MANAGER_ENDPOINT", endpoint)
    get_settings.cache_clear()
