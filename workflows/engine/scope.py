"""Contexts and scopes: what a running step can reach, and the variables it sees.

Workflows counts the memory of all variables of an execution together against one limit, with
the sizes its Variables page gives (https://cloud.google.com/workflows/docs/reference/syntax/variables):
int, double and bool 8 bytes; string, bytes and list 8 bytes plus each element; map 8 bytes plus
each key and value. A `Meter` shared by every scope of an execution keeps that total.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from typing import Any

from .clock import CancelToken, Clock
from .errors import KEY_ERROR, limit_exceeded, raised
from .limits import MAX_STEPS, MAX_VARIABLE_BYTES
from .values import string_bytes


def memory_size(value: Any) -> int:
    """A value's size as Workflows counts it against the memory limit."""
    if isinstance(value, str):
        return 8 + string_bytes(value)
    if isinstance(value, bytes):
        return 8 + len(value)
    if isinstance(value, list):
        return 8 + sum(memory_size(item) for item in value)
    if isinstance(value, dict):
        return 8 + sum(memory_size(k) + memory_size(v) for k, v in value.items())
    return 8  # int, double, bool (and null)


class Meter:
    """The memory used by all variables of one execution, checked against the limit."""

    def __init__(self, limit: int = MAX_VARIABLE_BYTES) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def change(self, delta: int) -> None:
        """Account for a variable growing (or shrinking) by `delta` bytes."""
        with self._lock:
            if delta > 0 and self.used + delta > self.limit:
                raise limit_exceeded(
                    f"memory limit exceeded: variables would use {self.used + delta} bytes "
                    f"of the {self.limit} allowed",
                )
            self.used += delta


class Context:
    """What a running step can reach: env, clock, cancellation and the execution's counters."""

    def __init__(
        self,
        env: Mapping[str, str],
        clock: Clock,
        token: CancelToken,
        *,
        routine: str = "main",
        depth: int = 1,
        parallel_depth: int = 0,
        counter: itertools.count[int] | None = None,
        lock: threading.RLock | None = None,
        meter: Meter | None = None,
    ) -> None:
        self.env = env
        self.clock = clock
        self.token = token
        self.routine = routine
        self.depth = depth
        self.parallel_depth = parallel_depth
        self.counter = counter if counter is not None else itertools.count(1)
        self.lock = lock if lock is not None else threading.RLock()
        self.meter = meter if meter is not None else Meter()

    def derive(self, **changes: Any) -> Context:
        """A context for a subworkflow call or a parallel branch."""
        return Context(
            self.env,
            self.clock,
            changes.get("token", self.token),
            routine=changes.get("routine", self.routine),
            depth=changes.get("depth", self.depth),
            parallel_depth=changes.get("parallel_depth", self.parallel_depth),
            counter=self.counter,
            lock=self.lock,
            meter=self.meter,
        )

    def tick(self) -> None:
        """Count a step; stop at the per-execution step limit."""
        if next(self.counter) > MAX_STEPS:
            raise limit_exceeded(f"exceeded the limit of {MAX_STEPS} steps")


class Scope:
    """Variables of one subworkflow call, loop, except block or parallel branch, chained to the
    enclosing one. `release` gives their memory back when the scope ends.

    A parallel branch is a write boundary: assigning a parent variable that is not `shared`
    creates a branch-local copy instead (the loader rejects such assignments, as Workflows does
    at deploy time, so only a dynamic name could get here).
    """

    __slots__ = ("boundary", "ctx", "parent", "shared", "sizes", "vars")

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
        self.sizes: dict[str, int] = {}

    def lookup(self, name: str) -> Any:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.vars:
                return scope.vars[name]
            scope = scope.parent
        raise raised(KEY_ERROR, f"variable not found: {name}")

    def define(self, name: str, value: Any) -> None:
        """Set a variable of this very scope (a parameter, a loop variable, a new variable)."""
        size = memory_size(value)
        self.ctx.meter.change(size - self.sizes.get(name, 0))
        self.vars[name] = value
        self.sizes[name] = size

    def assign(self, name: str, value: Any) -> None:
        """Set the variable where it lives, or create it here."""
        scope: Scope | None = self
        while scope is not None:
            if name in scope.vars:
                scope.define(name, value)
                return
            if scope.boundary and name not in scope.shared:
                break
            scope = scope.parent
        self.define(name, value)

    def release(self) -> None:
        """The scope ends: its variables no longer count against the memory limit."""
        self.ctx.meter.change(-sum(self.sizes.values()))
        self.sizes.clear()
