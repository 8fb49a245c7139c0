"""Compilation of expression trees to closures `f(scope) -> value`.

Expressions compile once, at load time, to nested Python closures, so evaluating one costs a few
function calls and no parsing. The scope is anything with `lookup(name)`: this package depends on
no interpreter module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..errors import TYPE_ERROR, raised
from ..values import check_int, check_string, is_number, type_name
from .operators import BINARY, bool_operand, get_item, get_key
from .parser import Attr, Binary, Call, Index, ListLit, Literal, MapLit, Name, Node, Unary


class Variables(Protocol):
    """What a compiled expression needs from the scope it runs in."""

    def lookup(self, name: str) -> Any:
        """The value of a variable; raises a Workflows KeyError when it is not defined."""
        ...


Evaluator = Callable[[Any], Any]
"""A compiled expression: called with the scope (a `Variables`), returns the value."""

FunctionResolver = Callable[[str], Callable[[Any, list[Any]], Any]]


def compile_node(node: Node, resolve: FunctionResolver) -> Evaluator:
    """Turn a tree into a closure `f(scope) -> value`; `resolve` finds functions by name."""
    if isinstance(node, Literal):
        value = node.value
        return lambda scope: value
    if isinstance(node, Name):
        name = node.name
        return lambda scope: scope.lookup(name)
    if isinstance(node, Attr):
        obj, key = compile_node(node.obj, resolve), node.name
        return lambda scope: get_key(obj(scope), key)
    if isinstance(node, Index):
        obj, index = compile_node(node.obj, resolve), compile_node(node.index, resolve)
        return lambda scope: get_item(obj(scope), index(scope))
    if isinstance(node, ListLit):
        items = [compile_node(item, resolve) for item in node.items]
        return lambda scope: [item(scope) for item in items]
    if isinstance(node, MapLit):
        pairs = [(k, compile_node(v, resolve)) for k, v in node.items]
        return lambda scope: {k: v(scope) for k, v in pairs}
    if isinstance(node, Unary):
        operand = compile_node(node.operand, resolve)
        if node.op == "not":
            return lambda scope: not bool_operand("not", operand(scope))

        def negate(scope: Variables) -> Any:
            value = operand(scope)
            if not is_number(value):
                raise raised(TYPE_ERROR, f"bad operand type for unary -: '{type_name(value)}'")
            return check_int(-value) if type(value) is int else -value

        return negate
    if isinstance(node, Binary):
        left, right = compile_node(node.left, resolve), compile_node(node.right, resolve)
        if node.op == "and":
            return lambda scope: (
                bool_operand("and", left(scope)) and bool_operand("and", right(scope))
            )
        if node.op == "or":
            return lambda scope: bool_operand("or", left(scope)) or bool_operand("or", right(scope))
        fn = BINARY[node.op]
        return lambda scope: fn(left(scope), right(scope))
    if isinstance(node, Call):
        args = [compile_node(arg, resolve) for arg in node.args]
        if node.func == "if" and len(args) == 3:
            cond, if_true, if_false = args

            def lazy_if(scope: Variables) -> Any:
                # A null condition counts as false: "If condition evaluates to false or null,
                # ifFalse is returned" (the expression helpers page).
                condition = cond(scope)
                if condition is not None and bool_operand("if", condition):
                    return if_true(scope)
                return if_false(scope)

            return lazy_if
        fn_call = resolve(node.func)
        return lambda scope: check_string(fn_call(scope, [arg(scope) for arg in args]))
    raise AssertionError(f"unknown node {node!r}")  # pragma: no cover - the parser makes no others
