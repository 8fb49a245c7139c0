"""The Firestore client: one per (project, database), created on first use.

With FIRESTORE_EMULATOR_HOST set, google-cloud-firestore talks to the emulator with
anonymous credentials; nothing here changes for local runs.
"""

from __future__ import annotations

import functools

from google.cloud import firestore

from common.platform.settings import get_settings


@functools.cache
def _client(project_id: str, database: str) -> firestore.Client:
    return firestore.Client(project=project_id, database=database)


def db(project_id: str | None = None) -> firestore.Client:
    """The Firestore client for `project_id` (default: the configured project)."""
    settings = get_settings()
    return _client(project_id or settings.project_id, settings.firestore_database)
