"""Loopback Secret Manager and Vertex AI servers, and settings pointing the real clients there."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from common.platform import secrets
from common.platform.log import JsonFormatter
from common.platform.settings import Settings, get_settings

from .loopback import FakeSecretManager, FakeVertex, LoopbackServer


@pytest.fixture
def loopback() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    yield server
    server.stop()


@pytest.fixture
def secret_manager(loopback: LoopbackServer) -> FakeSecretManager:
    fake = FakeSecretManager()
    fake.register(loopback)
    loopback.start()
    return fake


@pytest.fixture
def vertex(loopback: LoopbackServer) -> FakeVertex:
    fake = FakeVertex()
    fake.register(loopback)
    loopback.start()
    return fake


@pytest.fixture(autouse=True)
def hermetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in secrets.KNOWN_SECRETS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOTENV_PATH", str(tmp_path / "absent.env"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def make_settings(tmp_path: Path, loopback: LoopbackServer) -> Callable[..., Settings]:
    """Settings from arguments only, with both local endpoints at the loopback server."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "GOOGLE_CLOUD_PROJECT": "proj-test",
            "dotenv_path": tmp_path / "absent.env",
            "secret_manager_endpoint": loopback.endpoint,
            "vertex_endpoint": loopback.endpoint,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return make


@pytest.fixture
def log_lines(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """Every record of every logger, at DEBUG, as the JSON line production would write."""
    caplog.set_level(logging.DEBUG)
    formatter = JsonFormatter()
    return lambda: [formatter.format(record) for record in caplog.records]
