"""The Executions gRPC API driven by google-cloud-workflows' own ExecutionsClient over loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.api_core import exceptions
from google.cloud.workflows.executions_v1 import ExecutionsClient
from google.cloud.workflows.executions_v1.services.executions.transports import (
    ExecutionsGrpcTransport,
)
from google.cloud.workflows.executions_v1.types import Execution, ExecutionView

from workflows.engine import ExecutionsServer, WorkflowSyntaxError, serve

PROJECT, LOCATION = "demo-project", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}/workflows"
WAIT_SECONDS = 10.0

ECHO = """
main:
  params: [args]
  steps:
    - r:
        return:
          got: ${args}
          env: ${sys.get_env("FUNCTION_URL")}
          workflow: ${sys.get_env("GOOGLE_CLOUD_WORKFLOW_ID")}
          project: ${sys.get_env("GOOGLE_CLOUD_PROJECT_ID")}
"""
FAIL = """
main:
  steps:
    - prepare:
        assign:
          - n: 1
    - explode:
        raise:
          code: 42
          message: planned failure
"""
SLEEPY = """
- nap:
    call: sys.sleep
    args:
      seconds: 3600
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExecutionsServer]:
    folder = tmp_path_factory.mktemp("wf")
    (folder / "echo.workflows.yaml").write_text(ECHO)
    (folder / "fail.workflows.yaml").write_text(FAIL)
    (folder / "sleepy.workflows.yaml").write_text(SLEEPY)
    (folder / "notes.txt").write_text("not a workflow")
    running = serve(
        folder, env={"FUNCTION_URL": "http://fn.local"}, project=PROJECT, location=LOCATION
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: ExecutionsServer) -> ExecutionsClient:
    channel = grpc.insecure_channel(server.address)
    return ExecutionsClient(transport=ExecutionsGrpcTransport(channel=channel))


def wait_done(client: ExecutionsClient, name: str) -> Execution:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        execution = client.get_execution(name=name)
        if execution.state != Execution.State.ACTIVE or time.monotonic() > deadline:
            return execution
        time.sleep(0.02)


def test_server_address(server: ExecutionsServer) -> None:
    assert server.address == f"127.0.0.1:{server.port}"


def test_create_and_poll_to_success(client: ExecutionsClient) -> None:
    created = client.create_execution(
        parent=f"{PARENT}/echo", execution=Execution(argument=json.dumps({"run_id": "r1"}))
    )
    assert created.name.startswith(f"{PARENT}/echo/executions/")
    assert created.argument == '{"run_id": "r1"}'
    done = wait_done(client, created.name)
    assert done.state == Execution.State.SUCCEEDED
    assert json.loads(done.result) == {
        "got": {"run_id": "r1"},
        "env": "http://fn.local",
        "workflow": "echo",
        "project": PROJECT,
    }
    assert done.end_time >= done.start_time
    assert done.duration.total_seconds() >= 0


def test_failed_execution_reports_payload_and_stack(client: ExecutionsClient) -> None:
    created = client.create_execution(parent=f"{PARENT}/fail", execution=Execution())
    done = wait_done(client, created.name)
    assert done.state == Execution.State.FAILED
    assert json.loads(done.error.payload) == {"code": 42, "message": "planned failure"}
    assert 'in step "explode", routine "main", line: 7' in done.error.context
    element = done.error.stack_trace.elements[0]
    assert (element.step, element.routine, element.position.line) == ("explode", "main", 7)


def test_list_newest_first_with_basic_view(client: ExecutionsClient) -> None:
    first = client.create_execution(parent=f"{PARENT}/echo", execution=Execution(argument="1"))
    second = client.create_execution(parent=f"{PARENT}/echo", execution=Execution(argument="2"))
    wait_done(client, first.name)
    wait_done(client, second.name)
    listed = list(client.list_executions(parent=f"{PARENT}/echo"))
    names = [e.name for e in listed]
    assert names.index(second.name) < names.index(first.name)
    assert all(e.argument == "" for e in listed)  # BASIC view is the default for List
    full = client.list_executions(request={"parent": f"{PARENT}/echo", "view": ExecutionView.FULL})
    assert {e.argument for e in full} >= {"1", "2"}


def test_list_pages(client: ExecutionsClient) -> None:
    for i in range(3):
        client.create_execution(parent=f"{PARENT}/echo", execution=Execution(argument=str(i)))
    pager = client.list_executions(request={"parent": f"{PARENT}/echo", "page_size": 2})
    pages = list(pager.pages)
    assert len(pages) >= 2
    assert all(len(page.executions) <= 2 for page in pages)


def test_cancel_an_active_execution(client: ExecutionsClient) -> None:
    created = client.create_execution(parent=f"{PARENT}/sleepy", execution=Execution())
    assert client.get_execution(name=created.name).state == Execution.State.ACTIVE
    cancelled = client.cancel_execution(name=created.name)
    assert cancelled.state == Execution.State.CANCELLED
    assert wait_done(client, created.name).state == Execution.State.CANCELLED
    with pytest.raises(exceptions.FailedPrecondition):
        client.cancel_execution(name=created.name)


def test_unknown_workflow_is_not_found(client: ExecutionsClient) -> None:
    with pytest.raises(exceptions.NotFound):
        client.create_execution(parent=f"{PARENT}/nope", execution=Execution())
    with pytest.raises(exceptions.NotFound):
        client.create_execution(
            parent=f"projects/other/locations/{LOCATION}/workflows/echo", execution=Execution()
        )
    with pytest.raises(exceptions.NotFound):
        client.get_execution(name=f"{PARENT}/echo/executions/does-not-exist")


def test_bad_argument_json_is_invalid_argument(client: ExecutionsClient) -> None:
    with pytest.raises(exceptions.InvalidArgument) as info:
        client.create_execution(parent=f"{PARENT}/echo", execution=Execution(argument="{bad"))
    assert "argument is not valid JSON" in str(info.value)


def test_oversized_argument_is_invalid_argument(client: ExecutionsClient) -> None:
    big = json.dumps({"blob": "x" * 40_000})
    with pytest.raises(exceptions.InvalidArgument):
        client.create_execution(parent=f"{PARENT}/echo", execution=Execution(argument=big))


def test_invalid_workflow_file_is_refused_before_serving(tmp_path: Path) -> None:
    (tmp_path / "broken.workflows.yaml").write_text("- a:\n    bogus: 1\n")
    with pytest.raises(WorkflowSyntaxError) as info:
        serve(tmp_path, env={}, project=PROJECT, location=LOCATION)
    assert "broken.workflows.yaml:1: step 'a'" in str(info.value)
