"""The API's route table: what each path and method answers, in one place that both the
dispatcher (`common.backend.app`) and the OpenAPI document (`common.backend.openapi`) read, so
the document cannot drift from what is served.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import flask
from pydantic import BaseModel

from common.backend.auth import User

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
    """A query-string parameter, for the OpenAPI document."""

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
    auth: bool = True
    errors: tuple[int, ...] = ()
    csv: bool = False  # also answers text/csv when the client accepts it

    @property
    def pattern(self) -> re.Pattern[str]:
        regex = re.sub(r"\\\{(\w+)\\\}", rf"(?P<\1>{PARAMETER})", re.escape(self.path))
        return re.compile(f"^{regex}$")

    @property
    def parameters(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.path)


def match(routes: list[Route], path: str) -> list[tuple[Route, dict[str, str]]]:
    """Every route whose path template matches `path`, with the path's values."""
    found = []
    for route in routes:
        matched = route.pattern.match(path)
        if matched:
            found.append((route, matched.groupdict()))
    return found
