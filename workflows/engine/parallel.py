"""Parallel steps: branches and parallel `for`, run on a thread pool.

Workflows' default and only exception policy is `continueAll`: a branch that raises ends alone,
every other branch runs to its end, and then the step raises UnhandledBranchError
(https://cloud.google.com/workflows/docs/reference/syntax/parallel-steps).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .errors import (
    PARALLEL_NESTING_ERROR,
    UNHANDLED_BRANCH_ERROR,
    VALUE_ERROR,
    ExecutionCancelled,
    LimitExceeded,
    Raised,
    WorkflowError,
    raised,
)
from .expressions import Evaluator
from .limits import MAX_CONCURRENT_BRANCHES, MAX_PARALLEL_NESTING, MAX_REPORTED_BRANCH_ERRORS
from .scope import Scope
from .steps import Block, Loop, Signal, Step, run_block

UNHANDLED_BRANCH_MESSAGE = (
    "UnhandledBranchError: One or more branches or iterations encountered an unhandled "
    "runtime error"
)


@dataclass
class ParallelStep(Step):
    branches: list[tuple[str, Block]] = field(default_factory=list)
    loop: Loop | None = None
    shared: frozenset[str] = frozenset()
    concurrency_limit: Evaluator | None = None

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
        # Cancelling the execution stops every branch; a failing branch stops nobody else,
        # except when an engine limit is exceeded: that ends the whole execution at once.
        group = ctx.token.child()
        failures: list[tuple[int, str, Raised]] = []
        fatal: list[LimitExceeded] = []
        failures_lock = threading.Lock()

        def run_branch(
            position: int, branch_id: str, body: Block, bind: Callable[[Scope], None]
        ) -> None:
            branch_ctx = ctx.derive(token=group.child(), parallel_depth=ctx.parallel_depth + 1)
            branch_scope = Scope(branch_ctx, scope, boundary=True, shared=self.shared)
            try:
                bind(branch_scope)
                run_block(body, branch_scope)  # END / CONTINUE just finish the branch
            except LimitExceeded as exc:
                with failures_lock:
                    fatal.append(exc)
                group.cancel()
            except Raised as exc:
                with failures_lock:
                    failures.append((position, branch_id, exc))
            except ExecutionCancelled:
                pass
            finally:
                branch_scope.release()

        if tasks:
            with ThreadPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
                futures = [pool.submit(run_branch, i, *task) for i, task in enumerate(tasks)]
                for future in futures:
                    future.result()
        ctx.token.check()
        if fatal:
            raise fatal[0]
        if failures:
            # Listed in declaration order, whatever order the branches failed in.
            raise Raised(_unhandled_branch_error([(b, e) for _, b, e in sorted(failures)]))
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
