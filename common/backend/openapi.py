"""The OpenAPI 3.1 document of the API, built from the route table and the pydantic models.

OpenAPI 3.1 schemas are JSON Schema 2020-12, which is what pydantic emits, so each model's
schema goes into `components/schemas` as pydantic writes it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from common.backend.routes import Route

REF = "#/components/schemas/{model}"
STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    400: "The request is malformed; `error.field` names what is wrong",
    401: "No valid Firebase ID token (missing, expired, forged, or for another project)",
    402: "The tier or the budget does not allow it (or the platform is paused)",
    403: "Signed in, but not a member (or not an owner) of the business",
    404: "No such run or member (a run of another business looks the same)",
    405: "Method not allowed on this path (see the `Allow` header)",
    409: (
        "The state forbids it: the run already ended, the last owner would leave, or the "
        "`Idempotency-Key` was used for another request (or its first request is still "
        "starting: retry after `Retry-After`)"
    ),
    413: "The body is too large",
    429: (
        "Too many runs started, or too many concurrent changes; retry after `Retry-After` seconds"
    ),
    503: "Temporarily unavailable; retry",
}


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class Error(BaseModel):
    """Every error answer: `{"error": {"code", "message", "field"?}}`."""

    error: ErrorDetail


def document(routes: list[Route], *, server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes` (`server_url`: where the API is served)."""
    models: set[tuple[type[BaseModel], Literal["validation", "serialization"]]] = {
        (Error, "serialization")
    }
    for route in routes:
        if route.response is not None:
            models.add((route.response, "serialization"))
        if route.body is not None:
            models.add((route.body, "validation"))
    ordered = sorted(models, key=lambda item: (item[0].__name__, item[1]))
    refs, schemas = models_json_schema(ordered, ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, refs)
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "RaptorFlow API",
            "version": "1",
            "description": (
                "Start, follow and read marketing analyses on behalf of signed-in users. "
                "Every operation but this document needs `Authorization: Bearer <Firebase ID "
                "token>`; access is by business membership. Live progress is read from "
                "Firestore with realtime listeners on the paths that starting a run answers."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "firebase": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
    if server_url:
        spec["servers"] = [{"url": server_url}]
    return spec


def _operation(route: Route, refs: dict[tuple[Any, Any], Any]) -> dict[str, Any]:
    def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
        schema: dict[str, Any] = refs[(model, mode)]
        return schema

    error = {"application/json": {"schema": ref(Error, "serialization")}}
    success: dict[str, Any] = {
        "application/json": {
            "schema": ref(route.response, "serialization") if route.response else {"type": "object"}
        }
    }
    if route.csv:
        success["text/csv"] = {"schema": {"type": "string"}}
    successes = {route.status: STATUS_TEXT[route.status], **dict(route.statuses)}
    responses: dict[str, Any] = {
        str(status): {"description": successes[status], "content": success}
        for status in sorted(successes)
    }
    statuses = set(route.errors) | {405}
    if route.auth:
        statuses |= {401, 403}
    if route.body is not None:
        statuses |= {400, 413}
    for status in sorted(statuses):
        responses[str(status)] = {"description": STATUS_TEXT[status], "content": error}
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in route.parameters
        ]
        + [
            {"name": q.name, "in": "query", "description": q.description, "schema": q.schema}
            for q in route.query
        ]
        + [
            {"name": h.name, "in": "header", "description": h.description, "schema": h.schema}
            for h in route.headers
        ],
        "responses": responses,
        "security": [{"firebase": []}] if route.auth else [],
    }
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(route.body, "validation")}},
        }
    return operation
