"""The process's settings are read once, and read again after `get_settings.cache_clear()`, even
when another thread was reading them as they were cleared."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from common.platform.settings import Settings, get_settings


def test_a_read_under_way_when_the_settings_are_cleared_is_not_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "before")
    monkeypatch.setenv("DOTENV_PATH", "/nonexistent/.env")
    get_settings.cache_clear()
    read, go_on = threading.Event(), threading.Event()
    real = Settings.__init__

    def held_back(self: Settings, *args: Any, **kwargs: Any) -> None:
        real(self, *args, **kwargs)
        if threading.current_thread().name == "background":
            read.set()  # it has read the environment as it was
            go_on.wait(5)

    monkeypatch.setattr(Settings, "__init__", held_back)
    seen: list[Settings] = []
    background = threading.Thread(target=lambda: seen.append(get_settings()), name="background")
    background.start()
    assert read.wait(5)

    # A test's fixture (or an operator's reload) changes the environment and clears the cache
    # while that read is under way.
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "after")
    get_settings.cache_clear()
    go_on.set()
    background.join(5)

    assert seen[0].project_id == "before"  # its caller began before the change
    assert get_settings().project_id == "after"  # everyone after the clear reads afresh
    assert get_settings() is get_settings()  # and once
    get_settings.cache_clear()
