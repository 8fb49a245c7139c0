"""What every HTTP function shares: request parsing with pydantic and JSON error bodies.

Error body: `{"error": {"code": ..., "message": ..., "field": ...}}` with the status of the
`AppError` raised (see `common.platform.errors`); every answer of a function has that shape,
also the ones functions-framework and Flask give themselves (`/robots.txt`, a crash) once
`serve_json_errors` ran in its main.py. Error
text never carries a secret: every message is redacted (`common.platform.secrets.redact`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import flask
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException, InternalServerError

from common.models import cleaned_text
from common.platform import log
from common.platform.errors import (
    AppError,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    TooLarge,
    problems,
)
from common.platform.secrets import redact

M = TypeVar("M", bound=BaseModel)
Json = dict[str, Any]
Answer = tuple[Json, int] | tuple[Json, int, dict[str, str]]
logger = logging.getLogger(__name__)

# The largest body a function reads: a task check's input (1,000,000 characters) JSON-escaped.
MAX_BODY_BYTES = 8 * 1024 * 1024
# Field paths come from the caller's keys: keep error text short whatever they sent.
_FIELD_CHARS = 200
ALLOW = {"Allow": "POST"}


def json_body(request: flask.Request) -> Json:
    """The request's JSON object body, or why not: `MethodNotAllowed` (405) for anything but
    POST, `NotFound` for a path other than `/`, `InvalidInput` for a body that is not a JSON
    object (malformed, nested too deeply to parse, not an object)."""
    if request.method != "POST":
        raise MethodNotAllowed(f"use POST, not {request.method[:20]}")
    if request.path != "/":
        raise NotFound(f"no such path: {request.path[:100]}; POST to /", code="unknown_path")
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise TooLarge(f"the body is over {MAX_BODY_BYTES} bytes", field="body")
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        # The json module parses nested arrays and objects recursively.
        raise InvalidInput(
            "the body is nested too deeply", code="invalid_json", field="body"
        ) from None
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object", code="invalid_json", field="body")
    return body


def parse(request: flask.Request, model: type[M]) -> M:
    """The request's JSON body as `model`, or `InvalidInput` naming the first bad field."""
    return validate(json_body(request), model)


def validate(body: Json, model: type[M]) -> M:
    """`body` as `model`, or `InvalidInput` naming the first bad field."""
    try:
        return model.model_validate(body)
    except RecursionError:  # pydantic validates nested values recursively too
        raise InvalidInput(
            "the body is nested too deeply", code="invalid_json", field="body"
        ) from None
    except ValidationError as exc:
        field, message = problems(exc, root="body")[0]
        field = cleaned_text(field)[:_FIELD_CHARS]
        raise InvalidInput(f"{field}: {message}", code="invalid_field", field=field) from exc


def error_body(error: AppError) -> Json:
    """The JSON body of an error answer; its message is redacted."""
    body: Json = {"code": error.code, "message": redact(error.message)}
    if error.field is not None:
        body["field"] = error.field
    return {"error": body}


def respond(handler: Callable[[], BaseModel | Json]) -> Answer:
    """Run `handler` and answer 200 with its result, or the status of the `AppError` it raised."""
    log.configure()
    try:
        result = handler()
    except AppError as error:
        level = logging.WARNING if error.status >= 500 else logging.INFO
        logger.log(
            level,
            error.message,
            extra={
                "json_fields": {
                    "event": "request_rejected",
                    "status": error.status,
                    "code": error.code,
                }
            },
        )
        if isinstance(error, MethodNotAllowed):
            return error_body(error), error.status, ALLOW
        return error_body(error), error.status
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json"), 200
    return result, 200


def serve_json_errors() -> None:
    """Give the answers Flask and functions-framework make themselves our JSON error shape.

    functions-framework answers `/robots.txt` and `/favicon.ico` with its own 404 (HTML), and
    an exception that escapes a function (a bug) with a plain-text 500. Call this at the top
    level of a function's main.py: functions-framework imports that module inside the app it
    is building (elsewhere, e.g. when a test imports the module, this does nothing).
    """
    if not flask.has_app_context():
        return
    app = flask.current_app
    app.register_error_handler(HTTPException, _framework_error)
    app.register_error_handler(InternalServerError, _crash)
    app.register_error_handler(Exception, _crash)


def _framework_error(error: HTTPException) -> Answer:
    status = error.code or 500
    codes = {404: "unknown_path", 405: "method_not_allowed", 413: "body_too_large"}
    body = error_body(
        AppError(error.description or error.name, code=codes.get(status, "http_error"))
    )
    return (body, status, ALLOW) if status == 405 else (body, status)


def _crash(error: Exception) -> Answer:
    # Our bug: logged with its traceback (Flask logged it already when it hands over an
    # InternalServerError), answered without its text, with the header functions-framework
    # uses to mark a crash.
    if not isinstance(error, InternalServerError):
        logger.error(
            "unhandled exception", exc_info=error, extra=log.fields(event="function_crashed")
        )
    body = error_body(AppError("internal error: see the function's log", code="internal"))
    return body, 500, {"X-Google-Status": "crash"}
