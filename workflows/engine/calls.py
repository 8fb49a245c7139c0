"""Targets of `call` steps that block or talk to the world: http.*, sys.sleep(_until), sys.log."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from . import http_client
from .errors import TYPE_ERROR, VALUE_ERROR, raised
from .limits import MAX_SLEEP_SECONDS
from .scope import Scope
from .stdlib import FUNCTIONS, Function
from .values import encode_json, is_number

logger = logging.getLogger("workflows.engine")


_SEVERITIES = {
    "DEFAULT": logging.INFO,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "NOTICE": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
    "ALERT": logging.CRITICAL,
    "EMERGENCY": logging.CRITICAL,
}


def call_http(method: str | None) -> Callable[[Scope, dict[str, Any]], Any]:
    """`http.get` etc. (fixed method) or `http.request` (method from the args)."""

    def invoke(scope: Scope, args: dict[str, Any]) -> Any:
        verb = method if method is not None else args.get("method")
        if not isinstance(verb, str):
            raise raised(TYPE_ERROR, "http.request: 'method' must be a string")
        return http_client.request(verb, args)

    return invoke


def call_sleep(scope: Scope, args: dict[str, Any]) -> Any:
    seconds: Any = args.get("seconds")
    if not is_number(seconds) or seconds < 0:
        raise raised(TYPE_ERROR, f"sys.sleep: 'seconds' must be a number >= 0, got {seconds!r}")
    if (
        seconds > MAX_SLEEP_SECONDS
    ):  # https://cloud.google.com/workflows/docs/reference/stdlib/sys/sleep
        raise raised(VALUE_ERROR, f"sys.sleep: at most {MAX_SLEEP_SECONDS} seconds (one year)")
    scope.ctx.clock.sleep(float(seconds), scope.ctx.token)
    return None


def call_sleep_until(scope: Scope, args: dict[str, Any]) -> Any:
    until = FUNCTIONS["time.parse"](scope.ctx, [args.get("time")])
    scope.ctx.clock.sleep(max(0.0, until - scope.ctx.clock.now()), scope.ctx.token)
    return None


def call_log(scope: Scope, args: dict[str, Any]) -> Any:
    severity = args.get("severity", "DEFAULT")
    if severity not in _SEVERITIES:
        raise raised(VALUE_ERROR, f"sys.log: unknown severity {severity!r}")
    payload = args.get("json", args.get("data", args.get("text")))
    message = payload if isinstance(payload, str) else encode_json(payload)
    fields = {
        "workflow": scope.ctx.env.get("GOOGLE_CLOUD_WORKFLOW_ID"),
        "execution": scope.ctx.env.get("GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID"),
        "workflow_severity": severity,
    }
    logger.log(_SEVERITIES[severity], message, extra={"json_fields": fields})
    return None


def call_function(fn: Function) -> Callable[[Scope, dict[str, Any]], Any]:
    """A stdlib function used as a `call:` target, with named args."""
    return lambda scope, args: fn(scope.ctx, fn.bind_named(args))
