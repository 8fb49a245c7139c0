"""How many runs one user may start: a token bucket per uid in `rate_limits/{uid}`.

The bucket holds up to `api_run_burst` tokens and gains one every `api_run_refill_seconds`.
Taking a token is one Firestore transaction, so concurrent requests of one user (on any
instance) cannot overdraw it. A refused request writes nothing: the transaction only writes
when it takes a token.
"""

from __future__ import annotations

import datetime as dt
import math

from google.cloud import firestore

from common.platform.errors import AppError
from common.platform.settings import get_settings
from common.platform.store import db

RATE_LIMITS = "rate_limits"


class TooManyRequests(AppError):
    """The user started too many runs; `retry_after` seconds until the next is allowed."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def take_run_token(uid: str, *, now: dt.datetime | None = None) -> None:
    """Take one token from `uid`'s bucket.

    Raises:
        TooManyRequests: the bucket is empty; nothing was written.
    """
    settings = get_settings()
    burst, refill = settings.api_run_burst, settings.api_run_refill_seconds
    ref = db().collection(RATE_LIMITS).document(uid)

    @firestore.transactional
    def take(transaction: firestore.Transaction, at: dt.datetime) -> float:
        """Seconds until a token is available (0 if one was taken)."""
        data = ref.get(transaction=transaction).to_dict() or {}
        tokens = float(data.get("tokens", burst))
        updated = data.get("updated_at")
        if isinstance(updated, dt.datetime):
            tokens = min(burst, tokens + max((at - updated).total_seconds(), 0) / refill)
        if tokens < 1:
            return (1 - tokens) * refill
        transaction.set(ref, {"tokens": tokens - 1, "updated_at": at})
        return 0.0

    wait = take(db().transaction(), now or dt.datetime.now(dt.UTC))
    if wait > 0:
        retry_after = max(1, math.ceil(wait))
        raise TooManyRequests(
            f"too many runs started: {burst} at most at once, one more every "
            f"{refill:g} s; try again in {retry_after} s",
            retry_after=retry_after,
        )
