"""A whole run in production mode: keys come from Secret Manager (a loopback gRPC server speaking
its API) and go to an OpenAI-compatible server (loopback); no key may appear in any log line,
Firestore document, workflow argument or workflow result."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.cloud import firestore

from common.analysis import launch
from common.models import BusinessInput
from common.platform.settings import get_settings
from common.runs import documents, events, executions
from common.tenants.businesses import Business, save_business
from local import emulator, stack
from tests.integration.conftest import document_paths
from tests.protocol.gcp.loopback import FakeSecretManager, LoopbackServer
from tests.protocol.llm.servers import SchemaAnsweringOpenAI


@pytest.fixture
def openai_server() -> Iterator[SchemaAnsweringOpenAI]:
    server = SchemaAnsweringOpenAI().start()
    yield server
    server.stop()


@pytest.mark.emulator
def test_no_secret_appears_in_logs_documents_or_workflow_data(
    firestore_emulator: emulator.FirestoreEmulator,
    openai_server: SchemaAnsweringOpenAI,
    business_input: BusinessInput,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = f"leak-{uuid.uuid4().hex[:8]}"
    keys = {
        "OPENAI_API_KEY": f"sk-proj-{secrets.token_urlsafe(32)}",
        "GEMINI_API_KEY": f"AIzaSy{secrets.token_urlsafe(24)}",
    }
    secret_manager = FakeSecretManager()
    grpc_server = LoopbackServer()
    secret_manager.register(grpc_server)
    grpc_server.start()
    for name, value in keys.items():
        secret_manager.add_version(project, name, value.encode())
    logs = tmp_path / "logs"
    local = stack.start(
        project,
        log_dir=logs,
        firestore=firestore_emulator,
        function_env={
            "APP_MODE": "production",
            "SECRET_MANAGER_ENDPOINT": grpc_server.endpoint,
            "OPENAI_BASE_URL": openai_server.base_url,
            "DOTENV_PATH": str(tmp_path / "absent.env"),
        },
    )
    try:
        for name, value in local.client_env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        save_business(Business(business_id=business_input.business_id, tier="enterprise"))
        run_id = launch.start_run(business_input)
        final = documents.watch(run_id, lambda _run: None, timeout=120)
        execution = executions.executions_client().get_execution(name=final.execution)
    finally:
        local.stop()
        grpc_server.stop()

    # The keys were really used: fetched from Secret Manager, sent to the provider.
    assert final.status == "succeeded" and final.providers_used == ["openai"]
    assert {request.name.split("/")[3] for request in secret_manager.requests} >= set(keys)
    authorizations = {request.headers["authorization"] for request in openai_server.requests}
    assert authorizations == {f"Bearer {keys['OPENAI_API_KEY']}"}

    places: dict[str, str] = {path.name: path.read_text() for path in logs.glob("*.log")}
    client = firestore.Client(project=project)
    for path in document_paths(client):
        places[path] = json.dumps(client.document(path).get().to_dict(), default=str)
    places["workflow argument"] = execution.argument
    places["workflow result"] = execution.result
    places["events"] = json.dumps(events.events(run_id), default=str)
    assert len(places) > 50  # logs of every function, every document of the run
    for name, value in keys.items():
        leaks = [place for place, text in places.items() if value in text]
        assert leaks == [], f"{name} leaked into {leaks}"
