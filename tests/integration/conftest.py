"""Fixtures for tests that run functions and the workflow against the Firestore emulator."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import flask.testing
import functions_framework
import pytest
from google.cloud import firestore

from common.models import BusinessInput
from common.platform.settings import get_settings
from common.runs import documents, lifecycle
from common.tenants.businesses import Business, save_business
from common.tenants.tiers import TierName
from local import emulator, stack

SAMPLE = Path(__file__).resolve().parents[2] / "local" / "samples" / "tidewater.json"


@pytest.fixture
def business_input() -> BusinessInput:
    return BusinessInput.model_validate(json.loads(SAMPLE.read_text()))


@pytest.fixture
def register(project_id: str) -> Callable[..., Business]:
    """Register a business on this test's project (tier and overrides as given)."""

    def _register(
        business_id: str = "tidewater-coffee", tier: TierName = "enterprise", **extra: object
    ) -> Business:
        business = Business.model_validate({"business_id": business_id, "tier": tier, **extra})
        save_business(business)
        return business

    return _register


@pytest.fixture
def new_run(register: Callable[..., Business], business_input: BusinessInput) -> Callable[..., str]:
    """Create a run document (as the backend does) and optionally start it."""

    def _new_run(start: bool = True, tier: TierName = "enterprise", **business: object) -> str:
        given = business_input.model_copy(update=business)
        register(given.business_id, tier)
        run_id = uuid.uuid4().hex
        documents.run_ref(run_id).create(documents.new_run_document(run_id, given, tier))
        if start:
            lifecycle.transition(run_id, "start")
        return run_id

    return _new_run


_APPS: dict[str, flask.Flask] = {}


@pytest.fixture
def function_client() -> Callable[[str], flask.testing.FlaskClient]:
    """A test client for one function, loaded by functions-framework from its main.py."""

    def _client(name: str) -> flask.testing.FlaskClient:
        if name not in _APPS:
            _APPS[name] = functions_framework.create_app(
                name, str(stack.FUNCTIONS_DIR / name / "main.py")
            )
        return _APPS[name].test_client()

    return _client


def document_paths(client: firestore.Client) -> set[str]:
    """Every document in the project, subcollections included."""
    paths: set[str] = set()

    def walk(collections: Iterator[firestore.CollectionReference]) -> None:
        for collection in collections:
            for doc in collection.list_documents():
                if doc.get().exists:
                    paths.add(doc.path)
                walk(doc.collections())

    walk(client.collections())
    return paths


@pytest.fixture(scope="session")
def local_stack(
    firestore_emulator: emulator.FirestoreEmulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[stack.LocalStack]:
    """Every function under functions-framework and the workflow engine, on the session's
    emulator, in one project of their own. Offline answers take 400 ms so that a test can act
    while a phase is under way, even on a busy machine."""
    project = f"e2e-{uuid.uuid4().hex[:8]}"
    running = stack.start(
        project,
        log_dir=tmp_path_factory.mktemp("stack-logs"),
        function_env={
            "OFFLINE_LATENCY_MS": "400",
            "DOTENV_PATH": "/nonexistent/.env",
        },
        firestore=firestore_emulator,
    )
    yield running
    running.stop()


@pytest.fixture
def on_stack(local_stack: stack.LocalStack, monkeypatch: pytest.MonkeyPatch) -> stack.LocalStack:
    """Point this test's backend code (Firestore, Executions API) at the local stack."""
    for name, value in local_stack.client_env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    return local_stack
