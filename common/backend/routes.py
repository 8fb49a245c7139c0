"""The API's route table and its dispatch: what each path and method answers, in one place
that both `serve` and the OpenAPI document (`common.backend.openapi`) read, so the document
cannot drift from what is served.

`serve` answers one request on the shared HTTP edge (`common.platform.http`): the route (404,
405 with `Allow`, CORS preflight), the caller's token (401), then the handler; every `AppError`
becomes the JSON error shape with its headers, and CORS headers go on every answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import flask
from pydantic import BaseModel

from common.backend import auth
from common.backend.auth import User
from common.platform import http, log
from common.platform.errors import AppError, MethodNotAllowed, NotFound
from common.platform.settings import get_settings

# Path parameters: Firestore document ids as this backend creates and accepts them.
PARAMETER = r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}"


@dataclass(frozen=True)
class Call:
    """One request, routed: the verified user (None on public routes) and the path's values."""

    request: flask.Request
    user: User | None
    params: dict[str, str]

    @property
    def uid(self) -> str:
        assert self.user is not None, "a route with auth=True always has a user"
        return self.user.uid


@dataclass(frozen=True)
class Reply:
    """What a handler answers: a JSON-able body (or text with `content_type`), and a status."""

    body: Any
    status: int = 200
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Query:
    """A query-string (or header) parameter, for the OpenAPI document."""

    name: str
    description: str
    schema: dict[str, Any]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # an OpenAPI path template: /v1/runs/{run_id}:cancel
    handler: Callable[[Call], Reply]
    operation_id: str
    summary: str
    response: type[BaseModel] | None  # None: a free-form JSON object
    status: int = 200
    body: type[BaseModel] | None = None
    query: tuple[Query, ...] = ()
    headers: tuple[Query, ...] = ()  # request headers it reads besides Authorization
    auth: bool = True
    statuses: tuple[tuple[int, str], ...] = ()  # other successes (answering `response` too)
    errors: tuple[int, ...] = ()
    csv: bool = False  # also answers text/csv when the client accepts it

    @property
    def pattern(self) -> re.Pattern[str]:
        regex = re.sub(r"\\\{(\w+)\\\}", rf"(?P<\1>{PARAMETER})", re.escape(self.path))
        return re.compile(regex)

    @property
    def parameters(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.path)


def match(routes: list[Route], path: str) -> list[tuple[Route, dict[str, str]]]:
    """Every route whose path template matches `path`, with the path's values."""
    found = []
    for route in routes:
        matched = route.pattern.fullmatch(path)
        if matched:
            found.append((route, matched.groupdict()))
    return found


def _cors(request: flask.Request) -> dict[str, str]:
    allowed = get_settings().api_allowed_origins
    origin = request.headers.get("Origin")
    if "*" in allowed:
        value = "*"
    elif origin in allowed:
        value = origin
    else:
        return {}
    return {
        "Access-Control-Allow-Origin": value,
        "Access-Control-Expose-Headers": "Retry-After, Location, Allow, Idempotent-Replayed",
        "Vary": "Origin",
    }


def _dispatch(routes: list[Route], request: flask.Request) -> Reply:
    candidates = match(routes, request.path)
    if not candidates:
        raise NotFound(f"no such path: {request.path[:200]}", code="unknown_path")
    allowed = sorted({route.method for route, _ in candidates} | {"OPTIONS"})
    if request.method == "OPTIONS":
        return Reply(
            "",
            status=204,
            headers={
                "Allow": ", ".join(allowed),
                "Access-Control-Allow-Methods": ", ".join(allowed),
                "Access-Control-Allow-Headers": (
                    "Authorization, Content-Type, Accept, Idempotency-Key"
                ),
                "Access-Control-Max-Age": "3600",
            },
        )
    for route, params in candidates:
        if route.method == request.method:
            user = auth.verify(request.headers.get("Authorization")) if route.auth else None
            return route.handler(Call(request=request, user=user, params=params))
    raise MethodNotAllowed(
        f"{request.method[:20]} is not allowed here; use {', '.join(allowed)}",
        allow=tuple(allowed),
    )


def serve(routes: list[Route], request: flask.Request) -> flask.Response:
    """Answer one request with the route it matches in `routes`."""
    log.configure()
    try:
        reply = _dispatch(routes, request)
    except AppError as error:
        body, status, headers = http.error_answer(error, event="api_rejected")
        reply = Reply(body, status=status, headers=headers)
    if reply.status == 204:
        text = ""
    elif isinstance(reply.body, str):
        text = reply.body
    elif isinstance(reply.body, BaseModel):
        text = reply.body.model_dump_json()
    else:
        text = json.dumps(reply.body)
    response = flask.Response(text, status=reply.status, content_type=reply.content_type)
    response.headers.update({**_cors(request), **reply.headers})
    return response
