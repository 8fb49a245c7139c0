"""Fixtures for the router's unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from common.llm.catalogue import default_catalogue
from common.platform.settings import get_settings

_ROUTER_ENV = (
    "OPENAI_API_KEY",
    "GEMINI_API_KEY",
    "OPENAI_BASE_URL",
    "GEMINI_BASE_URL",
    "GEMINI_USE_VERTEX",
    "LLM_OFFLINE",
    "MODEL_CATALOGUE_PATH",
    "OFFLINE_LATENCY_MS",
    "APP_MODE",
)


@pytest.fixture
def router_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No API keys anywhere (no `.env` either); settings and router rebuilt from scratch."""
    for name in _ROUTER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOTENV_PATH", str(tmp_path / "absent.env"))
    get_settings.cache_clear()
    default_catalogue.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()
    default_catalogue.cache_clear()
