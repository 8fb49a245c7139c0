"""Load a workflow definition: YAML (or JSON) text to a validated tree of steps.

Everything that can be checked before running is checked here, with file, line and step name:
unknown keys, `next` targets, calls to unknown functions or subworkflows, duplicate step names,
argument names, misplaced `break`/`continue`/`return`, and unsupported features.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from . import stdlib
from .errors import WorkflowSyntaxError
from .expressions import (
    Attr,
    Call,
    Evaluator,
    ExpressionSyntaxError,
    Index,
    Name,
    Node,
    compile_node,
    dotted_name,
    parse_expression,
    walk,
)
from .http_client import REQUEST_PARAMS
from .limits import MAX_ASSIGNMENTS, MAX_BRANCHES, MAX_CONDITIONS
from .runtime import (
    BREAK,
    CONTINUE,
    END,
    REQUIRED_PARAM,
    AssignStep,
    Block,
    CallStep,
    Condition,
    ForStep,
    Jump,
    Loop,
    ParallelStep,
    RaiseStep,
    RetryPolicy,
    ReturnStep,
    Scope,
    Signal,
    Step,
    StepsStep,
    Subworkflow,
    SwitchStep,
    Target,
    TryStep,
    Workflow,
    call_function,
    call_http,
    call_log,
    call_sleep,
    call_sleep_until,
    call_subworkflow,
)

WORKFLOW_SUFFIX = ".workflows.yaml"
STEP_KEYS = {"assign", "call", "args", "result", "next", "switch", "for", "parallel"}
STEP_KEYS |= {"raise", "return", "try", "retry", "except", "steps"}
PRIMARY_KEYS = ("assign", "call", "switch", "for", "parallel", "raise", "return", "try", "steps")
CONDITION_KEYS = {"condition", "next", "steps", "assign", "return", "raise", "call"}
CONDITION_KEYS |= {"args", "result"}
CALL_ARGS: dict[str, tuple[str, ...]] = {
    "http.request": REQUEST_PARAMS,
    "sys.sleep": ("seconds",),
    "sys.sleep_until": ("time",),
    "sys.log": ("text", "data", "json", "severity", "timeout"),
}
for _method in ("get", "post", "put", "patch", "delete"):
    CALL_ARGS[f"http.{_method}"] = tuple(p for p in REQUEST_PARAMS if p != "method")
REQUIRED_CALL_ARGS = {"http.request": ("method", "url"), "sys.sleep": ("seconds",)}
REQUIRED_CALL_ARGS |= {"sys.sleep_until": ("time",)}
for _method in ("get", "post", "put", "patch", "delete"):
    REQUIRED_CALL_ARGS[f"http.{_method}"] = ("url",)
DEFAULT_BACKOFF = (1, 60, 1.25)
POLICIES = {
    "http.default_retry": "http.default_retry_predicate",
    "http.default_retry_non_idempotent": "http.default_retry_predicate_non_idempotent",
}
PREDICATES = {"http.default_retry_predicate", "http.default_retry_predicate_non_idempotent"}
PREDICATES |= {"retry.always", "retry.never"}


# --- YAML with line numbers ------------------------------------------------------------------


class _Located(dict[str, Any]):
    """A mapping from the YAML source that remembers its line."""

    line = 0


class _YamlLoader(yaml.SafeLoader):
    """Safe YAML without timestamps (Workflows keeps `2024-01-01` a string), recording lines."""


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_mapping(loader: _YamlLoader, node: yaml.MappingNode) -> _Located:
    loader.flatten_mapping(node)
    out = _Located()
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            key = str(key).lower() if isinstance(key, bool) else str(key)
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_YamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _plain(value: Any) -> Any:
    """Strip the line bookkeeping from literal data."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _line(value: Any, default: int) -> int:
    return value.line if isinstance(value, _Located) else default


# --- Compiler --------------------------------------------------------------------------------


class _Compiler:
    def __init__(self, source: str, name: str) -> None:
        self.source = source
        self.name = name
        self.subworkflow_params: dict[str, list[tuple[str, Any]]] = {}
        # Per subworkflow: every variable assigned so far, in text order.
        self.assigned: set[str] = set()

    def error(self, reason: str, line: int | None, step: str | None = None) -> WorkflowSyntaxError:
        return WorkflowSyntaxError(reason, source=self.source, line=line, step=step)

    # Top level

    def workflow(self, text: str) -> Workflow:
        try:
            document = yaml.load(text, Loader=_YamlLoader)  # a SafeLoader subclass
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            problem = getattr(exc, "problem", None) or str(exc)
            raise self.error(f"invalid YAML: {problem}", line) from None
        if isinstance(document, list):
            definitions: dict[str, Any] = {"main": _Located(steps=document)}
        elif isinstance(document, dict):
            definitions = document
        else:
            raise self.error("a workflow is a list of steps or a map of subworkflows", 1)
        if "main" not in definitions:
            raise self.error("the workflow has no 'main' subworkflow", _line(document, 1))
        for name, definition in definitions.items():
            line = _line(definition, _line(document, 1))
            if not isinstance(definition, dict):
                raise self.error(f"subworkflow '{name}' must be a map with 'steps'", line)
            unknown = set(definition) - {"params", "steps"}
            if unknown:
                raise self.error(f"unknown key(s) {sorted(unknown)} in subworkflow '{name}'", line)
            self.subworkflow_params[name] = self.params(name, definition.get("params", []), line)
        subworkflows = {}
        for name, definition in definitions.items():
            line = _line(definition, 1)
            self.assigned = {p for p, _ in self.subworkflow_params[name]}
            steps = definition.get("steps")
            if not isinstance(steps, list) or not steps:
                raise self.error(f"subworkflow '{name}' needs a non-empty 'steps' list", line)
            body = self.block(steps, line, visible=[], loop=None, in_branch=False)
            subworkflows[name] = Subworkflow(name, self.subworkflow_params[name], body)
        return Workflow(self.name, self.source, subworkflows)

    def params(self, name: str, raw: Any, line: int) -> list[tuple[str, Any]]:
        if not isinstance(raw, list):
            raise self.error(f"'params' of '{name}' must be a list", line)
        out: list[tuple[str, Any]] = []
        for item in raw:
            if isinstance(item, str):
                out.append((item, REQUIRED_PARAM))
            elif isinstance(item, dict) and len(item) == 1:
                param, default = next(iter(item.items()))
                out.append((param, _plain(default)))
            else:
                raise self.error(f"bad parameter {item!r} in '{name}'", line)
        if len({p for p, _ in out}) != len(out):
            raise self.error(f"duplicate parameter names in '{name}'", line)
        if name == "main" and len(out) > 1:
            raise self.error("'main' takes at most one parameter (the execution argument)", line)
        return out

    # Blocks and steps

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
        """Compile a step list; `visible` holds the names `next` may reach in enclosing lists."""
        if not isinstance(raw, list) or not raw:
            raise self.error("'steps' must be a non-empty list of steps", line, step)
        names: list[str] = []
        bodies: list[tuple[str, Any, int]] = []
        for item in raw:
            item_line = _line(item, line)
            if not isinstance(item, dict) or len(item) != 1:
                raise self.error("each step must be a map with one key: its name", item_line)
            name, body = next(iter(item.items()))
            # Names must be unique wherever `next` could reach them: this list and its parents.
            if name in names or any(name in outer for outer in visible):
                raise self.error("duplicate step name", item_line, name)
            names.append(name)
            bodies.append((name, body, item_line))
        scope_names = [*visible, set(names)]
        steps = [
            self.step(name, body, item_line, scope_names, loop, in_branch)
            for name, body, item_line in bodies
        ]
        return Block(steps)

    def next_signal(
        self, raw: Any, line: int, step: str, visible: list[set[str]], loop: str | None
    ) -> Signal:
        if raw is None:
            return None
        if not isinstance(raw, str):
            raise self.error("'next' must be a step name, end, break or continue", line, step)
        if raw == "end":
            return END
        if raw in ("break", "continue"):
            if loop is None:
                raise self.error(f"'next: {raw}' is only allowed inside a for loop", line, step)
            if raw == "break" and loop == "parallel":
                raise self.error("'next: break' is not allowed in a parallel for", line, step)
            return BREAK if raw == "break" else CONTINUE
        if not any(raw in names for names in visible):
            raise self.error(
                f"next target '{raw}' does not exist in this step list or an enclosing one",
                line,
                step,
            )
        return Jump(raw)

    def step(
        self,
        name: str,
        body: Any,
        line: int,
        visible: list[set[str]],
        loop: str | None,
        in_branch: bool,
    ) -> Step:
        if not isinstance(body, dict) or not body:
            raise self.error("a step must be a map of step keys", line, name)
        unknown = set(body) - STEP_KEYS
        if unknown:
            raise self.error(f"unknown step key(s) {sorted(unknown)}", line, name)
        primary = [k for k in PRIMARY_KEYS if k in body]
        if len(primary) > 1:
            raise self.error(f"a step cannot combine {' and '.join(primary)}", line, name)
        kind = primary[0] if primary else "next"
        dependencies = (("args", "call"), ("result", "call"), ("retry", "try"), ("except", "try"))
        for key, needs in dependencies:
            if key in body and kind != needs:
                raise self.error(f"'{key}' is only allowed with '{needs}'", line, name)
        if kind in ("raise", "return") and "next" in body:
            raise self.error(f"'next' cannot follow '{kind}'", line, name)
        if kind == "return" and in_branch:
            raise self.error("'return' is not allowed inside a parallel branch", line, name)
        next_ = self.next_signal(body.get("next"), line, name, visible, loop)
        at = (line, name)
        made: Step
        if kind == "assign":
            made = AssignStep(name, line, next_, self.assignments(body["assign"], *at))
        elif kind == "call":
            made = self.call_step(name, line, next_, body)
        elif kind == "switch":
            made = SwitchStep(
                name, line, next_, self.conditions(body["switch"], at, visible, loop, in_branch)
            )
        elif kind == "for":
            made = ForStep(name, line, next_, self.loop(body["for"], at, "for", in_branch))
        elif kind == "parallel":
            made = self.parallel(name, line, next_, body["parallel"])
        elif kind == "raise":
            made = RaiseStep(name, line, None, self.value(body["raise"], *at))
        elif kind == "return":
            made = ReturnStep(name, line, None, self.value(body["return"], *at))
        elif kind == "try":
            made = self.try_step(name, line, next_, body, visible, loop, in_branch)
        elif kind == "steps":
            block = self.block(
                body["steps"], line, visible=visible, loop=loop, in_branch=in_branch, step=name
            )
            made = StepsStep(name, line, next_, block)
        else:
            if next_ is None:
                raise self.error("empty step", line, name)
            made = Step(name, line, next_)
        return made

    # Values and expressions

    def expression(self, text: str, line: int, step: str | None) -> Node:
        try:
            node = parse_expression(text)
        except ExpressionSyntaxError as exc:
            raise self.error(str(exc), line, step) from None
        for sub in walk(node):
            if isinstance(sub, Call):
                self.check_function(sub.func, line, step, in_expression=True, arity=len(sub.args))
        return node

    def check_function(
        self, func: str, line: int, step: str | None, *, in_expression: bool, arity: int = 0
    ) -> None:
        if func.startswith(stdlib.UNSUPPORTED_PREFIXES):
            raise self.error(f"'{func}' is not supported by the local Workflows engine", line, step)
        if func in stdlib.BLOCKING:
            if in_expression:
                raise self.error(f"'{func}' blocks and can only be used in a call step", line, step)
            return
        if func == "if" and in_expression:
            if arity != 3:
                raise self.error("if() takes exactly 3 arguments", line, step)
            return
        if func not in stdlib.FUNCTIONS and func not in self.subworkflow_params:
            raise self.error(f"unknown function or subworkflow '{func}'", line, step)

    def resolve(self, func: str) -> Callable[[Scope, list[Any]], Any]:
        if func in stdlib.FUNCTIONS:
            fn = stdlib.FUNCTIONS[func]
            return lambda scope, args: fn(scope.ctx, args)
        return lambda scope, args: scope.ctx.call_subworkflow(func, args)

    def evaluator(self, text: str, line: int, step: str | None) -> Evaluator:
        return compile_node(self.expression(text, line, step), self.resolve)

    def value(self, raw: Any, line: int, step: str | None) -> Evaluator:
        """Compile a YAML value: `${...}` strings are expressions, maps and lists are walked."""
        if isinstance(raw, str):
            stripped = raw.strip()
            if stripped.startswith("${") and stripped.endswith("}"):
                return self.evaluator(stripped[2:-1], line, step)
            return lambda scope: raw
        if isinstance(raw, dict):
            items = [(k, self.value(v, _line(v, line), step)) for k, v in raw.items()]
            if all(_is_constant(ev) for _, ev in items):
                constant = _plain(raw)
                return _constant(constant)
            return lambda scope: {k: ev(scope) for k, ev in items}
        if isinstance(raw, list):
            evs = [self.value(v, _line(v, line), step) for v in raw]
            if all(_is_constant(ev) for ev in evs):
                return _constant(_plain(raw))
            return lambda scope: [ev(scope) for ev in evs]
        return _constant(raw)

    def target(self, raw: str, line: int, step: str) -> Target:
        text = raw.strip()
        node = self.expression(text[2:-1] if text.startswith("${") else text, line, step)
        path: list[Evaluator] = []
        while not isinstance(node, Name):
            if isinstance(node, Index):
                path.insert(0, compile_node(node.index, self.resolve))
                node = node.obj
            elif isinstance(node, Attr):
                path.insert(0, _constant(node.name))
                node = node.obj
            else:
                raise self.error(f"cannot assign to {raw!r}", line, step)
        self.assigned.add(node.name)
        return Target(node.name, tuple(path))

    def assignments(self, raw: Any, line: int, step: str) -> list[tuple[Target, Evaluator]]:
        if not isinstance(raw, list) or not raw:
            raise self.error("'assign' must be a non-empty list of single-key maps", line, step)
        if len(raw) > MAX_ASSIGNMENTS:
            raise self.error(f"at most {MAX_ASSIGNMENTS} assignments per step", line, step)
        out = []
        for item in raw:
            item_line = _line(item, line)
            if not isinstance(item, dict) or len(item) != 1:
                raise self.error("each assignment must be a map with one key", item_line, step)
            key, value = next(iter(item.items()))
            ev = self.value(value, item_line, step)
            out.append((self.target(key, item_line, step), ev))
        return out

    # Step kinds

    def call_step(self, name: str, line: int, next_: Signal, body: dict[str, Any]) -> CallStep:
        func = body["call"]
        if not isinstance(func, str) or "${" in func:
            raise self.error("'call' must name a function or subworkflow", line, name)
        self.check_function(func, line, name, in_expression=False)
        raw_args = body.get("args", {})
        if not isinstance(raw_args, dict):
            raise self.error("'args' must be a map", line, name)
        allowed: tuple[str, ...] | None
        if func in CALL_ARGS:
            allowed, required = CALL_ARGS[func], REQUIRED_CALL_ARGS.get(func, ())
        elif func in self.subworkflow_params:
            params = self.subworkflow_params[func]
            allowed = tuple(p for p, _ in params)
            required = tuple(p for p, d in params if d is REQUIRED_PARAM)
        else:
            params_spec = stdlib.FUNCTIONS[func].params
            allowed = tuple(p for p, _ in params_spec)
            required = tuple(p for p, d in params_spec if d is stdlib.REQUIRED)
        unknown = set(raw_args) - set(allowed)
        if unknown:
            raise self.error(f"unknown argument(s) {sorted(unknown)} for '{func}'", line, name)
        missing = [p for p in required if p not in raw_args]
        if missing:
            raise self.error(f"missing argument(s) {missing} for '{func}'", line, name)
        if func == "http.request" or func.startswith("http."):
            invoke = call_http(None if func == "http.request" else func[5:])
        elif func == "sys.sleep":
            invoke = call_sleep
        elif func == "sys.sleep_until":
            invoke = call_sleep_until
        elif func == "sys.log":
            invoke = call_log
        elif func in self.subworkflow_params:
            invoke = call_subworkflow(func)
        else:
            invoke = call_function(stdlib.FUNCTIONS[func])
        result = None
        if "result" in body:
            if not isinstance(body["result"], str):
                raise self.error("'result' must be a variable name", line, name)
            result = self.target(body["result"], line, name)
        args = self.value(raw_args, line, name) if raw_args else None
        return CallStep(name, line, next_, func, args, result, invoke)

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
            item_line = _line(item, line)
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
                test = _constant(cond)
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

    def loop(self, raw: Any, at: tuple[int, str], kind: str, in_branch: bool) -> Loop:
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
        body = self.block(
            raw.get("steps"),
            line,
            visible=[],
            loop=kind,
            in_branch=in_branch or kind == "parallel",
            step=step,
        )
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
            if variable not in self.assigned:
                raise self.error(
                    f"shared variable '{variable}' must be assigned before the parallel step",
                    line,
                    name,
                )
        limit = raw.get("concurrency_limit")
        concurrency = self.value(limit, line, name) if limit is not None else None
        if ("branches" in raw) == ("for" in raw):
            raise self.error("'parallel' needs exactly one of 'branches' and 'for'", line, name)
        step = ParallelStep(name, line, next_, shared=frozenset(shared), continue_all=bool(policy))
        step.concurrency_limit = concurrency
        if "for" in raw:
            step.loop = self.loop(raw["for"], at, "parallel", True)
            return step
        branches = raw["branches"]
        if not isinstance(branches, list) or not 2 <= len(branches) <= MAX_BRANCHES:
            raise self.error(f"'branches' must list 2 to {MAX_BRANCHES} branches", line, name)
        for branch in branches:
            branch_line = _line(branch, line)
            if not isinstance(branch, dict) or len(branch) != 1:
                raise self.error("a branch must be a map with one key: its name", branch_line, name)
            branch_name, branch_body = next(iter(branch.items()))
            if not isinstance(branch_body, dict) or set(branch_body) != {"steps"}:
                raise self.error(
                    f"branch '{branch_name}' must hold only 'steps'", branch_line, name
                )
            if any(branch_name == other for other, _ in step.branches):
                raise self.error("duplicate branch name", branch_line, branch_name)
            block = self.block(
                branch_body["steps"],
                branch_line,
                visible=[],
                loop=None,
                in_branch=True,
                step=branch_name,
            )
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
            if not isinstance(raw_except, dict) or "steps" not in raw_except:
                raise self.error("'except' must be a map with 'steps' (and 'as')", line, name)
            unknown = set(raw_except) - {"as", "steps"}
            if unknown:
                raise self.error(f"unknown key(s) {sorted(unknown)} in 'except'", line, name)
            as_name = raw_except.get("as")
            if as_name is not None and not isinstance(as_name, str):
                raise self.error("'except: as' must be a variable name", line, name)
            if as_name:
                self.assigned.add(as_name)
            step.except_as = as_name
            step.except_body = self.block(
                raw_except["steps"],
                _line(raw_except, line),
                visible=visible,
                loop=loop,
                in_branch=in_branch,
                step=name,
            )
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

    def reference(self, raw: Any, line: int, step: str) -> str:
        text = raw.strip() if isinstance(raw, str) else ""
        if not (text.startswith("${") and text.endswith("}")):
            raise self.error(f"expected an expression like ${{name}}, got {raw!r}", line, step)
        try:
            name = dotted_name(parse_expression(text[2:-1]))
        except ExpressionSyntaxError as exc:
            raise self.error(str(exc), line, step) from None
        if name is None:
            raise self.error(f"expected a name, got {raw!r}", line, step)
        return name

    def policy(
        self, predicate: str, max_retries: Any, delays: tuple[Any, ...], line: int, step: str
    ) -> RetryPolicy:
        check: Callable[[Scope, Any], Any]
        if predicate in PREDICATES:
            fn = stdlib.FUNCTIONS[predicate]
            check = lambda scope, error: fn(scope.ctx, [error])  # noqa: E731
        elif predicate in self.subworkflow_params:
            check = lambda scope, error: scope.ctx.call_subworkflow(predicate, [error])  # noqa: E731
        else:
            raise self.error(f"unknown retry predicate '{predicate}'", line, step)
        initial, maximum, multiplier = (self.value(d, line, step) for d in delays)
        return RetryPolicy(check, self.value(max_retries, line, step), initial, maximum, multiplier)


def _constant(value: Any) -> Evaluator:
    def constant(scope: Scope) -> Any:
        return value

    constant.is_constant = True  # type: ignore[attr-defined]
    return constant


def _is_constant(ev: Evaluator) -> bool:
    return getattr(ev, "is_constant", False)


def workflow_id(path: Path) -> str:
    """`marketing_analysis.workflows.yaml` → `marketing_analysis`."""
    name = path.name
    for suffix in (WORKFLOW_SUFFIX, ".yaml", ".yml", ".json"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def parse_workflow(text: str, source: str = "<string>", name: str | None = None) -> Workflow:
    """Parse and validate a workflow definition.

    Args:
        text: YAML or JSON.
        source: Shown in error messages (a file name).
        name: The workflow id reported by GOOGLE_CLOUD_WORKFLOW_ID (default: from `source`).

    Raises:
        WorkflowSyntaxError: With file, line and step name.
    """
    return _Compiler(source, name or workflow_id(Path(source))).workflow(text)


def load_workflow(path: Path) -> Workflow:
    """Read and validate a workflow file; its id is the file name without `.workflows.yaml`."""
    return parse_workflow(path.read_text(encoding="utf-8"), str(path), workflow_id(path))
