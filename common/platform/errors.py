"""Errors a caller can act on. Each maps to one HTTP status in `common.platform.http`.

Anything else is a bug: it propagates, the function answers 500, and the workflow does not
retry it.
"""

from __future__ import annotations

from pydantic import ValidationError


class AppError(Exception):
    """An error with an HTTP status and a stable, machine-readable code."""

    status = 500
    code = "internal"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.field = field

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers the answer carries besides its body (`Allow`, `Retry-After`, ...)."""
        return {}


class InvalidInput(AppError):
    status = 400
    code = "invalid_input"


class MethodNotAllowed(AppError):
    """The path exists but not with this method; the answer's `Allow` lists those it takes
    (functions take POST only)."""

    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, *, allow: tuple[str, ...] = ("POST",)) -> None:
        super().__init__(message)
        self.allow = allow

    @property
    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allow)}


class TooLarge(AppError):
    status = 413
    code = "body_too_large"


class PaymentRequired(AppError):
    """The budget refused: `code` is the budget's reason (e.g. daily_budget_exceeded)."""

    status = 402
    code = "budget_exceeded"


class Forbidden(AppError):
    """Signed in, but not allowed: not a member (or not an owner) of the business."""

    status = 403
    code = "forbidden"


class NotFound(AppError):
    status = 404
    code = "not_found"


class Conflict(AppError):
    """The request is valid but the run's state forbids it (e.g. the run was cancelled)."""

    status = 409
    code = "conflict"


class Busy(AppError):
    """Temporarily unable (another instance holds the step, a provider is down): retry later."""

    status = 503
    code = "busy"


class TooManyRequests(AppError):
    """Not now: retry after `retry_after` seconds (the answer's `Retry-After`)."""

    status = 429
    code = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        retry_after: int = 1,
        code: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message, code=code, field=field)
        self.retry_after = max(1, retry_after)

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Contention(TooManyRequests, Busy):
    """Too many concurrent changes of one document: nothing was changed, retry in a moment.

    A 429 rather than a 5xx: the caller's own concurrency is the cause, and both a client and
    the workflow's retry policy (429, 502, 503, 504) try again after `Retry-After`."""

    status = 429
    code = "contention"


def problems(error: ValidationError, *, root: str = "(top level)") -> list[tuple[str, str]]:
    """(dotted field path, message) for each problem pydantic found, in its order; `root` names
    a problem with the whole value."""
    return [
        (".".join(str(part) for part in item["loc"]) or root, item["msg"])
        for item in error.errors()
    ]
