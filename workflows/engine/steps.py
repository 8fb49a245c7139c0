"""Steps: the tree a workflow is loaded into, and how each kind of step runs.

Control flow travels as return values (`Jump`, `Return`, `BREAK`, ...), errors as `Raised`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import (
    INDEX_ERROR,
    TYPE_ERROR,
    VALUE_ERROR,
    Frame,
    LimitExceeded,
    Raised,
    limit_exceeded,
    raised,
)
from .expressions import Evaluator
from .scope import Scope
from .values import is_number, type_name


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
            try:
                signal = step.run(scope)
            except RecursionError:
                # Values (not expressions: their length is limited) can nest deeper than Python's
                # stack; that ends the execution as a limit would, never as a Python traceback.
                raise limit_exceeded("a value is nested too deeply") from None
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
            target.assign(scope, value())
    else:
        target.assign(scope, value())


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
        scope.define(self.value, item)
        if self.index is not None:
            scope.define(self.index, position)


@dataclass
class ForStep(Step):
    loop: Loop | None = None

    def run(self, scope: Scope) -> Signal:
        assert self.loop is not None
        # Variables created in the body belong to the loop and vanish after it.
        loop_scope = Scope(scope.ctx, scope)
        try:
            for position, item in enumerate(self.loop.values(scope)):
                self.loop.bind(loop_scope, position, item)
                signal = run_block(self.loop.body, loop_scope)
                if signal is None or signal is CONTINUE:
                    continue
                if signal is BREAK:
                    break
                return signal
            return None
        finally:
            loop_scope.release()


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
            except LimitExceeded:
                raise  # the engine's own limits cannot be caught nor retried
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
                # Like a loop body, an except block has its own variables, `as` included
                # (https://cloud.google.com/workflows/docs/reference/syntax/variables).
                except_scope = Scope(scope.ctx, scope)
                try:
                    if self.except_as is not None:
                        except_scope.define(self.except_as, error)
                    return run_block(self.except_body, except_scope)
                finally:
                    except_scope.release()

    def _should_retry(self, scope: Scope, error: Any) -> bool:
        assert self.retry is not None
        verdict = self.retry.predicate(scope, error)
        if not isinstance(verdict, bool):
            raise raised(TYPE_ERROR, f"retry predicate must return bool, not {type_name(verdict)}")
        return verdict
