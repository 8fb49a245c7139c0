"""The `${...}` expression language: tokens, a Pratt parser and a compiler to closures."""

from .compile import Evaluator, FunctionResolver, Variables, compile_node
from .parser import (
    Attr,
    Binary,
    Call,
    Index,
    ListLit,
    Literal,
    MapLit,
    Name,
    Node,
    Unary,
    dotted_name,
    parse_expression,
    walk,
)
from .tokens import ExpressionSyntaxError

__all__ = [
    "Attr",
    "Binary",
    "Call",
    "Evaluator",
    "ExpressionSyntaxError",
    "FunctionResolver",
    "Index",
    "ListLit",
    "Literal",
    "MapLit",
    "Name",
    "Node",
    "Unary",
    "Variables",
    "compile_node",
    "dotted_name",
    "parse_expression",
    "walk",
]
