"""Errors raised by the engine: load-time syntax errors and run-time workflow errors.

Run-time errors carry a Workflows error value (usually a map with `message` and `tags`, exactly what
`except: as: e` binds), so a workflow's error handling behaves as it does on Google Cloud.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Tags documented in Workflows' "Error types" reference.
AUTH_ERROR = "AuthError"
CONNECTION_ERROR = "ConnectionError"
CONNECTION_FAILED_ERROR = "ConnectionFailedError"
HTTP_ERROR = "HttpError"
INDEX_ERROR = "IndexError"
KEY_ERROR = "KeyError"
PARALLEL_NESTING_ERROR = "ParallelNestingError"
RECURSION_ERROR = "RecursionError"
RESOURCE_LIMIT_ERROR = "ResourceLimitError"
SYSTEM_ERROR = "SystemError"
TIMEOUT_ERROR = "TimeoutError"
TYPE_ERROR = "TypeError"
UNHANDLED_BRANCH_ERROR = "UnhandledBranchError"
VALUE_ERROR = "ValueError"
ZERO_DIVISION_ERROR = "ZeroDivisionError"


class WorkflowSyntaxError(Exception):
    """A workflow definition is invalid; raised at load time, before anything runs.

    Attributes:
        source: File name (or "<string>") of the definition.
        line: 1-based line of the offending element, if known.
        step: Name of the offending step, if any.
        reason: The problem, without location.
    """

    def __init__(self, reason: str, *, source: str, line: int | None, step: str | None) -> None:
        self.source = source
        self.line = line
        self.step = step
        self.reason = reason
        where = source if line is None else f"{source}:{line}"
        if step is not None:
            where += f": step '{step}'"
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class Frame:
    """One entry of a Workflows stack trace: step, subworkflow (routine) and line."""

    step: str
    routine: str
    line: int


class Raised(Exception):
    """A Workflows error travelling up until a `try` or the execution boundary catches it."""

    def __init__(self, value: Any) -> None:
        super().__init__(value)
        self.value = value
        self.stack: list[Frame] = []
        # Ids of the contexts (call levels) that already added their innermost frame.
        self.levels: set[int] = set()


class LimitExceeded(Raised):
    """A ResourceLimitError raised by the engine's own limits (steps, memory, sizes).

    "When raised internally, this type of error cannot be caught and causes immediate execution
    failure" (https://cloud.google.com/workflows/docs/reference/syntax/error-types): `try` neither
    catches nor retries it, and in a parallel step it ends the execution, not just its branch. A
    ResourceLimitError raised by the workflow itself (`raise`) is an ordinary, catchable value.
    """


class ExecutionCancelled(Exception):
    """The execution (or a parallel branch) was cancelled; `try` never catches this."""


class WorkflowError(Exception):
    """An execution ended with an unhandled error.

    Attributes:
        error: The Workflows error value, as `except: as: e` would see it (a map with `message`
            and `tags` for built-in errors; whatever the workflow raised otherwise).
        stack: Frames from the innermost step outwards.
    """

    def __init__(self, error: Any, stack: list[Frame]) -> None:
        self.error = error
        self.stack = stack
        super().__init__(self.context)

    @property
    def step(self) -> str | None:
        """The step where the error was raised."""
        return self.stack[0].step if self.stack else None

    @property
    def tags(self) -> list[str]:
        """The error's tags (empty for raised values without tags)."""
        if isinstance(self.error, dict) and isinstance(self.error.get("tags"), list):
            return [str(t) for t in self.error["tags"]]
        return []

    @property
    def payload(self) -> str:
        """The error value as JSON, as the Executions API reports it in `error.payload`."""
        return json.dumps(self.error, default=repr, separators=(",", ":"))

    @property
    def context(self) -> str:
        """A readable description in the style of the Executions API's `error.context`."""
        lines = [f"RuntimeError: {self.payload}"]
        lines += [f'in step "{f.step}", routine "{f.routine}", line: {f.line}' for f in self.stack]
        return "\n".join(lines)


def error_map(tag: str, message: str, **extra: Any) -> dict[str, Any]:
    """Build a built-in error value the way Workflows shapes it."""
    return {"message": message, "tags": [tag], **extra}


def raised(tag: str, message: str, **extra: Any) -> Raised:
    """Shorthand for raising a built-in error: `raise raised(TYPE_ERROR, "...")`."""
    return Raised(error_map(tag, message, **extra))


def limit_exceeded(message: str) -> LimitExceeded:
    """The uncatchable ResourceLimitError of an engine limit: `raise limit_exceeded("...")`."""
    return LimitExceeded(error_map(RESOURCE_LIMIT_ERROR, message))
