"""The one HTTP edge every function shares, the public API included: reading a JSON body,
the limits on what a caller may send, and JSON error answers.

Error body: `{"error": {"code": ..., "message": ..., "field": ...}}` with the status of the
`AppError` raised (see `common.platform.errors`) and the headers it names (`Allow`,
`Retry-After`, `WWW-Authenticate`); every answer of a function has that shape, also the ones
functions-framework, Flask and gunicorn give themselves (`/robots.txt`, a path Flask's router
refuses, a header over gunicorn's limit, a malformed request line, a crash) once
`serve_json_errors` ran in its main.py. Error text never carries a secret: every message is
redacted (`common.platform.secrets.redact`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import flask
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException, InternalServerError, RequestEntityTooLarge

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
# The largest body a client of the public API may send: a business input is a few KB.
MAX_CLIENT_BODY_BYTES = 64 * 1024
# Field paths come from the caller's keys: keep error text short whatever they sent.
_FIELD_CHARS = 200
# What gunicorn says of a request it refused before any function saw it, as our codes.
_GUNICORN_CODES = {
    400: "bad_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "headers_too_large",
    501: "not_implemented",
}


def json_body(request: flask.Request) -> Json:
    """The request's JSON object body, or why not: `MethodNotAllowed` (405) for anything but
    POST, `NotFound` for a path other than `/`, else as `read_json`."""
    if request.method != "POST":
        raise MethodNotAllowed(f"use POST, not {request.method[:20]}")
    if request.path != "/":
        raise NotFound(f"no such path: {request.path[:100]}; POST to /", code="unknown_path")
    return read_json(request)


def read_json(request: flask.Request, *, max_bytes: int = MAX_BODY_BYTES) -> Json:
    """The request's body as a JSON object.

    Raises:
        TooLarge: the body is over `max_bytes` (413; a chunked body is cut there too).
        InvalidInput: naming `body`: not sent as JSON, malformed, nested too deeply to parse,
            or not an object.
    """
    if (request.content_length or 0) > max_bytes:
        raise TooLarge(f"the body is over {max_bytes} bytes", field="body")
    # A body without Content-Length (chunked) is read only this far (Flask 3.1+).
    request.max_content_length = max_bytes
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise TooLarge(f"the body is over {max_bytes} bytes", field="body") from None
    if not request.is_json:
        raise InvalidInput(
            "send the body as JSON (Content-Type: application/json)",
            code="invalid_json",
            field="body",
        )
    try:
        body = json.loads(raw)
    except RecursionError:
        # The json module parses nested arrays and objects recursively.
        raise InvalidInput(
            "the body is nested too deeply", code="invalid_json", field="body"
        ) from None
    except ValueError as error:  # JSONDecodeError, or bytes in no Unicode encoding
        raise InvalidInput(
            f"the body is not valid JSON: {str(error)[:200]}", code="invalid_json", field="body"
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


def error_answer(
    error: AppError, *, event: str = "request_rejected"
) -> tuple[Json, int, dict[str, str]]:
    """The answer to `error` (its JSON body, status and headers), logged: a refusal at INFO,
    a temporary failure (5xx) at WARNING."""
    level = logging.WARNING if error.status >= 500 else logging.INFO
    logger.log(
        level, error.message, extra=log.fields(event=event, status=error.status, code=error.code)
    )
    return error_body(error), error.status, error.headers


def respond(handler: Callable[[], BaseModel | Json]) -> Answer:
    """Run `handler` and answer 200 with its result, or the status of the `AppError` it raised."""
    log.configure()
    try:
        result = handler()
    except AppError as error:
        return error_answer(error)
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json"), 200
    return result, 200


def serve_json_errors() -> None:
    """Give the answers Flask, functions-framework and gunicorn make themselves our JSON error
    shape.

    functions-framework answers `/robots.txt` and `/favicon.ico` with its own 404 (HTML), Flask's
    router a path it cannot match (one ending in a newline, `%0A`) likewise, and an exception
    that escapes a function (a bug) with a plain-text 500. gunicorn, which serves the function
    in production as locally, refuses some requests before Flask sees them (a header over its
    8190-byte limit, a lower-case or malformed method, a bad request line) with an HTML page.
    Call this at the top level of a function's main.py: functions-framework imports that module
    inside the app it is building, in the process that forks gunicorn's workers (elsewhere, e.g.
    when a test imports the module, this does nothing).
    """
    if not flask.has_app_context():
        return
    app = flask.current_app
    app.register_error_handler(HTTPException, _framework_error)
    app.register_error_handler(InternalServerError, _crash)
    app.register_error_handler(Exception, _crash)
    _gunicorn_json_errors()


def _framework_error(error: HTTPException) -> Answer:
    status = error.code or 500
    codes = {404: "unknown_path", 405: "method_not_allowed", 413: "body_too_large"}
    answer = AppError(error.description or error.name, code=codes.get(status, "http_error"))
    if status == 405:
        allowed = tuple(sorted(getattr(error, "valid_methods", None) or ("POST",)))
        answer = MethodNotAllowed(answer.message, allow=allowed)
    return error_body(answer), status, answer.headers


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


def gunicorn_error(status: int, reason: str, message: str) -> bytes:
    """The HTTP answer gunicorn sends for a request it refused, in our JSON error shape."""
    text = f"{reason}: {message}" if message else reason
    error = AppError(text[:300], code=_GUNICORN_CODES.get(status, "internal"))
    body = json.dumps(error_body(error)).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _gunicorn_json_errors() -> None:
    # gunicorn has no setting for the page it answers a refused request with: its workers call
    # `gunicorn.util.write_error(sock, status, reason, message)` (a stable signature since
    # gunicorn 19), which writes HTML. It is replaced, once, by one that writes our JSON.
    try:
        from gunicorn import util  # type: ignore[import-untyped]
    except ImportError:  # served by another server (e.g. Flask's own, in debug mode)
        return
    if getattr(util.write_error, "json_errors", False):
        return

    def write_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
        util.write_nonblock(sock, gunicorn_error(int(status_int), str(reason), str(mesg)))

    write_error.json_errors = True  # type: ignore[attr-defined]
    util.write_error = write_error
