"""The `${...}` expression language: a tokenizer, a Pratt parser and a compiler to closures.

Precedence follows Workflows' "Order of operations" table, most binding first: `()`, `.`, `[]`,
`not`, unary `-`, `* / // %`, `+ -`, comparisons and `in`, `and`, `or`. Expressions compile once, at
load time, to nested Python closures, so evaluating one costs a few function calls and no parsing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import INDEX_ERROR, KEY_ERROR, TYPE_ERROR, ZERO_DIVISION_ERROR, raised
from .values import check_int, equal, is_number, type_name

if TYPE_CHECKING:
    from .runtime import Scope

Evaluator = Callable[["Scope"], Any]


class ExpressionSyntaxError(ValueError):
    """An expression does not parse; `column` is 0-based within the expression text."""

    def __init__(self, message: str, text: str, column: int) -> None:
        super().__init__(f"{message} at column {column + 1} in expression {text!r}")
        self.column = column


# --- AST -------------------------------------------------------------------------------------


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


# --- Tokenizer -------------------------------------------------------------------------------

_KEYWORDS = {
    "and": "and",
    "AND": "and",
    "or": "or",
    "OR": "or",
    "not": "not",
    "NOT": "not",
    "in": "in",
}
_CONSTANTS: dict[str, Any] = {
    "true": True,
    "True": True,
    "TRUE": True,
    "false": False,
    "False": False,
    "FALSE": False,
    "null": None,
}
_OPERATORS: tuple[str, ...] = (
    "//",
    "==",
    "!=",
    "<=",
    ">=",
    "+",
    "-",
    "*",
    "/",
    "%",
    "<",
    ">",
    "(",
    ")",
    "[",
    "]",
)
_OPERATORS += ("{", "}", ",", ":", ".")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "'": "'", "\\": "\\", "/": "/"}


@dataclass(frozen=True)
class Token:
    kind: str  # "num", "str", "name", "const", "op", "end"
    value: Any
    pos: int


def tokenize(text: str) -> list[Token]:
    """Split an expression into tokens."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c.isdigit() or (c == "." and i + 1 < n and text[i + 1].isdigit()):
            start = i
            while i < n and text[i].isdigit():
                i += 1
            is_double = False
            if i < n and text[i] == "." and i + 1 < n and text[i + 1].isdigit():
                is_double = True
                i += 1
                while i < n and text[i].isdigit():
                    i += 1
            if i < n and text[i] in "eE":
                j = i + 1
                if j < n and text[j] in "+-":
                    j += 1
                if j < n and text[j].isdigit():
                    is_double = True
                    i = j
                    while i < n and text[i].isdigit():
                        i += 1
            literal = text[start:i]
            value: Any = float(literal) if is_double else int(literal)
            if isinstance(value, int) and value > 2**63 - 1:
                raise ExpressionSyntaxError("integer literal out of 64-bit range", text, start)
            tokens.append(Token("num", value, start))
        elif c in "\"'":
            start, i = i, i + 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise ExpressionSyntaxError("unterminated string", text, start)
                ch = text[i]
                if ch == c:
                    i += 1
                    break
                if ch == "\\":
                    if i + 1 >= n:
                        raise ExpressionSyntaxError("unterminated string", text, start)
                    esc = text[i + 1]
                    if esc == "u":
                        code = text[i + 2 : i + 6]
                        if len(code) != 4 or any(h not in "0123456789abcdefABCDEF" for h in code):
                            raise ExpressionSyntaxError("bad \\u escape", text, i)
                        chars.append(chr(int(code, 16)))
                        i += 6
                        continue
                    if esc not in _ESCAPES:
                        raise ExpressionSyntaxError(f"unknown escape \\{esc}", text, i)
                    chars.append(_ESCAPES[esc])
                    i += 2
                    continue
                chars.append(ch)
                i += 1
            tokens.append(Token("str", "".join(chars), start))
        elif c.isalpha() or c == "_":
            start = i
            while i < n and (text[i].isalnum() or text[i] == "_"):
                i += 1
            word = text[start:i]
            if word in _KEYWORDS:
                tokens.append(Token("op", _KEYWORDS[word], start))
            elif word in _CONSTANTS:
                tokens.append(Token("const", _CONSTANTS[word], start))
            else:
                tokens.append(Token("name", word, start))
        else:
            for op in _OPERATORS:
                if text.startswith(op, i):
                    tokens.append(Token("op", op, i))
                    i += len(op)
                    break
            else:
                raise ExpressionSyntaxError(f"unexpected character {c!r}", text, i)
    tokens.append(Token("end", None, n))
    return tokens


# --- Parser ----------------------------------------------------------------------------------

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
_UNARY_MINUS_POWER = 60
_NOT_POWER = 70
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
            if tok.value == "-":
                return Unary("-", self.expression(_UNARY_MINUS_POWER))
            if tok.value == "not":
                return Unary("not", self.expression(_NOT_POWER))
            if tok.value == "[":
                return ListLit(self.items("]"))
            if tok.value == "{":
                return self.map_literal()
        raise self.error("expected a value", tok)

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
            if name.kind == "const" or (name.kind == "op" and name.value in _KEYWORDS.values()):
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
    """Parse the text between `${` and `}`."""
    if not text.strip():
        raise ExpressionSyntaxError("empty expression", text, 0)
    return _Parser(text).parse()


# --- Operators -------------------------------------------------------------------------------


def _operand_error(op: str, a: Any, b: Any) -> Exception:
    return raised(
        TYPE_ERROR, f"unsupported operand type(s) for {op}: '{type_name(a)}' and '{type_name(b)}'"
    )


def _numbers(op: str, a: Any, b: Any) -> None:
    if not (is_number(a) and is_number(b)):
        raise _operand_error(op, a, b)


def op_add(a: Any, b: Any) -> Any:
    if type(a) is int and type(b) is int:
        return check_int(a + b)
    if is_number(a) and is_number(b):
        return float(a) + float(b)
    if isinstance(a, str) and isinstance(b, str):
        return a + b
    raise _operand_error("+", a, b)


def op_sub(a: Any, b: Any) -> Any:
    _numbers("-", a, b)
    return check_int(a - b) if type(a) is int and type(b) is int else float(a) - float(b)


def op_mul(a: Any, b: Any) -> Any:
    _numbers("*", a, b)
    return check_int(a * b) if type(a) is int and type(b) is int else float(a) * float(b)


def op_div(a: Any, b: Any) -> Any:
    _numbers("/", a, b)
    if b == 0:
        raise raised(ZERO_DIVISION_ERROR, "division by zero")
    return float(a) / float(b)


def op_floordiv(a: Any, b: Any) -> Any:
    _numbers("//", a, b)
    if b == 0:
        raise raised(ZERO_DIVISION_ERROR, "division by zero")
    if type(a) is int and type(b) is int:
        return check_int(a // b)
    return float(math.floor(float(a) / float(b)))


def op_mod(a: Any, b: Any) -> Any:
    _numbers("%", a, b)
    if b == 0:
        raise raised(ZERO_DIVISION_ERROR, "division by zero")
    return a % b if type(a) is int and type(b) is int else math.fmod(float(a), float(b))


def _orderable(op: str, a: Any, b: Any) -> None:
    if not ((is_number(a) and is_number(b)) or (isinstance(a, str) and isinstance(b, str))):
        raise _operand_error(op, a, b)


def op_lt(a: Any, b: Any) -> bool:
    _orderable("<", a, b)
    return bool(a < b)


def op_gt(a: Any, b: Any) -> bool:
    _orderable(">", a, b)
    return bool(a > b)


def op_le(a: Any, b: Any) -> bool:
    _orderable("<=", a, b)
    return bool(a <= b)


def op_ge(a: Any, b: Any) -> bool:
    _orderable(">=", a, b)
    return bool(a >= b)


def op_eq(a: Any, b: Any) -> bool:
    return equal(a, b)


def op_ne(a: Any, b: Any) -> bool:
    return not equal(a, b)


def op_in(a: Any, b: Any) -> bool:
    if isinstance(b, list):
        return any(equal(a, item) for item in b)
    if isinstance(b, dict):
        return isinstance(a, str) and a in b
    raise raised(TYPE_ERROR, f"argument of type '{type_name(b)}' is not a list or a map")


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": op_add,
    "-": op_sub,
    "*": op_mul,
    "/": op_div,
    "//": op_floordiv,
    "%": op_mod,
    "<": op_lt,
    ">": op_gt,
    "<=": op_le,
    ">=": op_ge,
    "==": op_eq,
    "!=": op_ne,
    "in": op_in,
}


def get_key(obj: Any, key: str) -> Any:
    """`obj.key` / `obj["key"]`: a missing key is a KeyError (use map.get for optional keys)."""
    if not isinstance(obj, dict):
        raise raised(TYPE_ERROR, f"cannot read key '{key}' of a {type_name(obj)}, expected a map")
    try:
        return obj[key]
    except KeyError:
        raise raised(KEY_ERROR, f"key not found: {key}") from None


def get_item(obj: Any, index: Any) -> Any:
    """`obj[index]` for lists (int index) and maps (string key)."""
    if isinstance(obj, list):
        if type(index) is not int:
            raise raised(TYPE_ERROR, f"list indices must be int, not {type_name(index)}")
        if index < 0 or index >= len(obj):
            raise raised(INDEX_ERROR, f"list index {index} out of range (length {len(obj)})")
        return obj[index]
    if isinstance(obj, dict):
        if not isinstance(index, str):
            raise raised(TYPE_ERROR, f"map keys must be string, not {type_name(index)}")
        return get_key(obj, index)
    raise raised(TYPE_ERROR, f"'{type_name(obj)}' is not subscriptable")


def _bool_operand(op: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise raised(TYPE_ERROR, f"operand of '{op}' must be bool, not {type_name(value)}")
    return value


# --- Compiler --------------------------------------------------------------------------------

FunctionResolver = Callable[[str], Callable[["Scope", list[Any]], Any]]


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
            return lambda scope: not _bool_operand("not", operand(scope))

        def negate(scope: Scope) -> Any:
            value = operand(scope)
            if not is_number(value):
                raise raised(TYPE_ERROR, f"bad operand type for unary -: '{type_name(value)}'")
            return check_int(-value) if type(value) is int else -value

        return negate
    if isinstance(node, Binary):
        left, right = compile_node(node.left, resolve), compile_node(node.right, resolve)
        if node.op == "and":
            return lambda scope: (
                _bool_operand("and", left(scope)) and _bool_operand("and", right(scope))
            )
        if node.op == "or":
            return lambda scope: (
                _bool_operand("or", left(scope)) or _bool_operand("or", right(scope))
            )
        fn = _BINARY[node.op]
        return lambda scope: fn(left(scope), right(scope))
    if isinstance(node, Call):
        args = [compile_node(arg, resolve) for arg in node.args]
        if node.func == "if" and len(args) == 3:
            cond, if_true, if_false = args

            def lazy_if(scope: Scope) -> Any:
                return if_true(scope) if _bool_operand("if", cond(scope)) else if_false(scope)

            return lazy_if
        fn_call = resolve(node.func)
        return lambda scope: fn_call(scope, [arg(scope) for arg in args])
    raise AssertionError(f"unknown node {node!r}")  # pragma: no cover - the parser makes no others
