"""Retry predicates: http.default_retry_predicate(_non_idempotent), retry.always, retry.never."""

from __future__ import annotations

from typing import Any

from ..errors import CONNECTION_ERROR, CONNECTION_FAILED_ERROR, HTTP_ERROR, TIMEOUT_ERROR
from .registry import function


def _tags(error: Any) -> list[Any]:
    tags = error.get("tags") if isinstance(error, dict) else None
    return tags if isinstance(tags, list) else []


@function("http.default_retry_predicate", "exception")
def default_retry_predicate(error: Any) -> bool:
    """429, 502, 503, 504, ConnectionError, ConnectionFailedError and TimeoutError are retried."""
    tags = _tags(error)
    if HTTP_ERROR in tags and error.get("code") in (429, 502, 503, 504):
        return True
    return any(t in tags for t in (CONNECTION_ERROR, CONNECTION_FAILED_ERROR, TIMEOUT_ERROR))


@function("http.default_retry_predicate_non_idempotent", "exception")
def default_retry_predicate_non_idempotent(error: Any) -> bool:
    """Only 429, 503 and ConnectionFailedError: a request that may have run is not repeated."""
    tags = _tags(error)
    if HTTP_ERROR in tags and error.get("code") in (429, 503):
        return True
    return CONNECTION_FAILED_ERROR in tags


@function("retry.always", "exception")
def _always(error: Any) -> bool:
    return True


@function("retry.never", "exception")
def _never(error: Any) -> bool:
    return False
