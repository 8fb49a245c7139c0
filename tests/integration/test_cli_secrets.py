"""A provider that quotes the API key back in its error (issue 13, finding 6): in production
mode (keys from Secret Manager, a loopback gRPC server speaking its API), OpenAI and Gemini
endpoints on loopback refuse every call and quote the key they got, whole and masked as OpenAI
does ("Incorrect API key provided: sk-proj-****...wxyz"). The run fails at once (a refused key
is not retried) and says why; neither the key nor a masked form of it appears in any function
answer, stored document, event, workflow argument, result or error, log line, or CLI output."""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from google.cloud import firestore

from common.models import BusinessInput
from common.platform.settings import get_settings
from common.runs import documents, events, executions, lifecycle
from common.tenants.businesses import Business, save_business
from local import emulator, stack
from local.cli import main
from tests.integration.conftest import document_paths
from tests.protocol.gcp.loopback import FakeSecretManager, LoopbackServer
from tests.protocol.llm.servers import QuietHandler, serve

pytestmark = pytest.mark.emulator


def masked(key: str) -> str:
    """OpenAI's masked form of a key in its 401: the first 8 characters, stars, the last 4
    (e.g. https://github.com/chatanywhere/GPT_API_free/issues/62)."""
    return f"{key[:8]}{'*' * 39}{key[-4:]}"


class KeyQuotingProviders:
    """OpenAI Chat Completions and Gemini generateContent on 127.0.0.1, refusing every request
    with an error that quotes the key the request carried."""

    def __init__(self) -> None:
        self.keys_seen: list[str] = []
        providers = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                bearer = self.headers.get("Authorization", "").removeprefix("Bearer ")
                key = bearer or self.headers.get("x-goog-api-key", "")
                providers.keys_seen.append(key)
                body: dict[str, Any]
                if bearer:  # OpenAI: https://platform.openai.com/docs/guides/error-codes
                    status, body = (
                        401,
                        {
                            "error": {
                                "message": f"Incorrect API key provided: {masked(key)}. You can "
                                "find your API key at https://platform.openai.com/account/api-keys."
                                f" (proxy: got {key}, ending ...{key[-4:]})",
                                "type": "invalid_request_error",
                                "param": None,
                                "code": "invalid_api_key",
                            }
                        },
                    )
                else:  # Gemini: https://ai.google.dev/gemini-api/docs/troubleshooting
                    status, body = (
                        400,
                        {
                            "error": {
                                "code": 400,
                                "message": f"API key not valid. Please pass a valid key. ({key})",
                                "status": "INVALID_ARGUMENT",
                                "details": [
                                    {
                                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                        "reason": "API_KEY_INVALID",
                                        "domain": "googleapis.com",
                                    }
                                ],
                            }
                        },
                    )
                self.send_json(status, body)

        self.server = serve(Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def providers() -> Iterator[KeyQuotingProviders]:
    running = KeyQuotingProviders()
    yield running
    running.server.shutdown()


def test_a_key_quoted_by_a_provider_appears_nowhere(
    firestore_emulator: emulator.FirestoreEmulator,
    providers: KeyQuotingProviders,
    business_input: BusinessInput,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = f"quote-{uuid.uuid4().hex[:8]}"
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
            "OPENAI_BASE_URL": f"{providers.url}/v1",
            "GEMINI_BASE_URL": providers.url,
            "LLM_CIRCUIT_COOLDOWN_SECONDS": "0",  # every call asks the providers
            "DOTENV_PATH": str(tmp_path / "absent.env"),
        },
    )
    monkeypatch.chdir(tmp_path)
    places: dict[str, str] = {}
    try:
        for name, value in local.client_env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        save_business(Business(business_id=business_input.business_id, tier="enterprise"))
        path = tmp_path / "business.json"
        path.write_text(business_input.model_dump_json())

        assert main(["run", str(path)]) == 1
        out = capsys.readouterr()
        run_id = out.out.split("Run ")[1].split(" ")[0]
        places["cli run"] = out.out + out.err
        for args in (["status", run_id], ["status", run_id, "--json"], ["watch", run_id]):
            main(args)
            captured = capsys.readouterr()
            places[f"cli {' '.join(args[::2])}"] = captured.out + captured.err

        # A function's answer itself: the research phase of another run, asked directly.
        other = uuid.uuid4().hex
        documents.run_ref(other).create(
            documents.new_run_document(other, business_input, "enterprise")
        )
        lifecycle.transition(other, "start")
        answer = requests.post(local.functions["research"].url, json={"run_id": other}, timeout=60)
        places["research answer"] = answer.text

        final = documents.get_run(run_id)
        execution = executions.executions_client().get_execution(name=final.execution)
    finally:
        local.stop()
        grpc_server.stop()

    # The keys were really used and really quoted back; the run failed at once, saying why.
    assert set(providers.keys_seen) == set(keys.values())
    assert final.status == "failed" and final.error is not None
    assert final.error.startswith("research failed: all providers failed: openai/")
    assert "auth_failed" in final.error and "providers_refused_key" in final.error
    assert "[REDACTED]" in final.error
    assert answer.status_code == 500 and answer.json()["error"]["code"] == "providers_refused_key"
    assert "providers_refused_key" in execution.error.payload  # the answers' bodies are in it

    places.update({path.name: path.read_text() for path in logs.glob("*.log")})
    client = firestore.Client(project=project)
    for doc in document_paths(client):
        places[doc] = json.dumps(client.document(doc).get().to_dict(), default=str)
    places["workflow argument"] = execution.argument
    places["workflow result"] = execution.result
    places["workflow error"] = f"{execution.error.payload} {execution.error.context}"
    places["events"] = json.dumps(events.events(run_id), default=str)
    places["export"] = (tmp_path / ".local" / "runs" / f"{run_id}.json").read_text()
    assert len(places) > 20
    for name, key in keys.items():
        forms = {
            "the key": key,
            "its masked form": masked(key),
            "its first 12 characters": key[:12],
            "its last 8 characters": key[-8:],
        }
        for form, text in forms.items():
            leaks = [place for place, found in places.items() if text in found]
            assert leaks == [], f"{form} of {name} is in {leaks}"
        tail = re.compile(r"(\*{3}|\.{3}|…)" + re.escape(key[-4:]))
        assert [place for place, found in places.items() if tail.search(found)] == []
