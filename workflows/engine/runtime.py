"""The interpreter: scopes, steps and the execution of a loaded workflow.

A workflow is loaded once into a tree of step objects (see loader.py); running it walks that tree.
Control flow travels as return values (`Jump`, `Return`, `BREAK`, ...), errors as `Raised`.
"""

from __future__ import annotations

import itertools
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from . import http_client
from .clock import CancelToken, Clock, SystemClock
from .errors import (
    INDEX_ERROR,
    KEY_ERROR,
    PARALLEL_NESTING_ERROR,
    RECURSION_ERROR,
    RESOURCE_LIMIT_ERROR,
    TYPE_ERROR,
    UNHANDLED_BRANCH_ERROR,
    VALUE_ERROR,
    ExecutionCancelled,
    Frame,
    Raised,
    WorkflowError,
    raised,
)
from .expressions import Evaluator
from .limits import (
    MAX_ARGUMENT_BYTES,
    MAX_CALL_DEPTH,
    MAX_CONCURRENT_BRANCHES,
    MAX_PARALLEL_NESTING,
    MAX_REPORTED_BRANCH_ERRORS,
    MAX_RESULT_BYTES,
    MAX_STEPS,
    MAX_VARIABLE_BYTES,
)
from .stdlib import Function
from .values import check_size, encode_json, is_number, to_json_value, type_name

logger = logging.getLogger("workflows.engine")

UNHANDLED_BRANCH_MESSAGE = (
    "UnhandledBranchError: One or more branches or iterations encountered an unhandled "
    "runtime error"
)


# --- Control signals -------------------------------------------------------------------------


@dataclass(frozen=True)
class Jump:
    target: str


@dataclass(frozen=True)
class Return:
    value: Any


class _Signal:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


END = _Signal("END")
BREAK = _Signal("BREAK")
CONTINUE = _Signal("CONTINUE")
Signal = Jump | Return | _Signal | None


# --- Context and scopes ----------------------------------------------------------------------


class Context:
    """What a running step can reach: the workflow, env, clock, cancellation and shared counters."""

    def __init__(
        self,
        workflow: Workflow,
        env: Mapping[str, str],
        clock: Clock,
        token: CancelToken,
        *,
        routine: str = "main",
        depth: int = 1,
        parallel_depth: int = 0,
        counter: itertools.count[int] | None = None,
        lock: threading.RLock | None = None,
    ) -> None:
        self.workflow = workflow
        self.env = env
        self.clock = clock
        self.token = token
        self.routine = routine
        self.depth = depth
        self.parallel_depth = parallel_depth
        self.counter = counter if counter is not None else itertools.count(1)
        self.lock = lock if lock is not None else threading.RLock()

    def derive(self, **changes: Any) -> Context:
        """A context for a subworkflow call or a parallel branch."""
        return Context(
            self.workflow,
            self.env,
            self.clock,
            changes.get("token", self.token),
            routine=changes.get("routine", self.routine),
            depth=changes.get("depth", self.depth),
            parallel_depth=changes.get("parallel_depth", self.parallel_depth),
            counter=self.counter,
            lock=self.lock,
        )

    def tick(self) -> None:
        """Count a step; stop at the per-execution step limit."""
        if next(self.counter) > MAX_STEPS:
            raise raised(RESOURCE_LIMIT_ERROR, f"exceeded the limit of {MAX_STEPS} steps")

    def call_subworkflow(
        self, name: str, positional: list[Any], named: dict[str, Any] | None = None
    ) -> Any:
        """Run a subworkflow with its own variables and return what it returns (null if nothing)."""
        sub = self.workflow.subworkflows[name]
        if self.depth >= MAX_CALL_DEPTH:
            raise raised(RECURSION_ERROR, f"maximum call stack depth {MAX_CALL_DEPTH} exceeded")
        ctx = self.derive(routine=name, depth=self.depth + 1)
        scope = Scope(ctx)
        scope.vars.update(sub.bind(positional, named or {}))
        signal = run_block(sub.body, scope)
        return signal.value if isinstance(signal, Return) else None


class Scope:
    """Variables of one subworkflow call, loop or parallel branch, chained to the enclosing one.

    A parallel branch is a write boundary: assigning a parent variable that is not `shared`
    creates a branch-local copy instead.
    """

    __slots__ = ("boundary", "ctx", "parent", "shared", "vars")

    def __init__(
        self,
        ctx: Context,
        parent: Scope | None = None,
        *,
        boundary: bool = False,
        shared: frozenset[str] = frozenset(),
    ) -> None:
        self.ctx = ctx
        self.parent = parent
        self.boundary = boundary
        self.shared = shared
        self.vars: dict[str, Any] = {}

    def lookup(self, name: str) -> Any:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.vars:
                return scope.vars[name]
            scope = scope.parent
        raise raised(KEY_ERROR, f"variable not found: {name}")

    def assign(self, name: str, value: Any) -> None:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.vars:
                scope.vars[name] = value
                return
            if scope.boundary and name not in scope.shared:
                break
            scope = scope.parent
        self.vars[name] = value


# --- Assignment targets ----------------------------------------------------------------------


def _set_in(container: Any, keys: list[Any], value: Any) -> Any:
    """A copy of `container` with the value at `keys` replaced (values are never mutated)."""
    key = keys[0]
    if isinstance(container, dict):
        if not isinstance(key, str):
            raise raised(TYPE_ERROR, f"map keys must be string, not {type_name(key)}")
        copy = dict(container)
        if len(keys) == 1:
            copy[key] = value
        else:
            child = container.get(key, {})
            copy[key] = _set_in(child, keys[1:], value)
        return copy
    if isinstance(container, list):
        if type(key) is not int:
            raise raised(TYPE_ERROR, f"list indices must be int, not {type_name(key)}")
        if not 0 <= key < len(container):
            raise raised(INDEX_ERROR, f"list index {key} out of range (length {len(container)})")
        copy_list = list(container)
        copy_list[key] = value if len(keys) == 1 else _set_in(container[key], keys[1:], value)
        return copy_list
    raise raised(TYPE_ERROR, f"cannot assign into a {type_name(container)}")


@dataclass(frozen=True)
class Target:
    """An assignment target: `name`, `name.key`, `name["key"]`, `name[index]`, chained."""

    name: str
    path: tuple[Evaluator, ...] = ()

    def assign(self, scope: Scope, value: Any) -> None:
        if not self.path:
            scope.assign(self.name, value)
            return
        keys = [key(scope) for key in self.path]
        scope.assign(self.name, _set_in(scope.lookup(self.name), keys, value))


# --- Steps -----------------------------------------------------------------------------------


@dataclass
class Step:
    name: str
    line: int
    next: Signal = None

    def run(self, scope: Scope) -> Signal:
        return None


@dataclass
class Block:
    """A list of steps and the index of their names, the unit `next` jumps within."""

    steps: list[Step]
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.index = {step.name: i for i, step in enumerate(self.steps)}


def run_block(block: Block, scope: Scope) -> Signal:
    """Run steps in order, following `next`; return the first signal this block cannot handle."""
    steps, index, ctx = block.steps, block.index, scope.ctx
    i, n = 0, len(steps)
    while i < n:
        step = steps[i]
        ctx.token.check()
        ctx.tick()
        try:
            signal = step.run(scope)
        except Raised as exc:
            key = id(ctx)
            if key not in exc.levels:
                exc.levels.add(key)
                exc.stack.append(Frame(step.name, ctx.routine, step.line))
            raise
        if signal is None:
            signal = step.next
            if signal is None:
                i += 1
                continue
        if type(signal) is Jump:
            j = index.get(signal.target)
            if j is not None:
                i = j
                continue
        return signal
    return None


def _assign_locked(scope: Scope, target: Target, value: Callable[[], Any]) -> None:
    # Inside parallel branches each assignment is atomic, as Workflows guarantees for shared
    # variables; outside them there is one thread and no lock is needed.
    if scope.ctx.parallel_depth:
        with scope.ctx.lock:
            result = value()
            check_size(result, MAX_VARIABLE_BYTES, f"variable '{target.name}'")
            target.assign(scope, result)
    else:
        result = value()
        check_size(result, MAX_VARIABLE_BYTES, f"variable '{target.name}'")
        target.assign(scope, result)


@dataclass
class AssignStep(Step):
    assignments: list[tuple[Target, Evaluator]] = field(default_factory=list)

    def run(self, scope: Scope) -> Signal:
        for target, value in self.assignments:
            _assign_locked(scope, target, lambda v=value: v(scope))  # type: ignore[misc]
        return None


@dataclass
class CallStep(Step):
    function: str = ""
    args: Evaluator | None = None
    result: Target | None = None
    invoke: Callable[[Scope, dict[str, Any]], Any] | None = None

    def run(self, scope: Scope) -> Signal:
        args = self.args(scope) if self.args is not None else {}
        assert self.invoke is not None
        value = self.invoke(scope, args)
        if self.result is not None:
            result = self.result
            _assign_locked(scope, result, lambda: value)
        return None


@dataclass
class ReturnStep(Step):
    value: Evaluator | None = None

    def run(self, scope: Scope) -> Signal:
        return Return(self.value(scope) if self.value is not None else None)


@dataclass
class RaiseStep(Step):
    value: Evaluator | None = None

    def run(self, scope: Scope) -> Signal:
        assert self.value is not None
        raise Raised(self.value(scope))


@dataclass
class StepsStep(Step):
    body: Block = field(default_factory=lambda: Block([]))

    def run(self, scope: Scope) -> Signal:
        return run_block(self.body, scope)


@dataclass
class Condition:
    test: Evaluator
    body: Block | None
    next: Signal


@dataclass
class SwitchStep(Step):
    conditions: list[Condition] = field(default_factory=list)

    def run(self, scope: Scope) -> Signal:
        for condition in self.conditions:
            matched = condition.test(scope)
            if not isinstance(matched, bool):
                raise raised(TYPE_ERROR, f"switch condition must be bool, not {type_name(matched)}")
            if matched:  # only the first matching condition runs
                signal = run_block(condition.body, scope) if condition.body else None
                return signal if signal is not None else condition.next
        return None


def _range_values(bounds: Any) -> list[Any]:
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise raised(TYPE_ERROR, "for range must be a list of two numbers")
    start, end = bounds
    if not (is_number(start) and is_number(end)):
        raise raised(TYPE_ERROR, "for range bounds must be int or double")
    values: list[Any] = []
    value = start
    while value <= end:
        values.append(value)
        value += 1
    return values


@dataclass
class Loop:
    """The `for` part shared by sequential and parallel loops."""

    value: str
    index: str | None
    items: Evaluator | None
    bounds: Evaluator | None
    body: Block

    def values(self, scope: Scope) -> list[Any]:
        if self.bounds is not None:
            return _range_values(self.bounds(scope))
        assert self.items is not None
        items = self.items(scope)
        if not isinstance(items, list):
            raise raised(TYPE_ERROR, f"for 'in' must be a list, not {type_name(items)}")
        return items

    def bind(self, scope: Scope, position: int, item: Any) -> None:
        scope.vars[self.value] = item
        if self.index is not None:
            scope.vars[self.index] = position


@dataclass
class ForStep(Step):
    loop: Loop | None = None

    def run(self, scope: Scope) -> Signal:
        assert self.loop is not None
        loop_scope = Scope(scope.ctx, scope)
        for position, item in enumerate(self.loop.values(scope)):
            self.loop.bind(loop_scope, position, item)
            signal = run_block(self.loop.body, loop_scope)
            if signal is None or signal is CONTINUE:
                continue
            if signal is BREAK:
                break
            return signal
        return None


@dataclass
class ParallelStep(Step):
    branches: list[tuple[str, Block]] = field(default_factory=list)
    loop: Loop | None = None
    shared: frozenset[str] = frozenset()
    concurrency_limit: Evaluator | None = None
    continue_all: bool = False

    def run(self, scope: Scope) -> Signal:
        ctx = scope.ctx
        if ctx.parallel_depth >= MAX_PARALLEL_NESTING:
            raise raised(
                PARALLEL_NESTING_ERROR,
                f"parallel steps can be nested at most {MAX_PARALLEL_NESTING} deep",
            )
        tasks: list[tuple[str, Block, Callable[[Scope], None]]]
        if self.loop is not None:
            loop = self.loop
            tasks = [
                (str(i), loop.body, lambda s, i=i, item=item: loop.bind(s, i, item))  # type: ignore[misc]
                for i, item in enumerate(loop.values(scope))
            ]
        else:
            tasks = [(name, body, lambda s: None) for name, body in self.branches]
        workers = MAX_CONCURRENT_BRANCHES
        if self.concurrency_limit is not None:
            limit = self.concurrency_limit(scope)
            if type(limit) is not int or limit < 1:
                raise raised(VALUE_ERROR, f"concurrency_limit must be an int > 0, got {limit!r}")
            workers = min(workers, limit)
        group = ctx.token.child()
        failures: list[tuple[str, Raised]] = []
        failures_lock = threading.Lock()

        def run_branch(branch_id: str, body: Block, bind: Callable[[Scope], None]) -> None:
            branch_ctx = ctx.derive(token=group.child(), parallel_depth=ctx.parallel_depth + 1)
            branch_scope = Scope(branch_ctx, scope, boundary=True, shared=self.shared)
            bind(branch_scope)
            try:
                run_block(body, branch_scope)  # END / CONTINUE just finish the branch
            except Raised as exc:
                with failures_lock:
                    failures.append((branch_id, exc))
                if not self.continue_all:
                    group.cancel()  # the default policy stops the other branches
            except ExecutionCancelled:
                pass

        if tasks:
            with ThreadPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
                futures = [pool.submit(run_branch, *task) for task in tasks]
                for future in futures:
                    future.result()
        ctx.token.check()
        if failures:
            raise Raised(_unhandled_branch_error(failures))
        return None


def _unhandled_branch_error(failures: list[tuple[str, Raised]]) -> dict[str, Any]:
    branches = []
    for branch_id, exc in failures[:MAX_REPORTED_BRANCH_ERRORS]:
        error = WorkflowError(exc.value, exc.stack)
        detail = {"context": error.context, "payload": error.payload}
        branches.append({"id": branch_id, "error": detail})
    return {
        "message": UNHANDLED_BRANCH_MESSAGE,
        "tags": [UNHANDLED_BRANCH_ERROR],
        "branches": branches,
        "truncated": len(failures) > MAX_REPORTED_BRANCH_ERRORS,
        "totalErrors": len(failures),
    }


@dataclass
class RetryPolicy:
    predicate: Callable[[Scope, Any], Any]
    max_retries: Evaluator
    initial_delay: Evaluator
    max_delay: Evaluator
    multiplier: Evaluator

    def numbers(self, scope: Scope) -> tuple[int, float, float, float]:
        max_retries = self.max_retries(scope)
        if type(max_retries) is not int or max_retries < 0:
            raise raised(VALUE_ERROR, f"max_retries must be an int >= 0, got {max_retries!r}")
        delays = []
        for name, ev in (
            ("initial_delay", self.initial_delay),
            ("max_delay", self.max_delay),
            ("multiplier", self.multiplier),
        ):
            value = ev(scope)
            if not is_number(value) or value < 0:
                raise raised(VALUE_ERROR, f"backoff {name} must be a non-negative number")
            delays.append(float(value))
        return max_retries, delays[0], delays[1], delays[2]


@dataclass
class TryStep(Step):
    body: Block = field(default_factory=lambda: Block([]))
    retry: RetryPolicy | None = None
    except_as: str | None = None
    except_body: Block | None = None

    def run(self, scope: Scope) -> Signal:
        attempt, delay = 0, 0.0
        numbers: tuple[int, float, float, float] | None = None
        while True:
            try:
                return run_block(self.body, scope)
            except Raised as exc:
                error = exc.value
                if self.retry is not None:
                    if numbers is None:
                        numbers = self.retry.numbers(scope)
                        delay = numbers[1]
                    max_retries, _, max_delay, multiplier = numbers
                    if attempt < max_retries and self._should_retry(scope, error):
                        scope.ctx.clock.sleep(min(delay, max_delay), scope.ctx.token)
                        attempt += 1
                        delay = min(delay * multiplier, max_delay)
                        continue
                if self.except_body is None:
                    raise
                if self.except_as is not None:
                    scope.assign(self.except_as, error)
                return run_block(self.except_body, scope)

    def _should_retry(self, scope: Scope, error: Any) -> bool:
        assert self.retry is not None
        verdict = self.retry.predicate(scope, error)
        if not isinstance(verdict, bool):
            raise raised(TYPE_ERROR, f"retry predicate must return bool, not {type_name(verdict)}")
        return verdict


# --- Call targets ----------------------------------------------------------------------------

_SEVERITIES = {
    "DEFAULT": logging.INFO,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "NOTICE": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
    "ALERT": logging.CRITICAL,
    "EMERGENCY": logging.CRITICAL,
}


def call_http(method: str | None) -> Callable[[Scope, dict[str, Any]], Any]:
    """`http.get` etc. (fixed method) or `http.request` (method from the args)."""

    def invoke(scope: Scope, args: dict[str, Any]) -> Any:
        verb = method if method is not None else args.get("method")
        if not isinstance(verb, str):
            raise raised(TYPE_ERROR, "http.request: 'method' must be a string")
        return http_client.request(verb, args)

    return invoke


def call_sleep(scope: Scope, args: dict[str, Any]) -> Any:
    seconds: Any = args.get("seconds")
    if not is_number(seconds) or seconds < 0:
        raise raised(TYPE_ERROR, f"sys.sleep: 'seconds' must be a number >= 0, got {seconds!r}")
    scope.ctx.clock.sleep(float(seconds), scope.ctx.token)
    return None


def call_sleep_until(scope: Scope, args: dict[str, Any]) -> Any:
    from .stdlib import FUNCTIONS

    until = FUNCTIONS["time.parse"](scope.ctx, [args.get("time")])
    scope.ctx.clock.sleep(max(0.0, until - scope.ctx.clock.now()), scope.ctx.token)
    return None


def call_log(scope: Scope, args: dict[str, Any]) -> Any:
    severity = args.get("severity", "DEFAULT")
    if severity not in _SEVERITIES:
        raise raised(VALUE_ERROR, f"sys.log: unknown severity {severity!r}")
    payload = args.get("json", args.get("data", args.get("text")))
    message = payload if isinstance(payload, str) else encode_json(payload)
    fields = {
        "workflow": scope.ctx.env.get("GOOGLE_CLOUD_WORKFLOW_ID"),
        "execution": scope.ctx.env.get("GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID"),
        "workflow_severity": severity,
    }
    logger.log(_SEVERITIES[severity], message, extra={"json_fields": fields})
    return None


def call_function(fn: Function) -> Callable[[Scope, dict[str, Any]], Any]:
    """A stdlib function used as a `call:` target, with named args."""
    return lambda scope, args: fn(scope.ctx, fn.bind_named(args))


def call_subworkflow(name: str) -> Callable[[Scope, dict[str, Any]], Any]:
    return lambda scope, args: scope.ctx.call_subworkflow(name, [], args)


# --- Workflow --------------------------------------------------------------------------------

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


@dataclass
class Workflow:
    """A loaded, validated workflow definition."""

    name: str
    source: str
    subworkflows: dict[str, Subworkflow]


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
            process environment is never consulted. GOOGLE_CLOUD_PROJECT_ID, _LOCATION,
            _WORKFLOW_ID and _WORKFLOW_EXECUTION_ID are added.
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
    full_env.update(
        {
            "GOOGLE_CLOUD_PROJECT_ID": project,
            "GOOGLE_CLOUD_LOCATION": location,
            "GOOGLE_CLOUD_WORKFLOW_ID": workflow.name,
            "GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID": execution_id or str(uuid.uuid4()),
        }
    )
    token = CancelToken(event=cancel)
    ctx = Context(workflow, full_env, clock or SystemClock(), token)
    main = workflow.subworkflows["main"]
    try:
        check_size(argument, MAX_ARGUMENT_BYTES, "argument")
        scope = Scope(ctx)
        if main.params:
            scope.vars[main.params[0][0]] = argument
        signal = run_block(main.body, scope)
        result = signal.value if isinstance(signal, Return) else None
        result = to_json_value(result, "result")
        check_size(result, MAX_RESULT_BYTES, "result")
        return result
    except Raised as exc:
        raise WorkflowError(exc.value, exc.stack) from None
