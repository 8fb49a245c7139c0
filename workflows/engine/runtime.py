"""Workflows and subworkflows: binding arguments, calling, and running an execution."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .clock import CancelToken, Clock, SystemClock
from .errors import RECURSION_ERROR, TYPE_ERROR, Raised, WorkflowError, raised
from .limits import MAX_ARGUMENT_BYTES, MAX_CALL_DEPTH, MAX_RESULT_BYTES
from .scope import Context, Scope
from .steps import Block, Return, run_block
from .values import check_size, to_json_value

REQUIRED_PARAM = object()


@dataclass
class Subworkflow:
    name: str
    params: list[tuple[str, Any]]
    body: Block

    def bind(self, positional: list[Any], named: dict[str, Any]) -> dict[str, Any]:
        if len(positional) > len(self.params):
            raise raised(
                TYPE_ERROR,
                f"{self.name}() takes {len(self.params)} arguments, got {len(positional)}",
            )
        values: dict[str, Any] = {}
        for i, (param, default) in enumerate(self.params):
            if i < len(positional):
                values[param] = positional[i]
            elif param in named:
                values[param] = named[param]
            elif default is not REQUIRED_PARAM:
                values[param] = default
            else:
                raise raised(TYPE_ERROR, f"{self.name}: missing required argument '{param}'")
        unknown = set(named) - {p for p, _ in self.params}
        if unknown:
            raise raised(TYPE_ERROR, f"{self.name}: unexpected argument(s) {sorted(unknown)}")
        return values


def call_subworkflow(
    sub: Subworkflow, ctx: Context, positional: list[Any], named: dict[str, Any] | None = None
) -> Any:
    """Run a subworkflow with its own variables and return what it returns (null if nothing)."""
    if ctx.depth >= MAX_CALL_DEPTH:
        raise raised(RECURSION_ERROR, f"maximum call stack depth {MAX_CALL_DEPTH} exceeded")
    scope = Scope(ctx.derive(routine=sub.name, depth=ctx.depth + 1))
    try:
        for name, value in sub.bind(positional, named or {}).items():
            scope.define(name, value)
        signal = run_block(sub.body, scope)
    finally:
        scope.release()
    return signal.value if isinstance(signal, Return) else None


@dataclass
class Workflow:
    """A loaded, validated workflow definition."""

    name: str
    source: str
    subworkflows: dict[str, Subworkflow]


# No project number exists locally; this one is all zeros so it cannot be mistaken for a real one.
LOCAL_PROJECT_NUMBER = "000000000000"


def local_service_account(project: str) -> str:
    """The stand-in for the execution's service account (none exists locally)."""
    return f"workflows-local@{project}.iam.gserviceaccount.com"


def revision_id(workflow: Workflow) -> str:
    """A revision id in Workflows' shape ("000001-abc"), stable for the same definition."""
    return "000001-" + uuid.uuid5(uuid.NAMESPACE_URL, workflow.source).hex[:3]


def run_workflow(
    workflow: Workflow,
    argument: Any = None,
    *,
    env: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    cancel: threading.Event | None = None,
    execution_id: str | None = None,
    project: str = "local-project",
    location: str = "us-central1",
) -> Any:
    """Run a workflow to completion in the calling thread.

    Args:
        workflow: From `load_workflow` or `parse_workflow`.
        argument: The execution argument (bound to `main`'s parameter), JSON-compatible.
        env: Exactly the variables `sys.get_env` sees, like Workflows' `user_env_vars`; the
            process environment is never consulted. The built-in GOOGLE_CLOUD_* variables
            are added.
        clock: Time source for `sys.now`, sleeps and retry backoff (default: real time).
        cancel: Set it to stop the execution between steps, during sleeps and retry delays.
        execution_id: Id reported by `sys.get_env("GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID")`.
        project: Reported as GOOGLE_CLOUD_PROJECT_ID.
        location: Reported as GOOGLE_CLOUD_LOCATION.

    Returns:
        What `main` returns (null when it ends without `return`).

    Raises:
        WorkflowError: The execution failed; `.error` is the Workflows error value.
        ExecutionCancelled: `cancel` was set before the execution finished.
    """
    full_env = dict(env or {})
    # The built-in variables of https://cloud.google.com/workflows/docs/reference/stdlib/sys/get_env;
    # the project number and service account are local stand-ins (see LOCAL_PROJECT_NUMBER).
    full_env.update(
        {
            "GOOGLE_CLOUD_PROJECT_ID": project,
            "GOOGLE_CLOUD_PROJECT_NUMBER": LOCAL_PROJECT_NUMBER,
            "GOOGLE_CLOUD_LOCATION": location,
            "GOOGLE_CLOUD_SERVICE_ACCOUNT_NAME": local_service_account(project),
            "GOOGLE_CLOUD_WORKFLOW_ID": workflow.name,
            "GOOGLE_CLOUD_WORKFLOW_REVISION_ID": revision_id(workflow),
            "GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID": execution_id or str(uuid.uuid4()),
        }
    )
    token = CancelToken(event=cancel)
    ctx = Context(full_env, clock or SystemClock(), token)
    main = workflow.subworkflows["main"]
    try:
        check_size(argument, MAX_ARGUMENT_BYTES, "argument")
        scope = Scope(ctx)
        if main.params:
            scope.define(main.params[0][0], argument)
        signal = run_block(main.body, scope)
        result = signal.value if isinstance(signal, Return) else None
        result = to_json_value(result, "result")
        check_size(result, MAX_RESULT_BYTES, "result")
        return result
    except Raised as exc:
        raise WorkflowError(exc.value, exc.stack) from None
