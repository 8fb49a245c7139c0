"""Contexts and scopes: what a running step can reach, and the variables it sees."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from typing import Any

from .clock import CancelToken, Clock
from .errors import KEY_ERROR, RESOURCE_LIMIT_ERROR, raised
from .limits import MAX_STEPS


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
    ) -> None:
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
