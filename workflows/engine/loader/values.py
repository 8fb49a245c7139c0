"""Compiling values: `${...}` expressions, YAML literals, assignment targets and function names."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .. import stdlib
from ..errors import TYPE_ERROR, WorkflowSyntaxError, raised
from ..expressions import (
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
from ..runtime import Subworkflow, call_subworkflow
from ..scope import Scope
from ..steps import Target
from ..values import type_name
from .scopes import VariableScopes
from .source import line_of, plain

VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def constant(value: Any) -> Evaluator:
    """An evaluator for a value known at load time (so enclosing literals can be folded)."""

    def evaluate(scope: Scope) -> Any:
        return value

    evaluate.is_constant = True  # type: ignore[attr-defined]
    return evaluate


def is_constant(ev: Evaluator) -> bool:
    """Whether `ev` came from `constant`."""
    return getattr(ev, "is_constant", False)


class ValueCompiler:
    """Compiles the values of one workflow definition, reporting errors with file and line."""

    def __init__(self, source: str, name: str) -> None:
        self.source = source
        self.name = name
        self.subworkflow_params: dict[str, list[tuple[str, Any]]] = {}
        # The scopes of the subworkflow being compiled (reset for each one).
        self.scopes = VariableScopes(set())
        # Filled once every subworkflow is compiled; calls look their target up when they run.
        self.subworkflows: dict[str, Subworkflow] = {}
        # Every step name of the subworkflow being compiled, with its line (names are unique
        # per subworkflow).
        self.step_lines: dict[str, int] = {}

    def error(self, reason: str, line: int | None, step: str | None = None) -> WorkflowSyntaxError:
        return WorkflowSyntaxError(reason, source=self.source, line=line, step=step)

    def expression(self, text: str, line: int, step: str | None, *, reads: bool = True) -> Node:
        try:
            node = parse_expression(text)
        except ExpressionSyntaxError as exc:
            raise self.error(str(exc), line, step) from None
        for sub in walk(node):
            if isinstance(sub, Call):
                self.check_function(sub.func, line, step, in_expression=True, arity=len(sub.args))
        if reads:
            self.check_reads(node, line, step)
        return node

    def check_reads(self, node: Node, line: int, step: str | None) -> None:
        """Reject variables read where they do not exist (see scopes.py)."""
        for sub in walk(node):
            if isinstance(sub, Name) and (problem := self.scopes.read(sub.name)):
                raise self.error(problem, line, step)

    def check_name(self, name: str, line: int, step: str | None) -> None:
        """Variable names: a letter or underscore, then letters, digits and underscores."""
        if not VARIABLE_NAME.fullmatch(name):
            raise self.error(f"invalid variable name {name!r}", line, step)

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
        subworkflows = self.subworkflows
        return lambda scope, args: call_subworkflow(subworkflows[func], scope.ctx, args)

    def evaluator(self, text: str, line: int, step: str | None) -> Evaluator:
        return compile_node(self.expression(text, line, step), self.resolve)

    def value(self, raw: Any, line: int, step: str | None) -> Evaluator:
        """Compile a YAML value: `${...}` strings are expressions, maps and lists are walked."""
        if isinstance(raw, str):
            stripped = raw.strip()
            if stripped.startswith("${") and stripped.endswith("}"):
                return self.evaluator(stripped[2:-1], line, step)
            return constant(raw)
        if isinstance(raw, dict):
            # Keys may be expressions too, in block and flow maps alike:
            # {"${key}": value} (https://cloud.google.com/workflows/docs/reference/syntax/maps).
            items = [
                (self.key(k, line, step), self.value(v, line_of(v, line), step))
                for k, v in raw.items()
            ]
            if all(is_constant(k) and is_constant(ev) for k, ev in items):
                return constant(plain(raw))
            return lambda scope: {k(scope): ev(scope) for k, ev in items}
        if isinstance(raw, list):
            evs = [self.value(v, line_of(v, line), step) for v in raw]
            if all(is_constant(ev) for ev in evs):
                return constant(plain(raw))
            return lambda scope: [ev(scope) for ev in evs]
        return constant(raw)

    def key(self, raw: str, line: int, step: str | None) -> Evaluator:
        """A map key: a string, or an expression that must give one."""
        stripped = raw.strip()
        if not (stripped.startswith("${") and stripped.endswith("}")):
            return constant(raw)
        evaluate = self.evaluator(stripped[2:-1], line, step)

        def key(scope: Scope) -> str:
            value = evaluate(scope)
            if not isinstance(value, str):
                raise raised(TYPE_ERROR, f"map keys must be strings, not {type_name(value)}")
            return value

        return key

    def target(self, raw: str, line: int, step: str) -> Target:
        text = raw.strip()
        node = self.expression(
            text[2:-1] if text.startswith("${") else text, line, step, reads=False
        )
        path: list[Evaluator] = []
        while not isinstance(node, Name):
            if isinstance(node, Index):
                self.check_reads(node.index, line, step)
                path.insert(0, compile_node(node.index, self.resolve))
                node = node.obj
            elif isinstance(node, Attr):
                path.insert(0, constant(node.name))
                node = node.obj
            else:
                raise self.error(f"cannot assign to {raw!r}", line, step)
        self.check_name(node.name, line, step)
        if problem := self.scopes.write(node.name, whole=not path):
            raise self.error(problem, line, step)
        return Target(node.name, tuple(path))

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
