"""`Idempotency-Key` on starting a run, the convention Stripe's API made standard
(https://docs.stripe.com/api/idempotent_requests): a client that cannot tell whether its start
went through (a timeout, a dropped connection) sends it again with the same key, and gets the
run the first request started instead of a second run.

- The same key with the same request within 24 hours answers the first run (200, same id).
- The same key with another request (another business or body) is a 409
  (`idempotency_key_reused`): a key names one request.
- A key whose first request is still starting its run makes the duplicate wait for it (up to
  `WAIT_SECONDS`, then 409 `idempotency_key_in_use` with Retry-After, as Stripe answers).
- Only a started run is remembered: a refused start (400, 402, 429, ...) frees the key, so the
  same request may be sent again once the cause is gone, and still starts at most one run.

Keys are per user (two users' equal keys are unrelated), in `idempotency_keys/{hash}`; the
document's `expires_at` is the field of Firestore's TTL policy (terraform/firestore.tf), and an
expired key is treated as unused before the policy deletes it.

Exactly one request claims a key: the claim is a `create` (or, over an expired or abandoned
claim, an update conditional on the update time read), and it fixes the run's id up front. The
run document is created once per id (`launch.start_run`), so even a claim taken over from a
request that died mid-start cannot start a second run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions
from google.cloud import firestore
from pydantic import BaseModel

from common.platform.errors import Conflict, InvalidInput
from common.platform.store import db
from common.runs import documents

KEYS = "idempotency_keys"
HEADER = "Idempotency-Key"
LIFETIME = dt.timedelta(hours=24)
# A claim whose request has not finished starting its run within this long is taken to have
# died with its instance, and may be taken over (starting a run takes well under a second).
LEASE = dt.timedelta(seconds=60)
# How long a duplicate waits for the first request to finish before answering 409.
WAIT_SECONDS = 15.0
MAX_KEY_CHARS = 255


class KeyInUse(Conflict):
    """The key's first request is still starting its run: retry in a moment."""

    code = "idempotency_key_in_use"

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


@dataclass(frozen=True)
class Started:
    """The run a keyed start answers: `replayed` when an earlier request with the key started it."""

    run_id: str
    replayed: bool


def parse_key(value: str | None) -> str | None:
    """The `Idempotency-Key` header's value, or None without one.

    Raises:
        InvalidInput: empty, longer than 255 characters, or not printable ASCII (field
            `Idempotency-Key`).
    """
    if value is None:
        return None
    value = value.strip(" ")  # optional whitespace around a header's value is not part of it
    if not 1 <= len(value) <= MAX_KEY_CHARS or not value.isascii() or not value.isprintable():
        raise InvalidInput(
            f"{HEADER} must be 1 to {MAX_KEY_CHARS} printable ASCII characters (a UUID is usual)",
            code="invalid_field",
            field=HEADER,
        )
    return value


def fingerprint(business_id: str, request: BaseModel) -> str:
    """What makes two requests the same: the business and the request as validated (so the
    order of keys, spacing and defaults spelled out do not count)."""
    canonical = json.dumps(
        {"business_id": business_id, "request": request.model_dump(mode="json")},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _ref(uid: str, key: str) -> firestore.DocumentReference:
    name = hashlib.sha256(f"{uid}\n{key}".encode()).hexdigest()
    ref: firestore.DocumentReference = db().collection(KEYS).document(name)
    return ref


def start_once(
    uid: str,
    key: str,
    business_id: str,
    request_fingerprint: str,
    start: Callable[[str], object],
) -> Started:
    """Start the run of a keyed request at most once: `start(run_id)` runs only for the request
    that claims the key.

    Raises:
        Conflict: the key was used for another request (`idempotency_key_reused`), or its first
            request is still starting (`KeyInUse`).
        Whatever `start` raises; the key is then free again.
    """
    ref = _ref(uid, key)
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        now = dt.datetime.now(dt.UTC)
        snapshot = ref.get()
        data = snapshot.to_dict() if snapshot.exists else None
        if data is None or data["expires_at"] <= now:
            run_id = uuid.uuid4().hex
            claim = {
                "uid": uid,
                "key": key,
                "business_id": business_id,
                "fingerprint": request_fingerprint,
                "run_id": run_id,
                "state": "pending",
                "created_at": now,
                "pending_until": now + LEASE,
                "expires_at": now + LIFETIME,
            }
            written = _write(ref, snapshot, claim)
            if written is not None:
                return _start(ref, run_id, written, start)
            continue  # another request claimed it first: look again
        if data["fingerprint"] != request_fingerprint:
            raise Conflict(
                f"this {HEADER} was used for another request in the last 24 hours; "
                "use a new key for a new request",
                code="idempotency_key_reused",
                field=HEADER,
            )
        run_id = str(data["run_id"])
        if data["state"] == "started":
            return Started(run_id, replayed=True)
        if data["pending_until"] <= now:
            # Its request died while starting. If it got as far as the run, that is the answer.
            if documents.run_ref(run_id).get().exists:
                _mark_started(ref)
                return Started(run_id, replayed=True)
            written = _write(ref, snapshot, {"pending_until": now + LEASE})
            if written is not None:
                return _start(ref, run_id, written, start)
            continue
        if time.monotonic() >= deadline:
            raise KeyInUse(
                f"a request with this {HEADER} is still starting its run; try again",
                field=HEADER,
            )
        time.sleep(random.uniform(0.05, 0.2))


def _write(
    ref: firestore.DocumentReference, snapshot: Any, fields: dict[str, Any]
) -> dt.datetime | None:
    """Claim: create the document, or change it only if nobody wrote it since `snapshot`;
    the write's update time, or None when another request was first."""
    try:
        if not snapshot.exists:
            result = ref.create(fields)
        else:
            option = db().write_option(last_update_time=snapshot.update_time)
            result = ref.update(fields, option=option)
    except (exceptions.AlreadyExists, exceptions.FailedPrecondition, exceptions.NotFound):
        return None
    updated: dt.datetime = result.update_time
    return updated


def _start(
    ref: firestore.DocumentReference,
    run_id: str,
    claimed_at: dt.datetime,
    start: Callable[[str], object],
) -> Started:
    try:
        start(run_id)
    except exceptions.AlreadyExists:
        # The run exists: the request this claim was taken over from created it after all.
        _mark_started(ref)
        return Started(run_id, replayed=True)
    except BaseException:
        # Nothing started under this key: free it for the same request to be sent again
        # (unless another request took the claim over meanwhile).
        option = db().write_option(last_update_time=claimed_at)
        with contextlib.suppress(exceptions.FailedPrecondition, exceptions.NotFound):
            ref.delete(option=option)
        raise
    _mark_started(ref)
    return Started(run_id, replayed=False)


def _mark_started(ref: firestore.DocumentReference) -> None:
    ref.update({"state": "started", "pending_until": None})
