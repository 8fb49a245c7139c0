"""Fixtures shared by every test tier: the real Firestore emulator and per-test isolation."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.cloud import firestore
from playwright.sync_api import Browser, sync_playwright

from common.budget.escrow import escrow
from common.platform.settings import get_settings
from local import emulator
from tests.chromium import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="session", autouse=True)
def _hermetic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test sees the developer's API keys or `.env`: the offline provider answers unless a
    test points a provider at a loopback server itself. Nor the developer's local stack (of
    `raptorflow up`) or its data: the local folder is the session's own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOTENV_PATH", str(tmp_path_factory.mktemp("env") / "absent.env"))
        patch.setenv("RAPTORFLOW_LOCAL_DIR", str(tmp_path_factory.mktemp("local")))
        for name in ("OPENAI_API_KEY", "GEMINI_API_KEY", "APP_MODE"):
            patch.delenv(name, raising=False)
        get_settings.cache_clear()
        yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[emulator.FirestoreEmulator]:
    """One emulator for the whole session; tests isolate data by project id, not by resets."""
    running = emulator.start()
    previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = running.host
    yield running
    running.stop()
    if previous is None:
        os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
    else:
        os.environ["FIRESTORE_EMULATOR_HOST"] = previous


@pytest.fixture
def project_id(
    firestore_emulator: emulator.FirestoreEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[str]:
    """A fresh project id on the emulator, made the configured project for this test (with a
    vector index of its own)."""
    # A session fixture that left another stack's environment behind would send this test's
    # writes to another emulator than the one its subprocesses are given.
    assert os.environ.get("FIRESTORE_EMULATOR_HOST") == firestore_emulator.host, (
        "FIRESTORE_EMULATOR_HOST was changed by an earlier test or fixture"
    )
    project = f"test-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", project)
    get_settings.cache_clear()
    yield project
    escrow.release()  # this process's budget blocks of the test's project go back
    get_settings.cache_clear()


@pytest.fixture
def db(project_id: str) -> firestore.Client:
    """A Firestore client on this test's own project."""
    from common.platform.store import db as store_db

    return store_db(project_id)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the session (Playwright's sync API allows one driver per
    thread at a time, so every test that renders a page shares this one)."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()
