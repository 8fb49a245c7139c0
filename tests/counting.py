"""Counting what a Firestore client asks of the database: every RPC by method, and every document
a commit or a batch write touches, seen below the client library (a gRPC interceptor), so that
tests and benchmarks measure the code's own traffic instead of estimating it.

Production Firestore sustains about one write per second per document (the emulator enforces
none of that): `Calls.hottest()` is the document written most, which a test holds to a number of
writes per unit of work.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from google.cloud import firestore
from google.cloud.firestore_v1.services.firestore import FirestoreClient
from google.cloud.firestore_v1.services.firestore.transports.grpc import FirestoreGrpcTransport


class Calls(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """RPCs by method name (a listener's `Listen` stream counts once, when it opens) and
    document writes by path (`batched`: those sent in a BatchWrite; `commits`: what each commit
    wrote), since the last `reset`."""

    def __init__(self) -> None:
        self.rpcs: Counter[str] = Counter()
        self.writes: Counter[str] = Counter()
        self.batched: Counter[str] = Counter()
        self.commits: list[list[str]] = []  # the documents each commit wrote, in order
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.rpcs.clear()
            self.writes.clear()
            self.batched.clear()
            self.commits.clear()

    def _count(self, method: str, request: Any) -> None:
        name = method.rsplit("/", 1)[-1]
        paths = [written(w) for w in request.writes] if name in ("Commit", "BatchWrite") else []
        with self._lock:
            self.rpcs[name] += 1
            for path in paths:
                self.writes[path] += 1
                if name == "BatchWrite":
                    self.batched[path] += 1
            if name == "Commit":
                self.commits.append(paths)

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        self._count(details.method, request)
        return continuation(details, request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        self._count(details.method, request)
        return continuation(details, request)

    def intercept_stream_stream(
        self, continuation: Callable[..., Any], details: Any, requests: Any
    ) -> Any:
        self._count(details.method, None)
        return continuation(details, requests)

    @property
    def total(self) -> int:
        return sum(self.rpcs.values())

    def hottest(self, prefix: str = "") -> tuple[str, int]:
        """The document (whose path starts with `prefix`) written most, and how often."""
        return hottest(self.writes, prefix)


def written(write: Any) -> str:
    """The path (below `documents/`) of the document one write of a commit touches."""
    name = write.update.name or write.delete or write.transform.document
    return str(name).split("/documents/", 1)[-1]


def hottest(writes: Counter[str], prefix: str = "") -> tuple[str, int]:
    """The document (whose path starts with `prefix`) written most in `writes`, and how often."""
    found = [(path, n) for path, n in writes.items() if path.startswith(prefix)]
    return max(found, key=lambda item: item[1]) if found else ("", 0)


@contextmanager
def counting(client: firestore.Client) -> Iterator[Calls]:
    """Route `client`'s RPCs through a `Calls` counter for the duration."""
    calls = Calls()
    previous = client._firestore_api_internal
    emulator = client._emulator_channel(FirestoreGrpcTransport)  # type: ignore[no-untyped-call]
    channel = grpc.intercept_channel(emulator, calls)
    client._firestore_api_internal = FirestoreClient(
        transport=FirestoreGrpcTransport(host=client._target, channel=channel)
    )
    try:
        yield calls
    finally:
        client._firestore_api_internal = previous
