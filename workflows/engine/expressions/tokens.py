"""Tokens of the `${...}` expression language."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class ExpressionSyntaxError(ValueError):
    """An expression does not parse; `column` is 0-based within the expression text."""

    def __init__(self, message: str, text: str, column: int) -> None:
        shown = text if len(text) <= 80 else text[:77] + "..."
        super().__init__(f"{message} at column {column + 1} in expression {shown!r}")
        self.column = column


KEYWORDS = {
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
            if word in KEYWORDS:
                tokens.append(Token("op", KEYWORDS[word], start))
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
