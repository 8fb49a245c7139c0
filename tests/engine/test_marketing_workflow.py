"""The deployed workflow under continueAll, run by the engine against loopback stand-ins.

Every function the YAML calls is a route of one loopback HTTP server that records each request
and answers what the test scripted. Parallel steps follow Workflows' only exception policy,
continueAll: a failing branch lets the other branch run its phase to the end, then the step
raises UnhandledBranchError (https://cloud.google.com/workflows/docs/reference/syntax/parallel-steps).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from common.platform.settings import Settings
from workflows.engine import VirtualClock, WorkflowError, load_workflow, run_workflow

WORKFLOW = Path(__file__).resolve().parents[2] / "workflows" / "marketing_analysis.workflows.yaml"
RUN_ID = "run-1"


@dataclass
class Answer:
    code: int
    body: Any
    delay: float = 0.0  # seconds before answering


@dataclass
class Script:
    """What each route answers, and every request it answered, in order."""

    answers: dict[tuple[str, str | None], Answer] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, route: str, body: dict[str, Any]) -> Answer:
        # A route may answer per phase; the others answer the same to every request.
        for key in ((route, body.get("phase")), (route, None)):
            if key in self.answers:
                return self.answers[key]
        if route == "lifecycle":
            return Answer(200, {"run_id": RUN_ID, "status": body["transition"]})
        return Answer(200, {"ok": True, "route": route})

    def routes(self) -> list[str]:
        with self.lock:
            return [route for route, _ in self.calls]

    def bodies(self, route: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for r, body in self.calls if r == route]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    script: ClassVar[Script]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        route = self.path.strip("/")
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer = self.script.answer(route, body)
        time.sleep(answer.delay)
        data = json.dumps(answer.body).encode()
        # Recorded as it answers, before the reply leaves: a workflow that has the reply (and
        # may end at once) finds the call recorded.
        with self.script.lock:
            self.script.calls.append((route, body))
        self.send_response(answer.code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def functions() -> Iterator[tuple[Script, dict[str, str]]]:
    """A scripted stand-in for every function, and the URL variables the workflow reads."""
    script = Script()
    handler = type("Handler", (_Handler,), {"script": script})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    variables = set(re.findall(r'sys\.get_env\("([A-Z_]+)_URL"\)', WORKFLOW.read_text()))
    env = {f"{name}_URL": f"{base}/{name.lower()}" for name in variables}
    env["FUNCTION_CALL_TIMEOUT"] = str(Settings(_env_file=None).workflow_call_timeout_seconds)
    yield script, env
    server.shutdown()
    server.server_close()


def run(env: dict[str, str]) -> Any:
    return run_workflow(load_workflow(WORKFLOW), {"run_id": RUN_ID}, env=env, clock=VirtualClock())


def test_a_failing_branch_lets_the_other_phase_finish_then_the_run_fails_naming_it(
    functions: tuple[Script, dict[str, str]],
) -> None:
    script, env = functions
    script.answers[("icps", None)] = Answer(500, {"error": {"code": "internal", "message": "x"}})
    # strategy is slow, so icps has failed long before strategy answers.
    script.answers[("strategy", None)] = Answer(200, {"ok": True}, delay=0.3)

    with pytest.raises(WorkflowError) as failure:
        run(env)

    assert failure.value.tags == ["UnhandledBranchError"]
    routes = script.routes()
    assert routes.count("icps") == 1  # a 500 is not retried
    assert routes.count("strategy") == 1  # the other branch still ran its phase
    assert routes.index("strategy") > routes.index("icps")
    assert "content" not in routes and "analytics" not in routes
    transitions = [b["transition"] for b in script.bodies("lifecycle")]
    assert transitions == ["start", "fail"]
    fail = script.bodies("lifecycle")[-1]
    assert fail["reason"] == "workflow_error"
    assert fail["message"].startswith('failed in ["icps"]: ')


def test_a_budget_stop_in_one_branch_lets_the_other_finish_and_ends_budget_exceeded(
    functions: tuple[Script, dict[str, str]],
) -> None:
    script, env = functions
    refused = {"error": {"code": "daily_budget_exceeded", "message": "daily budget spent"}}
    script.answers[("strategy", None)] = Answer(402, refused)  # its budget check refused it
    script.answers[("icps", None)] = Answer(200, {"ok": True}, delay=0.3)

    summary = run(env)

    routes = script.routes()
    assert routes.count("icps") == 1 and routes.count("strategy") == 1
    assert "content" not in routes and "analytics" not in routes
    stop = script.bodies("lifecycle")[-1]
    assert [b["transition"] for b in script.bodies("lifecycle")] == ["start", "budget_exceeded"]
    assert (stop["reason"], stop["message"]) == ("daily_budget_exceeded", "daily budget spent")
    assert summary == {"run_id": RUN_ID, "status": "budget_exceeded"}


def test_a_sequential_phase_failure_names_its_phase(
    functions: tuple[Script, dict[str, str]],
) -> None:
    script, env = functions
    script.answers[("research", None)] = Answer(404, {"error": {"code": "not_found"}})

    with pytest.raises(WorkflowError) as failure:
        run(env)

    assert failure.value.error["code"] == 404
    assert failure.value.error["phase"] == "research"
    assert script.bodies("lifecycle")[-1]["message"].startswith('failed in ["research"]: ')
