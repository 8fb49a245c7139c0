"""The Firestore client: one per (project, database), created on first use.

With FIRESTORE_EMULATOR_HOST set, google-cloud-firestore talks to the emulator with
anonymous credentials; nothing here changes for local runs.
"""

from __future__ import annotations

import functools
import os
import random
import time
from collections.abc import Callable
from typing import TypeVar

from google.api_core import exceptions
from google.cloud import firestore

from common.platform.errors import Contention
from common.platform.settings import get_settings

T = TypeVar("T")


@functools.cache
def _client(project_id: str, database: str, emulator: str | None) -> firestore.Client:
    # `emulator` is in the key: a process that moves to another stack (the CLI's
    # `talking_to`) must not keep a client of the one it left.
    return firestore.Client(project=project_id, database=database)


def db(project_id: str | None = None) -> firestore.Client:
    """The Firestore client for `project_id` (default: the configured project)."""
    settings = get_settings()
    emulator = os.environ.get("FIRESTORE_EMULATOR_HOST")
    return _client(project_id or settings.project_id, settings.firestore_database, emulator)


def transact(operation: Callable[[], T], *, what: str, attempts: int = 8) -> T:
    """`operation()` (a transaction, or a write), again after a jittered pause while Firestore
    aborts it for contention; `Contention` (429 with Retry-After) if it never gets through.

    A transaction's own retries all aborting surface as a ValueError caused by `Aborted`."""
    for attempt in range(attempts):
        try:
            return operation()
        except exceptions.Aborted:
            pass
        except ValueError as exhausted:
            if not isinstance(exhausted.__cause__, exceptions.Aborted):
                raise
        time.sleep(random.uniform(0, min(0.02 * 2**attempt, 1.0)))
    raise Contention(f"{what}: too many concurrent changes, try again")
