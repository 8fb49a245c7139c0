"""In production the router takes its keys from Secret Manager, and refuses to serve offline
placeholders when no provider is configured there."""

from __future__ import annotations

import pytest

from common.llm.setup import NoProviderConfigured, build_router
from common.platform.settings import get_settings

from .loopback import FakeSecretManager, LoopbackServer


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch, loopback: LoopbackServer) -> None:
    monkeypatch.setenv("APP_MODE", "production")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "proj-prod")
    monkeypatch.setenv("SECRET_MANAGER_ENDPOINT", loopback.endpoint)
    get_settings.cache_clear()


def test_no_key_in_secret_manager_is_an_error_not_placeholders(
    secret_manager: FakeSecretManager, production: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(NoProviderConfigured, match="LLM_OFFLINE=true"):
        build_router()
    assert secret_manager.requests  # it did look
    monkeypatch.setenv("LLM_OFFLINE", "true")
    get_settings.cache_clear()
    assert build_router().providers == ["offline"]


def test_a_key_in_secret_manager_configures_its_provider(
    secret_manager: FakeSecretManager, production: None
) -> None:
    secret_manager.add_version("proj-prod", "OPENAI_API_KEY", b"sk-proj-prodkey1234567890abcdef")
    assert build_router().providers == ["openai"]
