"""The registry of standard library functions: documented parameter names and implementations.

Each function is registered with its documented parameter names, so `${text.split(s, ",")}` and
`call: text.split` with `args: {source: ..., separator: ...}` both work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..clock import Clock
from ..errors import TYPE_ERROR, raised
from ..values import type_name


class CallContext(Protocol):
    """What the few functions that read the execution's surroundings need (sys.now, sys.get_env)."""

    env: Mapping[str, str]
    clock: Clock


REQUIRED = object()


@dataclass(frozen=True)
class Function:
    """A standard library function: documented parameters and an implementation."""

    name: str
    params: tuple[tuple[str, Any], ...]
    impl: Callable[..., Any]
    needs_context: bool = False

    def bind_named(self, args: dict[str, Any]) -> list[Any]:
        """Order `call:` step arguments by the documented parameter names."""
        unknown = set(args) - {p for p, _ in self.params}
        if unknown:
            raise raised(TYPE_ERROR, f"{self.name}: unexpected argument(s) {sorted(unknown)}")
        out = []
        for param, default in self.params:
            if param in args:
                out.append(args[param])
            elif default is REQUIRED:
                raise raised(TYPE_ERROR, f"{self.name}: missing required argument '{param}'")
            else:
                out.append(default)
        return out

    def __call__(self, ctx: CallContext, args: list[Any]) -> Any:
        required = sum(1 for _, d in self.params if d is REQUIRED)
        if not required <= len(args) <= len(self.params):
            raise raised(
                TYPE_ERROR,
                f"{self.name}() takes {required}..{len(self.params)} arguments, got {len(args)}",
            )
        full = args + [d for _, d in self.params[len(args) :]]
        return self.impl(ctx, *full) if self.needs_context else self.impl(*full)


FUNCTIONS: dict[str, Function] = {}


def function(
    name: str, *params: str, needs_context: bool = False, **defaults: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `impl` under `name`; parameters without a default are required."""

    def register(impl: Callable[..., Any]) -> Callable[..., Any]:
        spec = tuple((p, defaults.get(p, REQUIRED)) for p in params)
        FUNCTIONS[name] = Function(name, spec, impl, needs_context)
        return impl

    return register


def expect(fn: str, param: str, value: Any, *types: str) -> None:
    if type_name(value) not in types:
        raise raised(
            TYPE_ERROR, f"{fn}: '{param}' must be {' or '.join(types)}, not {type_name(value)}"
        )
