"""Where the CLI talks to: checking that it is there before a command starts, and pointing
this process at a stack it started."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

from common.platform.settings import get_settings

NO_BACKEND = (
    "no Firestore to talk to: FIRESTORE_EMULATOR_HOST is not set and no Google Cloud "
    "credentials were found.\n"
    "  Here: `raptorflow up` starts a local stack that every command then uses "
    "(`raptorflow run --local` starts one for a single run).\n"
    "  Google Cloud: `gcloud auth application-default login` and set GOOGLE_CLOUD_PROJECT."
)


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


def _reachable(address: str, what: str, variable: str) -> None:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=2):
            return
    except (OSError, ValueError):
        raise CliError(
            f"{what} answers at {address} ({variable}): start one "
            f"(`raptorflow up` starts a whole local stack) or unset {variable}"
        ) from None


def connect(*, executions: bool = False) -> None:
    """Fail now, in one line, when what the command needs is not there (instead of a client
    retrying for minutes against a closed port); missing credentials surface as `NO_BACKEND`."""
    emulator = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if emulator:
        _reachable(emulator, "no Firestore emulator", "FIRESTORE_EMULATOR_HOST")
    if not executions:
        return
    endpoint = get_settings().executions_endpoint
    if endpoint:
        _reachable(endpoint, "no workflow engine", "EXECUTIONS_ENDPOINT")
    elif emulator:
        raise CliError(
            "FIRESTORE_EMULATOR_HOST points at a local Firestore but EXECUTIONS_ENDPOINT is not "
            "set: set it to the local workflow engine (host:port), or use `raptorflow run --local`"
        )


@contextlib.contextmanager
def talking_to(env: dict[str, str]) -> Iterator[None]:
    """This process talks to a stack it started (its emulator, engine, project) until it stops;
    afterwards the environment is as it was (the CLI also runs inside other programs' processes,
    tests among them)."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()
