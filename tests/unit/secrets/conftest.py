"""Hermetic secrets: no developer `.env`, no real keys from the environment, fresh settings."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from common.platform import secrets
from common.platform.log import JsonFormatter
from common.platform.settings import Settings, get_settings


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def hermetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point `.env` at an empty temp file's place and hide any real key in the environment."""
    for name in secrets.KNOWN_SECRETS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("APP_MODE", raising=False)
    dotenv = tmp_path / "secrets.env"
    monkeypatch.setenv("DOTENV_PATH", str(dotenv))
    get_settings.cache_clear()
    yield dotenv
    get_settings.cache_clear()


@pytest.fixture
def make_settings(hermetic: Path) -> Callable[..., Settings]:
    """Settings from arguments only (never the working directory's `.env`)."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"dotenv_path": hermetic}
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return make


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def log_lines(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """Every record of every logger, at DEBUG, as the JSON line production would write."""
    caplog.set_level(logging.DEBUG)
    formatter = JsonFormatter()

    def lines() -> list[str]:
        return [formatter.format(record) for record in caplog.records]

    return lines
