"""What every HTTP function shares: request parsing with pydantic and JSON error bodies.

Error body: `{"error": {"code": ..., "message": ..., "field": ...}}` with the status of the
`AppError` raised (see `common.errors`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import flask
from pydantic import BaseModel, ValidationError

from common.platform import log
from common.platform.errors import AppError, InvalidInput, problems

M = TypeVar("M", bound=BaseModel)
Json = dict[str, Any]
logger = logging.getLogger(__name__)


def json_body(request: flask.Request) -> Json:
    """The request's JSON object body, or `InvalidInput`."""
    if request.method != "POST":
        raise InvalidInput(f"use POST, not {request.method}", code="method_not_allowed")
    body = request.get_json(silent=True)
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
    except ValidationError as exc:
        field, message = problems(exc, root="body")[0]
        raise InvalidInput(f"{field}: {message}", code="invalid_field", field=field) from exc


def error_body(error: AppError) -> Json:
    body: Json = {"code": error.code, "message": error.message}
    if error.field is not None:
        body["field"] = error.field
    return {"error": body}


def respond(handler: Callable[[], BaseModel | Json]) -> tuple[Json, int]:
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
        return error_body(error), error.status
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json"), 200
    return result, 200
