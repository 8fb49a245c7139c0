"""Faults injected below the Firestore client library, so its own retry logic runs on them.

`lost_acks(client)` makes the client's next Commit and BatchWrite RPCs reach the server and be
applied, then fail with UNAVAILABLE as if the acknowledgement were lost on the way back. The
library retries both on UNAVAILABLE (its default retry policies), so the same writes arrive
twice: exactly what a flaky network does to a real client.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from google.cloud import firestore
from google.cloud.firestore_v1.services.firestore import FirestoreClient
from google.cloud.firestore_v1.services.firestore.transports.grpc import FirestoreGrpcTransport


class _Unavailable(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    """What gRPC raises when the connection drops after the server applied the call."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "injected fault: the commit was applied, its acknowledgement lost"

    def initial_metadata(self) -> tuple[()]:
        return ()

    def trailing_metadata(self) -> tuple[()]:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False

    # grpc treats what an interceptor returns as the call's outcome: a failed one raises.
    def result(self, timeout: float | None = None) -> Any:
        raise self

    def exception(self, timeout: float | None = None) -> BaseException:
        return self

    def traceback(self, timeout: float | None = None) -> None:
        return None


class LostAcks(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Drops the acknowledgement of the next `pending` Commits and BatchWrites (those `when`
    selects). A request is dropped the first time it is sent only: the library's retry of it
    gets the server's own answer, as on a network that loses a packet now and then."""

    def __init__(self) -> None:
        self.pending = 0
        self.dropped = 0
        self.when: Callable[[Any], bool] = lambda _request: True
        self._seen: set[bytes] = set()
        self._lock = threading.Lock()

    def arm(self, count: int = 1, when: Callable[[Any], bool] | None = None) -> None:
        with self._lock:
            self.pending = count
            self.when = when or (lambda _request: True)

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        outcome = continuation(details, request)
        if not details.method.endswith(("/Commit", "/BatchWrite")):
            return outcome
        with self._lock:
            sent = type(request).serialize(request)
            drop = self.pending > 0 and sent not in self._seen and self.when(request)
            self._seen.add(sent)
            if drop:
                self.pending -= 1
        if not drop:
            return outcome
        outcome.result()  # applied on the server (raises if the server refused it)
        self.dropped += 1
        return _Unavailable()


@contextmanager
def lost_acks(client: firestore.Client) -> Iterator[LostAcks]:
    """Route `client`'s RPCs through a `LostAcks` interceptor for the duration."""
    interceptor = LostAcks()
    previous = client._firestore_api_internal
    emulator = client._emulator_channel(FirestoreGrpcTransport)  # type: ignore[no-untyped-call]
    channel = grpc.intercept_channel(emulator, interceptor)
    client._firestore_api_internal = FirestoreClient(
        transport=FirestoreGrpcTransport(host=client._target, channel=channel)
    )
    try:
        yield interceptor
    finally:
        client._firestore_api_internal = previous
