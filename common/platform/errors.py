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


class InvalidInput(AppError):
    status = 400
    code = "invalid_input"


class MethodNotAllowed(AppError):
    """Functions take POST only (the answer carries `Allow: POST`)."""

    status = 405
    code = "method_not_allowed"


class TooLarge(AppError):
    status = 413
    code = "body_too_large"


class PaymentRequired(AppError):
    """The budget refused: `code` is the budget's reason (e.g. daily_budget_exceeded)."""

    status = 402
    code = "budget_exceeded"


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


def problems(error: ValidationError, *, root: str = "(top level)") -> list[tuple[str, str]]:
    """(dotted field path, message) for each problem pydantic found, in its order; `root` names
    a problem with the whole value."""
    return [
        (".".join(str(part) for part in item["loc"]) or root, item["msg"])
        for item in error.errors()
    ]
