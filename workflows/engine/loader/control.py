"""Compiling control-flow steps: switch, for, parallel, try/retry/except."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import stdlib
from ..limits import MAX_BRANCHES, MAX_CONDITIONS
from ..parallel import ParallelStep
from ..runtime import call_subworkflow
from ..scope import Scope
from ..steps import Block, Condition, Loop, RetryPolicy, Signal, Step, TryStep
from .source import line_of
from .values import ValueCompiler, constant

CONDITION_KEYS = {"condition", "next", "steps", "assign", "return", "raise", "call"}
CONDITION_KEYS |= {"args", "result"}
DEFAULT_BACKOFF = (1, 60, 1.25)
POLICIES = {
    "http.default_retry": "http.default_retry_predicate",
    "http.default_retry_non_idempotent": "http.default_retry_predicate_non_idempotent",
}
PREDICATES = {"http.default_retry_predicate", "http.default_retry_predicate_non_idempotent"}
PREDICATES |= {"retry.always", "retry.never"}


class ControlCompiler(ValueCompiler):
    """The control-flow half of the step compiler; `block`, `step` and `next_signal` come from
    StepCompiler, which subclasses this."""

    def block(
        self,
        raw: Any,
        line: int,
        *,
        visible: list[set[str]],
        loop: str | None,
        in_branch: bool,
        step: str | None = None,
    ) -> Block:
        raise NotImplementedError

    def step(
        self,
        name: str,
        body: Any,
        line: int,
        visible: list[set[str]],
        loop: str | None,
        in_branch: bool,
    ) -> Step:
        raise NotImplementedError

    def next_signal(
        self, raw: Any, line: int, step: str, visible: list[set[str]], loop: str | None
    ) -> Signal:
        raise NotImplementedError

    def conditions(
        self,
        raw: Any,
        at: tuple[int, str],
        visible: list[set[str]],
        loop: str | None,
        in_branch: bool,
    ) -> list[Condition]:
        line, step = at
        if not isinstance(raw, list) or not raw:
            raise self.error("'switch' must be a non-empty list of conditions", line, step)
        if len(raw) > MAX_CONDITIONS:
            raise self.error(f"at most {MAX_CONDITIONS} conditions per switch", line, step)
        out = []
        for item in raw:
            item_line = line_of(item, line)
            if not isinstance(item, dict) or "condition" not in item:
                raise self.error("each switch entry needs a 'condition'", item_line, step)
            unknown = set(item) - CONDITION_KEYS
            if unknown:
                raise self.error(f"unknown key(s) {sorted(unknown)} in condition", item_line, step)
            actions = [k for k in ("steps", "assign", "return", "raise", "call") if k in item]
            if len(actions) > 1:
                raise self.error(f"a condition cannot combine {actions}", item_line, step)
            cond = item["condition"]
            if isinstance(cond, bool):
                test = constant(cond)
            elif isinstance(cond, str) and cond.strip().startswith("${"):
                test = self.value(cond, item_line, step)
            else:
                raise self.error("'condition' must be an expression or a boolean", item_line, step)
            # The condition's action becomes a one-step block named after the switch step.
            body: Block | None = None
            if actions:
                inner = {k: v for k, v in item.items() if k not in ("condition", "next")}
                if actions[0] == "steps":
                    body = self.block(
                        item["steps"],
                        item_line,
                        visible=visible,
                        loop=loop,
                        in_branch=in_branch,
                        step=step,
                    )
                else:
                    body = Block([self.step(step, inner, item_line, visible, loop, in_branch)])
            if actions and actions[0] in ("return", "raise") and "next" in item:
                raise self.error(f"'next' cannot follow '{actions[0]}'", item_line, step)
            next_ = self.next_signal(item.get("next"), item_line, step, visible, loop)
            out.append(Condition(test, body, next_))
        return out

    def loop(
        self,
        raw: Any,
        at: tuple[int, str],
        kind: str,
        in_branch: bool,
        shared: frozenset[str] | None = None,
    ) -> Loop:
        line, step = at
        if not isinstance(raw, dict):
            raise self.error("'for' must be a map", line, step)
        unknown = set(raw) - {"value", "index", "in", "range", "steps"}
        if unknown:
            raise self.error(f"unknown key(s) {sorted(unknown)} in 'for'", line, step)
        value, index = raw.get("value"), raw.get("index")
        if not isinstance(value, str):
            raise self.error("'for' needs 'value': the loop variable's name", line, step)
        if index is not None and not isinstance(index, str):
            raise self.error("'index' must be a variable name", line, step)
        if ("in" in raw) == ("range" in raw):
            raise self.error("'for' needs exactly one of 'in' and 'range'", line, step)
        items = self.value(raw["in"], line, step) if "in" in raw else None
        bounds = self.value(raw["range"], line, step) if "range" in raw else None
        variables = (value,) if index is None else (value, index)
        for variable in variables:
            self.check_name(variable, line, step)
        frame = "parallel for" if kind == "parallel" else "for loop"
        if problem := self.scopes.push(frame, step, variables, shared):
            raise self.error(problem, line, step)
        body = self.block(
            raw.get("steps"),
            line,
            visible=[],
            loop=kind,
            in_branch=in_branch or kind == "parallel",
            step=step,
        )
        self.scopes.pop()
        return Loop(value, index, items, bounds, body)

    def parallel(self, name: str, line: int, next_: Signal, raw: Any) -> ParallelStep:
        at = (line, name)
        if not isinstance(raw, dict):
            raise self.error("'parallel' must be a map", line, name)
        keys = {"exception_policy", "shared", "concurrency_limit", "branches", "for"}
        unknown = set(raw) - keys
        if unknown:
            raise self.error(f"unknown key(s) {sorted(unknown)} in 'parallel'", line, name)
        policy = raw.get("exception_policy")
        if policy not in (None, "continueAll"):
            raise self.error("'exception_policy' can only be continueAll", line, name)
        shared = raw.get("shared", [])
        if not isinstance(shared, list) or not all(isinstance(s, str) for s in shared):
            raise self.error("'shared' must be a list of variable names", line, name)
        for variable in shared:
            if not self.scopes.visible(variable):
                raise self.error(
                    f"shared variable '{variable}' must be assigned before the parallel step",
                    line,
                    name,
                )
        limit = raw.get("concurrency_limit")
        concurrency = self.value(limit, line, name) if limit is not None else None
        if ("branches" in raw) == ("for" in raw):
            raise self.error("'parallel' needs exactly one of 'branches' and 'for'", line, name)
        step = ParallelStep(name, line, next_, shared=frozenset(shared))
        step.concurrency_limit = concurrency
        if "for" in raw:
            step.loop = self.loop(raw["for"], at, "parallel", True, frozenset(shared))
            return step
        branches = raw["branches"]
        if not isinstance(branches, list) or not 2 <= len(branches) <= MAX_BRANCHES:
            raise self.error(f"'branches' must list 2 to {MAX_BRANCHES} branches", line, name)
        for branch in branches:
            branch_line = line_of(branch, line)
            if not isinstance(branch, dict) or len(branch) != 1:
                raise self.error("a branch must be a map with one key: its name", branch_line, name)
            branch_name, branch_body = next(iter(branch.items()))
            if not isinstance(branch_body, dict) or set(branch_body) != {"steps"}:
                raise self.error(
                    f"branch '{branch_name}' must hold only 'steps'", branch_line, name
                )
            if any(branch_name == other for other, _ in step.branches):
                raise self.error("duplicate branch name", branch_line, branch_name)
            self.scopes.push("parallel branch", branch_name, shared=frozenset(shared))
            block = self.block(
                branch_body["steps"],
                branch_line,
                visible=[],
                loop=None,
                in_branch=True,
                step=branch_name,
            )
            self.scopes.pop()
            step.branches.append((branch_name, block))
        return step

    def try_step(
        self,
        name: str,
        line: int,
        next_: Signal,
        body: dict[str, Any],
        visible: list[set[str]],
        loop: str | None,
        in_branch: bool,
    ) -> TryStep:
        raw_try = body["try"]
        if not isinstance(raw_try, dict):
            raise self.error("'try' must be a map: a step body or 'steps'", line, name)
        if set(raw_try) == {"steps"}:
            block = self.block(
                raw_try["steps"], line, visible=visible, loop=loop, in_branch=in_branch, step=name
            )
        else:
            # A single step inside `try` runs under the try step's own name.
            block = Block([self.step(name, raw_try, line, visible, loop, in_branch)])
        step = TryStep(name, line, next_, block)
        if "retry" in body:
            step.retry = self.retry(body["retry"], line, name)
        if "except" in body:
            raw_except = body["except"]
            # "the steps block is optional"
            # (https://cloud.google.com/workflows/docs/reference/syntax/catching-errors): an
            # except without steps catches the error and the workflow goes on after the try step.
            if not isinstance(raw_except, dict):
                raise self.error("'except' must be a map of 'as' and 'steps'", line, name)
            unknown = set(raw_except) - {"as", "steps"}
            if unknown:
                raise self.error(f"unknown key(s) {sorted(unknown)} in 'except'", line, name)
            as_name = raw_except.get("as")
            if as_name is not None and not isinstance(as_name, str):
                raise self.error("'except: as' must be a variable name", line, name)
            self.scopes.push("except block", name)
            if as_name:
                self.check_name(as_name, line, name)
                self.scopes.declare(as_name)
            step.except_as = as_name
            step.except_body = Block([])
            if "steps" in raw_except:
                step.except_body = self.block(
                    raw_except["steps"],
                    line_of(raw_except, line),
                    visible=visible,
                    loop=loop,
                    in_branch=in_branch,
                    step=name,
                )
            self.scopes.pop()
        if step.retry is None and step.except_body is None:
            raise self.error("'try' needs 'retry' or 'except'", line, name)
        return step

    def retry(self, raw: Any, line: int, step: str) -> RetryPolicy:
        if isinstance(raw, str):
            policy = self.reference(raw, line, step)
            if policy not in POLICIES:
                raise self.error(
                    f"unknown retry policy '{policy}' (use a map with 'predicate' for custom ones)",
                    line,
                    step,
                )
            return self.policy(POLICIES[policy], 5, DEFAULT_BACKOFF, line, step)
        if not isinstance(raw, dict):
            raise self.error("'retry' must be a policy expression or a map", line, step)
        unknown = set(raw) - {"predicate", "max_retries", "backoff"}
        if unknown:
            raise self.error(f"unknown key(s) {sorted(unknown)} in 'retry'", line, step)
        if "predicate" not in raw:
            raise self.error("'retry' needs a 'predicate'", line, step)
        predicate = self.reference(raw["predicate"], line, step)
        backoff = raw.get("backoff", {})
        if not isinstance(backoff, dict):
            raise self.error("'backoff' must be a map", line, step)
        unknown = set(backoff) - {"initial_delay", "max_delay", "multiplier"}
        if unknown:
            raise self.error(f"unknown key(s) {sorted(unknown)} in 'backoff'", line, step)
        delays = tuple(
            backoff.get(key, default)
            for key, default in zip(
                ("initial_delay", "max_delay", "multiplier"), DEFAULT_BACKOFF, strict=True
            )
        )
        return self.policy(predicate, raw.get("max_retries", 5), delays, line, step)

    def policy(
        self, predicate: str, max_retries: Any, delays: tuple[Any, ...], line: int, step: str
    ) -> RetryPolicy:
        check: Callable[[Scope, Any], Any]
        if predicate in PREDICATES:
            fn = stdlib.FUNCTIONS[predicate]
            check = lambda scope, error: fn(scope.ctx, [error])  # noqa: E731
        elif predicate in self.subworkflow_params:
            subworkflows = self.subworkflows
            check = lambda scope, error: call_subworkflow(  # noqa: E731
                subworkflows[predicate], scope.ctx, [error]
            )
        else:
            raise self.error(f"unknown retry predicate '{predicate}'", line, step)
        initial, maximum, multiplier = (self.value(d, line, step) for d in delays)
        return RetryPolicy(check, self.value(max_retries, line, step), initial, maximum, multiplier)
