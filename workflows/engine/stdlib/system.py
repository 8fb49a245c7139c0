"""sys.now, sys.get_env and uuid.generate (the blocking sys functions live in calls.py)."""

from __future__ import annotations

import uuid
from typing import Any

from .registry import CallContext, expect, function


@function("sys.now", needs_context=True)
def _now(ctx: CallContext) -> float:
    return ctx.clock.now()


@function("sys.get_env", "name", "default", needs_context=True, default=None)
def _get_env(ctx: CallContext, name: Any, default: Any) -> Any:
    expect("sys.get_env", "name", name, "string")
    expect("sys.get_env", "default", default, "string", "null")
    return ctx.env.get(name, default)


@function("uuid.generate")
def _uuid() -> str:
    return str(uuid.uuid4())
