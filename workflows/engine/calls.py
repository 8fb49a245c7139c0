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
from .values import check_string, encode_json, is_number, type_name

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
    seconds = until - scope.ctx.clock.now()
    # "The latest allowed time is one year from now"
    # (https://cloud.google.com/workflows/docs/reference/stdlib/sys/sleep_until); a time that
    # is a valid timestamp but too late is a ValueError, like sys.sleep's over one year.
    if seconds > MAX_SLEEP_SECONDS:
        raise raised(
            VALUE_ERROR, f"sys.sleep_until: {args['time']!r} is more than one year from now"
        )
    scope.ctx.clock.sleep(max(0.0, seconds), scope.ctx.token)
    return None


# Positional order of sys.log's arguments, as its page's list-form examples use them.
LOG_PARAMS = ("data", "severity", "text", "json", "timeout")
_LOGGABLE = ("int", "double", "bool", "string", "list", "map")


def call_log(scope: Scope, args: dict[str, Any]) -> Any:
    """`sys.log` with the checks of https://cloud.google.com/workflows/docs/reference/stdlib/sys/log.

    Exactly one of data, text and json (an argument given as null counts as not given, which is
    how the list form skips one); data and text of a loggable type, json a map. A map given as
    data, and json, are logged as a JSON payload; everything else as text.
    """
    given = {name: args[name] for name in ("data", "text", "json") if args.get(name) is not None}
    if len(given) != 1:
        which = "none" if not given else " and ".join(sorted(given))
        raise raised(TYPE_ERROR, f"sys.log: give exactly one of data, text and json (got {which})")
    kind, payload = next(iter(given.items()))
    if kind == "json" and not isinstance(payload, dict):
        raise raised(TYPE_ERROR, f"sys.log: 'json' must be a map, not {type_name(payload)}")
    if type_name(payload) not in _LOGGABLE:
        raise raised(TYPE_ERROR, f"sys.log: '{kind}' cannot be a {type_name(payload)}")
    severity = args.get("severity")
    severity = "DEFAULT" if severity is None else severity
    if not isinstance(severity, str) or severity not in _SEVERITIES:
        raise raised(VALUE_ERROR, f"sys.log: unknown severity {severity!r}")
    json_payload = kind == "json" or (kind == "data" and isinstance(payload, dict))
    message = payload if isinstance(payload, str) else encode_json(payload)
    fields = {
        "workflow": scope.ctx.env.get("GOOGLE_CLOUD_WORKFLOW_ID"),
        "execution": scope.ctx.env.get("GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID"),
        "workflow_severity": severity,
        "payload": "jsonPayload" if json_payload else "textPayload",
    }
    logger.log(_SEVERITIES[severity], message, extra={"json_fields": fields})
    return None


def call_function(fn: Function) -> Callable[[Scope, dict[str, Any]], Any]:
    """A stdlib function used as a `call:` target, with named args."""
    return lambda scope, args: check_string(fn(scope.ctx, fn.bind_named(args)))
