"""Executions: an in-memory store and the Executions gRPC API (executions.v1).

The service is built from the client library's own message types (proto-plus wrappers whose
`serialize`/`deserialize` speak the wire format) behind a generic gRPC handler registered at the
exact method paths, so `ExecutionsClient` drives local runs exactly as it drives Google Cloud.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.cloud.workflows.executions_v1.types import executions as ex

from .clock import Clock
from .errors import ExecutionCancelled, WorkflowError
from .limits import MAX_ARGUMENT_BYTES
from .loader import WORKFLOW_SUFFIX, load_workflow
from .runtime import Workflow, revision_id, run_workflow
from .values import encode_json

logger = logging.getLogger("workflows.engine.executions")

SERVICE = "google.cloud.workflows.executions.v1.Executions"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_WORKFLOW_NAME = re.compile(r"^projects/([^/]+)/locations/([^/]+)/workflows/([^/]+)$")
_EXECUTION_NAME = re.compile(
    r"^(projects/[^/]+/locations/[^/]+/workflows/[^/]+)/executions/([^/]+)$"
)
_STATE_FILTER = re.compile(r'^\s*state\s*=\s*"?([A-Z_]+)"?\s*$')
State = ex.Execution.State


class RequestError(Exception):
    """A request the API rejects, with the gRPC status Google would answer."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class ExecutionRecord:
    """One execution as the store keeps it."""

    name: str
    workflow: Workflow
    revision: str
    argument: str
    start_time: dt.datetime
    state: Any = State.ACTIVE
    result: str = ""
    error: WorkflowError | None = None
    end_time: dt.datetime | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    def to_message(self, full: bool) -> ex.Execution:
        message = ex.Execution(
            name=self.name,
            start_time=self.start_time,
            state=self.state,
            workflow_revision_id=self.revision,
        )
        if self.end_time is not None:
            message.end_time = self.end_time
            message.duration = self.end_time - self.start_time
        if full:
            message.argument = self.argument
            message.result = self.result
            if self.error is not None:
                message.error = _error_message(self.error)
        return message


def _error_message(error: WorkflowError) -> ex.Execution.Error:
    elements = [
        ex.Execution.StackTraceElement(
            step=frame.step,
            routine=frame.routine,
            position=ex.Execution.StackTraceElement.Position(line=frame.line),
        )
        for frame in error.stack
    ]
    return ex.Execution.Error(
        payload=error.payload,
        context=error.context,
        stack_trace=ex.Execution.StackTrace(elements=elements),
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ExecutionStore:
    """Executions of a set of workflows, each run in its own background thread."""

    def __init__(
        self,
        workflows: Mapping[str, Workflow],
        *,
        env: Mapping[str, str],
        project: str,
        location: str,
        clock: Clock | None = None,
    ) -> None:
        self.workflows = dict(workflows)
        self.env = dict(env)
        self.project = project
        self.location = location
        self.clock = clock
        self._records: dict[str, ExecutionRecord] = {}
        self._lock = threading.Lock()

    def workflow_name(self, workflow_id: str) -> str:
        return f"projects/{self.project}/locations/{self.location}/workflows/{workflow_id}"

    def _workflow(self, parent: str) -> tuple[str, Workflow]:
        match = _WORKFLOW_NAME.match(parent)
        if match is None:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"invalid parent {parent!r}: expected projects/*/locations/*/workflows/*",
            )
        project, location, workflow_id = match.groups()
        known = (project, location) == (self.project, self.location)
        if not known or workflow_id not in self.workflows:
            raise RequestError(grpc.StatusCode.NOT_FOUND, f"Resource '{parent}' was not found")
        return workflow_id, self.workflows[workflow_id]

    def create(self, parent: str, argument: str) -> ExecutionRecord:
        """Start an execution of the workflow named by `parent`."""
        _, workflow = self._workflow(parent)
        if len(argument.encode()) > MAX_ARGUMENT_BYTES:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"argument exceeds the limit of {MAX_ARGUMENT_BYTES} bytes",
            )
        try:
            value = json.loads(argument) if argument.strip() else None
        except ValueError as exc:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT, f"argument is not valid JSON: {exc}"
            ) from None
        execution_id = str(uuid.uuid4())
        record = ExecutionRecord(
            name=f"{parent}/executions/{execution_id}",
            workflow=workflow,
            revision=revision_id(workflow),
            argument=argument,
            start_time=_now(),
        )
        with self._lock:
            self._records[record.name] = record
        thread = threading.Thread(
            target=self._run, args=(record, value, execution_id), name=f"execution-{execution_id}"
        )
        thread.daemon = True
        thread.start()
        return record

    def _run(self, record: ExecutionRecord, argument: Any, execution_id: str) -> None:
        fields = {"execution": record.name}
        logger.info("execution started", extra={"json_fields": fields})
        state, result, error = State.SUCCEEDED, "", None
        try:
            value = run_workflow(
                record.workflow,
                argument,
                env=self.env,
                clock=self.clock,
                cancel=record.cancel,
                execution_id=execution_id,
                project=self.project,
                location=self.location,
            )
            result = encode_json(value)
        except WorkflowError as exc:
            state, error = State.FAILED, exc
        except ExecutionCancelled:
            state = State.CANCELLED
        except Exception as exc:  # a bug in the engine must still end the execution visibly
            logger.exception("engine failure", extra={"json_fields": fields})
            state = State.FAILED
            error = WorkflowError({"message": repr(exc), "tags": ["SystemError"]}, [])
        with self._lock:
            if record.state == State.ACTIVE:
                record.state, record.result, record.error = state, result, error
                record.end_time = _now()
        record.done.set()
        logger.info(
            "execution finished",
            extra={"json_fields": {**fields, "state": State(record.state).name}},
        )

    def get(self, name: str) -> ExecutionRecord:
        if _EXECUTION_NAME.match(name) is None:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid execution name {name!r}")
        with self._lock:
            record = self._records.get(name)
        if record is None:
            raise RequestError(grpc.StatusCode.NOT_FOUND, f"Resource '{name}' was not found")
        return record

    def list(self, parent: str, filter_: str, order_by: str) -> list[ExecutionRecord]:
        """Executions of a workflow, newest first unless `order_by` says otherwise."""
        self._workflow(parent)
        with self._lock:
            records = [r for r in self._records.values() if r.name.startswith(parent + "/")]
        if filter_:
            match = _STATE_FILTER.match(filter_)
            if match is None or match.group(1) not in State.__members__:
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f'unsupported filter {filter_!r}: the local engine supports state="STATE"',
                )
            wanted = State.__members__[match.group(1)]
            records = [r for r in records if r.state == wanted]
        order = order_by.strip()
        if order not in ("", "createTime", "createTime desc", "startTime", "startTime desc"):
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"unsupported orderBy {order!r}")
        descending = order in ("", "createTime desc", "startTime desc")
        return sorted(records, key=lambda r: r.start_time, reverse=descending)

    def cancel(self, name: str) -> ExecutionRecord:
        record = self.get(name)
        with self._lock:
            if record.state != State.ACTIVE:
                raise RequestError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"execution {name} is not active (state {State(record.state).name})",
                )
            record.state = State.CANCELLED
            record.end_time = _now()
        record.cancel.set()
        return record

    def cancel_all(self) -> None:
        with self._lock:
            records = list(self._records.values())
        for record in records:
            record.cancel.set()


def _handler(
    method: Callable[[Any], Any], request_type: Any, response_type: Any
) -> grpc.RpcMethodHandler:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(request)
        except RequestError as exc:
            context.abort(exc.code, str(exc))

    return grpc.unary_unary_rpc_method_handler(
        handle,
        request_deserializer=request_type.deserialize,
        response_serializer=response_type.serialize,
    )


class ExecutionsServer:
    """A running Executions API on 127.0.0.1.

    Attributes:
        port: The bound port.
        address: "127.0.0.1:PORT", for `grpc.insecure_channel`.
        store: The executions it holds.
    """

    def __init__(self, store: ExecutionStore, port: int = 0) -> None:
        self.store = store
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handlers = {
            "CreateExecution": _handler(self._create, ex.CreateExecutionRequest, ex.Execution),
            "GetExecution": _handler(self._get, ex.GetExecutionRequest, ex.Execution),
            "ListExecutions": _handler(
                self._list, ex.ListExecutionsRequest, ex.ListExecutionsResponse
            ),
            "CancelExecution": _handler(self._cancel, ex.CancelExecutionRequest, ex.Execution),
        }
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers),)
        )
        self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")
        if self.port == 0:
            raise OSError(f"cannot bind 127.0.0.1:{port}")
        self.address = f"127.0.0.1:{self.port}"
        self._server.start()

    def _create(self, request: ex.CreateExecutionRequest) -> ex.Execution:
        record = self.store.create(request.parent, request.execution.argument)
        return record.to_message(full=True)

    def _get(self, request: ex.GetExecutionRequest) -> ex.Execution:
        basic = request.view == ex.ExecutionView.BASIC
        return self.store.get(request.name).to_message(full=not basic)

    def _list(self, request: ex.ListExecutionsRequest) -> ex.ListExecutionsResponse:
        records = self.store.list(request.parent, request.filter, request.order_by)
        size = request.page_size or DEFAULT_PAGE_SIZE
        if size < 0:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "page_size must be positive")
        size = min(size, MAX_PAGE_SIZE)
        token = request.page_token
        if token and not token.isdigit():
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid page_token {token!r}")
        start = int(token or 0)
        page = records[start : start + size]
        full = request.view == ex.ExecutionView.FULL
        return ex.ListExecutionsResponse(
            executions=[r.to_message(full=full) for r in page],
            next_page_token=str(start + size) if start + size < len(records) else "",
        )

    def _cancel(self, request: ex.CancelExecutionRequest) -> ex.Execution:
        return self.store.cancel(request.name).to_message(full=True)

    def stop(self, grace: float | None = None) -> None:
        """Cancel running executions and stop serving."""
        self.store.cancel_all()
        self._server.stop(grace).wait()


def serve(
    folder: Path,
    *,
    port: int = 0,
    env: Mapping[str, str],
    project: str,
    location: str,
    clock: Clock | None = None,
) -> ExecutionsServer:
    """Serve every `*.workflows.yaml` in `folder` over the Executions gRPC API on 127.0.0.1.

    Each file is a workflow whose id is its name without `.workflows.yaml`. All files are loaded
    and validated first; an invalid one raises WorkflowSyntaxError and nothing is served.

    Args:
        folder: Directory holding the workflow files.
        port: Port to bind (0 picks a free one; see `.port`).
        env: The variables `sys.get_env` sees (like `user_env_vars`).
        project: Project id in resource names and GOOGLE_CLOUD_PROJECT_ID.
        location: Location in resource names and GOOGLE_CLOUD_LOCATION.
        clock: Time source for the executions (default: real time).
    """
    paths = sorted(folder.glob(f"*{WORKFLOW_SUFFIX}"))
    workflows = {}
    for path in paths:
        workflow = load_workflow(path)
        workflows[workflow.name] = workflow
    store = ExecutionStore(workflows, env=env, project=project, location=location, clock=clock)
    return ExecutionsServer(store, port)
