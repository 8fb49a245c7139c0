"""How many runs one user may start: a token bucket per uid, sharded over a few documents so
that the limit is never itself a hot document (issue 22: ten simultaneous starts by one member
exhausted the retries of a transaction on one bucket document and answered 500).

The bucket holds up to `api_run_burst` tokens and gains one every `api_run_refill_seconds`.
Its tokens are spread over `shards(burst)` documents `rate_limits/{uid hash}-{shard}`, each a
small bucket of its share of the burst (`capacity`). Time is cut into ticks of the refill
period, counted from the epoch, and tick `n` adds its token to shard `n mod shards`: together
the shards gain one token per tick, as the single bucket would. Over any `T` seconds they grant
at most `burst + T / refill + 1` tokens (one more than a bucket refilled continuously, for the
tick that may fall inside the window), never more; they may grant fewer, when a tick falls on a
shard that is full while another is empty.

Taking a token reads every shard in one request, picks one that holds a token and writes it
back only if nobody wrote it meanwhile (a precondition on its update time, no transaction and
so no lock), else looks again. A refused request writes nothing; so much contention that every
attempt loses is a 429 with `Retry-After: 1` too (`Contention`), never a 5xx.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions
from google.cloud import firestore

from common.platform.errors import Contention, TooManyRequests
from common.platform.settings import get_settings
from common.platform.store import db

RATE_LIMITS = "rate_limits"
MAX_SHARDS = 4
# Rounds of reading the shards and trying one before answering `Contention`.
ATTEMPTS = 6


def shards(burst: int) -> int:
    """How many documents a bucket of `burst` tokens is spread over (each holds at least one)."""
    return max(1, min(burst, MAX_SHARDS))


def capacity(burst: int, shard: int) -> int:
    """How many of the `burst` tokens shard `shard` holds when full."""
    count = shards(burst)
    return burst // count + (1 if shard < burst % count else 0)


def ticks(shard: int, count: int, after: int, upto: int) -> int:
    """How many ticks in (`after`, `upto`] are `shard`'s, of `count` (tick n is n mod count's)."""
    return (upto - shard) // count - (after - shard) // count


@dataclass(frozen=True)
class _Shard:
    ref: firestore.DocumentReference
    snapshot: Any  # DocumentSnapshot
    tokens: int  # now, refill included
    tick: int


def _refs(uid: str, count: int) -> list[firestore.DocumentReference]:
    # Hashed: a uid is any string up to 128 characters, a document id may not hold "/".
    key = hashlib.sha256(uid.encode()).hexdigest()[:32]
    collection = db().collection(RATE_LIMITS)
    return [collection.document(f"{key}-{shard}") for shard in range(count)]


def _read(uid: str, burst: int, tick: int) -> list[_Shard]:
    count = shards(burst)
    refs = _refs(uid, count)
    found = {snapshot.reference.path: snapshot for snapshot in db().get_all(refs)}
    read = []
    for shard, ref in enumerate(refs):
        snapshot = found.get(ref.path)
        full = capacity(burst, shard)
        data = (snapshot.to_dict() or {}) if snapshot is not None and snapshot.exists else None
        if data is None:
            read.append(_Shard(ref, snapshot, full, tick))
            continue
        last = int(data.get("tick", tick))
        # A tick is counted once: an instance whose clock is behind the last writer's adds
        # nothing and keeps the later tick.
        gained = ticks(shard, count, last, tick) if tick > last else 0
        tokens = min(full, int(data.get("tokens", full)) + gained)
        read.append(_Shard(ref, snapshot, tokens, max(last, tick)))
    return read


def _take(uid: str, shard: _Shard) -> bool:
    """Write `shard` back with one token fewer, unless someone wrote it since it was read."""
    state = {"uid": uid, "tokens": shard.tokens - 1, "tick": shard.tick}
    try:
        if shard.snapshot is None or not shard.snapshot.exists:
            shard.ref.create(state)
        else:
            option = db().write_option(last_update_time=shard.snapshot.update_time)
            shard.ref.update(state, option=option)
    except (exceptions.FailedPrecondition, exceptions.AlreadyExists, exceptions.Aborted):
        return False
    return True


def take_run_token(uid: str, *, now: float | None = None) -> None:
    """Take one token from `uid`'s bucket.

    Args:
        uid: The user starting a run.
        now: Seconds since the epoch (default: this instance's clock).

    Raises:
        TooManyRequests: the bucket is empty (`rate_limited`, Retry-After until the next
            tick); nothing was written.
        Contention: every attempt lost a race with the same user's other requests (429,
            Retry-After 1); nothing was taken.
    """
    settings = get_settings()
    burst, refill = settings.api_run_burst, settings.api_run_refill_seconds
    for _ in range(ATTEMPTS):
        at = time.time() if now is None else now
        tick = math.floor(at / refill)
        available = [shard for shard in _read(uid, burst, tick) if shard.tokens >= 1]
        if not available:
            retry_after = max(1, math.ceil((tick + 1) * refill - at))
            raise TooManyRequests(
                f"too many runs started: {burst} at most at once, one more every "
                f"{refill:g} s; try again in {retry_after} s",
                retry_after=retry_after,
            )
        if _take(uid, random.choice(available)):
            return
    raise Contention("too many runs started at the same moment; try again")
