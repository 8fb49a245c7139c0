"""The expression tree and a Pratt parser.

Precedence follows Workflows' "Order of operations" table, most binding first: `()`, `.`, `[]`,
`not`, unary `-`, `* / // %`, `+ -`, comparisons and `in`, `and`, `or`
(https://cloud.google.com/workflows/docs/reference/syntax/datatypes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..limits import MAX_EXPRESSION_LENGTH
from .tokens import KEYWORDS, ExpressionSyntaxError, Token, tokenize


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Name:
    name: str


@dataclass(frozen=True)
class Attr:
    obj: Node
    name: str


@dataclass(frozen=True)
class Index:
    obj: Node
    index: Node


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Unary:
    op: str
    operand: Node


@dataclass(frozen=True)
class Binary:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class ListLit:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class MapLit:
    items: tuple[tuple[str, Node], ...]


Node = Literal | Name | Attr | Index | Call | Unary | Binary | ListLit | MapLit


def dotted_name(node: Node) -> str | None:
    """`a.b.c` as "a.b.c" when the node is a plain dotted name, else None."""
    if isinstance(node, Name):
        return node.name
    if isinstance(node, Attr):
        base = dotted_name(node.obj)
        return None if base is None else f"{base}.{node.name}"
    return None


def walk(node: Node) -> list[Node]:
    """Every node of a tree, parents first."""
    out: list[Node] = [node]
    children: tuple[Node, ...] = ()
    if isinstance(node, Attr):
        children = (node.obj,)
    elif isinstance(node, Index):
        children = (node.obj, node.index)
    elif isinstance(node, Call | ListLit):
        children = node.args if isinstance(node, Call) else node.items
    elif isinstance(node, Unary):
        children = (node.operand,)
    elif isinstance(node, Binary):
        children = (node.left, node.right)
    elif isinstance(node, MapLit):
        children = tuple(v for _, v in node.items)
    for child in children:
        out += walk(child)
    return out


_BINARY_POWER = {
    "or": 10,
    "and": 20,
    "==": 30,
    "!=": 30,
    "<": 30,
    ">": 30,
    "<=": 30,
    ">=": 30,
    "in": 30,
    "+": 40,
    "-": 40,
    "*": 50,
    "/": 50,
    "//": 50,
    "%": 50,
}
# Unary `-` and `not`: tighter than every binary operator, looser than `.`, `[]` and calls.
_PREFIX_POWER = 60
_POSTFIX_POWER = 80


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, op: str) -> Token:
        tok = self.next()
        if tok.kind != "op" or tok.value != op:
            raise self.error(f"expected {op!r}", tok)
        return tok

    def error(self, message: str, tok: Token) -> ExpressionSyntaxError:
        found = "end of expression" if tok.kind == "end" else repr(tok.value)
        return ExpressionSyntaxError(f"{message}, found {found}", self.text, tok.pos)

    def parse(self) -> Node:
        node = self.expression(0)
        tok = self.peek()
        if tok.kind != "end":
            raise self.error("unexpected token", tok)
        return node

    def expression(self, min_power: int) -> Node:
        left = self.prefix()
        while True:
            tok = self.peek()
            if tok.kind != "op":
                return left
            op = tok.value
            if op in (".", "[", "("):
                if min_power >= _POSTFIX_POWER:
                    return left
                left = self.postfix(left)
                continue
            power = _BINARY_POWER.get(op)
            if power is None or power <= min_power:
                return left
            self.next()
            right = self.expression(power)
            left = Binary(op, left, right)

    def prefix(self) -> Node:
        tok = self.next()
        if tok.kind in ("num", "str", "const"):
            return Literal(tok.value)
        if tok.kind == "name":
            return Name(tok.value)
        if tok.kind == "op":
            if tok.value == "(":
                inner = self.expression(0)
                self.expect(")")
                return inner
            if tok.value in ("-", "not"):
                return self.prefix_operators(tok.value)
            if tok.value == "[":
                return ListLit(self.items("]"))
            if tok.value == "{":
                return self.map_literal()
        raise self.error("expected a value", tok)

    def prefix_operators(self, first: str) -> Node:
        """A run of unary `-` and `not`, read in a loop rather than by recursion.

        Both bind tighter than every binary operator and looser than `.`, `[]` and calls, so
        the operand of the innermost one is a value with its postfix operators, and each
        operator applies to everything after it.
        """
        ops = [first]
        while self.peek().kind == "op" and self.peek().value in ("-", "not"):
            ops.append(self.next().value)
        node = self.expression(_PREFIX_POWER)
        for op in reversed(ops):
            node = Unary(op, node)
        return node

    def items(self, close: str) -> tuple[Node, ...]:
        out: list[Node] = []
        if self.peek().kind == "op" and self.peek().value == close:
            self.next()
            return ()
        while True:
            out.append(self.expression(0))
            tok = self.next()
            if tok.kind == "op" and tok.value == close:
                return tuple(out)
            if tok.kind != "op" or tok.value != ",":
                raise self.error(f"expected ',' or {close!r}", tok)

    def map_literal(self) -> MapLit:
        pairs: list[tuple[str, Node]] = []
        if self.peek().kind == "op" and self.peek().value == "}":
            self.next()
            return MapLit(())
        while True:
            key = self.next()
            if key.kind != "str":
                raise self.error("map keys must be string literals", key)
            self.expect(":")
            pairs.append((key.value, self.expression(0)))
            tok = self.next()
            if tok.kind == "op" and tok.value == "}":
                return MapLit(tuple(pairs))
            if tok.kind != "op" or tok.value != ",":
                raise self.error("expected ',' or '}'", tok)

    def postfix(self, left: Node) -> Node:
        tok = self.next()
        if tok.value == ".":
            name = self.next()
            if name.kind == "name":
                return Attr(left, name.value)
            if name.kind == "const" or (name.kind == "op" and name.value in KEYWORDS.values()):
                # Keys that read like keywords (`e.in`, `x.null`) are still plain keys here.
                return Attr(left, self.text[name.pos : self.peek().pos].strip())
            raise self.error("expected a key name after '.'", name)
        if tok.value == "[":
            index = self.expression(0)
            self.expect("]")
            return Index(left, index)
        func = dotted_name(left)
        if func is None:
            raise self.error("only named functions can be called", tok)
        return Call(func, self.items(")"))


def parse_expression(text: str) -> Node:
    """Parse the text between `${` and `}`.

    Workflows limits the length of an expression (https://cloud.google.com/workflows/quotas);
    checking it first also bounds how deeply an expression can nest, so parsing, compiling and
    evaluating never run out of Python stack.
    """
    if not text.strip():
        raise ExpressionSyntaxError("empty expression", text, 0)
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionSyntaxError(
            f"expression is {len(text)} characters long; at most {MAX_EXPRESSION_LENGTH} "
            "are allowed",
            text,
            MAX_EXPRESSION_LENGTH,
        )
    return _Parser(text).parse()
