"""Compiling a definition: subworkflows, step lists, `next`, and the simple step kinds."""

from __future__ import annotations

from typing import Any

import yaml

from .. import stdlib
from ..calls import (
    LOG_PARAMS,
    call_function,
    call_http,
    call_log,
    call_sleep,
    call_sleep_until,
)
from ..expressions import Evaluator
from ..http_client import REQUEST_PARAMS
from ..limits import MAX_ASSIGNMENTS
from ..runtime import REQUIRED_PARAM, Subworkflow, Workflow, call_subworkflow
from ..steps import (
    BREAK,
    CONTINUE,
    END,
    AssignStep,
    Block,
    CallStep,
    ForStep,
    Jump,
    RaiseStep,
    ReturnStep,
    Signal,
    Step,
    StepsStep,
    SwitchStep,
    Target,
)
from .control import ControlCompiler
from .scopes import VariableScopes
from .source import Located, line_of, load_yaml, plain

STEP_KEYS = {"assign", "call", "args", "result", "next", "switch", "for", "parallel"}
STEP_KEYS |= {"raise", "return", "try", "retry", "except", "steps"}
PRIMARY_KEYS = ("assign", "call", "switch", "for", "parallel", "raise", "return", "try", "steps")
CALL_ARGS: dict[str, tuple[str, ...]] = {
    "http.request": REQUEST_PARAMS,
    "sys.sleep": ("seconds",),
    "sys.sleep_until": ("time",),
    "sys.log": LOG_PARAMS,
}
for _method in ("get", "post", "put", "patch", "delete"):
    CALL_ARGS[f"http.{_method}"] = tuple(p for p in REQUEST_PARAMS if p != "method")
REQUIRED_CALL_ARGS = {"http.request": ("method", "url"), "sys.sleep": ("seconds",)}
REQUIRED_CALL_ARGS |= {"sys.sleep_until": ("time",)}
for _method in ("get", "post", "put", "patch", "delete"):
    REQUIRED_CALL_ARGS[f"http.{_method}"] = ("url",)


class StepCompiler(ControlCompiler):
    """Compiles one workflow definition into a `Workflow`."""

    def workflow(self, text: str) -> Workflow:
        try:
            document = load_yaml(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            problem = getattr(exc, "problem", None) or str(exc)
            raise self.error(f"invalid YAML: {problem}", line) from None
        if isinstance(document, list):
            definitions: dict[str, Any] = {"main": Located(steps=document)}
        elif isinstance(document, dict):
            definitions = document
        else:
            raise self.error("a workflow is a list of steps or a map of subworkflows", 1)
        if "main" not in definitions:
            raise self.error("the workflow has no 'main' subworkflow", line_of(document, 1))
        for name, definition in definitions.items():
            line = line_of(definition, line_of(document, 1))
            if not isinstance(definition, dict):
                raise self.error(f"subworkflow '{name}' must be a map with 'steps'", line)
            unknown = set(definition) - {"params", "steps"}
            if unknown:
                raise self.error(f"unknown key(s) {sorted(unknown)} in subworkflow '{name}'", line)
            self.subworkflow_params[name] = self.params(name, definition.get("params", []), line)
        subworkflows = self.subworkflows
        for name, definition in definitions.items():
            line = line_of(definition, 1)
            self.scopes = VariableScopes({p for p, _ in self.subworkflow_params[name]})
            self.step_lines = {}
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
                out.append((param, plain(default)))
            else:
                raise self.error(f"bad parameter {item!r} in '{name}'", line)
        if len({p for p, _ in out}) != len(out):
            raise self.error(f"duplicate parameter names in '{name}'", line)
        if name == "main" and len(out) > 1:
            raise self.error("'main' takes at most one parameter (the execution argument)", line)
        return out

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
            item_line = line_of(item, line)
            if not isinstance(item, dict) or len(item) != 1:
                raise self.error("each step must be a map with one key: its name", item_line)
            name, body = next(iter(item.items()))
            # "Step names must be unique at the subworkflow level"
            # (https://cloud.google.com/workflows/docs/reference/syntax/steps): across sibling
            # loops and parallel branches too, not only where `next` can reach.
            if name in self.step_lines:
                first = self.step_lines[name]
                raise self.error(
                    f"duplicate step name (also at line {first} of this subworkflow)",
                    item_line,
                    name,
                )
            self.step_lines[name] = item_line
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

    def positional_args(
        self, func: str, raw: list[Any], params: tuple[str, ...], line: int, step: str
    ) -> dict[str, Any]:
        """List-form `args` (`args: [${msg}, "ERROR"]`, as on the sys.log page), named by the
        target's parameter order."""
        if func.startswith("http."):
            # Nothing documents an order for the HTTP arguments: only their names mean anything.
            raise self.error(f"'{func}' takes its arguments as a map", line, step)
        if len(raw) > len(params):
            raise self.error(
                f"'{func}' takes at most {len(params)} arguments ({', '.join(params)}), "
                f"got {len(raw)}",
                line,
                step,
            )
        return dict(zip(params, raw, strict=False))

    def assignments(self, raw: Any, line: int, step: str) -> list[tuple[Target, Evaluator]]:
        if not isinstance(raw, list) or not raw:
            raise self.error("'assign' must be a non-empty list of single-key maps", line, step)
        if len(raw) > MAX_ASSIGNMENTS:
            raise self.error(f"at most {MAX_ASSIGNMENTS} assignments per step", line, step)
        out = []
        for item in raw:
            item_line = line_of(item, line)
            if not isinstance(item, dict) or len(item) != 1:
                raise self.error("each assignment must be a map with one key", item_line, step)
            key, value = next(iter(item.items()))
            ev = self.value(value, item_line, step)
            out.append((self.target(key, item_line, step), ev))
        return out

    def call_step(self, name: str, line: int, next_: Signal, body: dict[str, Any]) -> CallStep:
        func = body["call"]
        if not isinstance(func, str) or "${" in func:
            raise self.error("'call' must name a function or subworkflow", line, name)
        self.check_function(func, line, name, in_expression=False)
        raw_args = body.get("args", {})
        allowed: tuple[str, ...]
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
        if isinstance(raw_args, list):
            raw_args = self.positional_args(func, raw_args, allowed, line, name)
        if not isinstance(raw_args, dict):
            raise self.error("'args' must be a map, or a list of arguments in order", line, name)
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
            subworkflows = self.subworkflows
            invoke = lambda scope, args: call_subworkflow(  # noqa: E731
                subworkflows[func], scope.ctx, [], args
            )
        else:
            invoke = call_function(stdlib.FUNCTIONS[func])
        args = self.value(raw_args, line, name) if raw_args else None
        result = None
        if "result" in body:
            if not isinstance(body["result"], str):
                raise self.error("'result' must be a variable name", line, name)
            result = self.target(body["result"], line, name)
        return CallStep(name, line, next_, func, args, result, invoke)
