"""A counting gRPC proxy in front of the Firestore emulator.

`tests/counting.py` hooks one client in one process; a run spans many (the launch in the backend,
every function under functions-framework, each its own OS process). Processes pointed at this
proxy (FIRESTORE_EMULATOR_HOST) reach the emulator through it unchanged, bytes for bytes, and it
counts every RPC by method, every document a commit or batch write touches and every document a
batch read asks for, so that a test or benchmark measures a whole run's Firestore traffic.

Every method is forwarded as a stream in both directions: on the wire a unary call is a stream
of one message, so one handler serves unary calls, server streams (RunQuery, BatchGetDocuments)
and the bidirectional Listen alike.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any

import grpc
from google.cloud.firestore_v1.types import firestore as messages
from google.cloud.firestore_v1.types.write import DocumentTransform

from local.processes import free_port
from tests.counting import hottest, written

_Transform = DocumentTransform.FieldTransform.pb()
# Methods that write (their requests name documents) and that read documents by name.
_WRITES: dict[str, Any] = {
    "Commit": messages.CommitRequest,
    "BatchWrite": messages.BatchWriteRequest,
}
_READS: dict[str, Any] = {"BatchGetDocuments": messages.BatchGetDocumentsRequest}


class Traffic:
    """RPCs by method (a stream counts once, when it opens), documents written by path and
    documents read by name, since the last `reset`."""

    def __init__(self) -> None:
        self.rpcs: Counter[str] = Counter()
        self.writes: Counter[str] = Counter()
        self.documents_read = 0
        # (collection, field path) of every field of a top-level collection's document that a
        # write set to a time (the client's, or the server's by a transform).
        self.stamped: set[tuple[str, str]] = set()
        # Automatic single-field index entries the writes made, by (collection id, top-level
        # field): two per value, one per distinct element of an array, a map's by its fields.
        self.entries: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.rpcs.clear()
            self.writes.clear()
            self.documents_read = 0
            self.stamped.clear()
            self.entries.clear()

    def snapshot(self) -> Traffic:
        """A copy of the counts now."""
        copy = Traffic()
        with self._lock:
            copy.rpcs = Counter(self.rpcs)
            copy.writes = Counter(self.writes)
            copy.documents_read = self.documents_read
            copy.stamped = set(self.stamped)
            copy.entries = Counter(self.entries)
        return copy

    def since(self, earlier: Traffic) -> Traffic:
        """What was counted after `earlier` (a `snapshot`)."""
        now = self.snapshot()
        now.rpcs.subtract(earlier.rpcs)
        now.writes.subtract(earlier.writes)
        now.entries.subtract(earlier.entries)
        now.rpcs = +now.rpcs
        now.writes = +now.writes
        now.entries = +now.entries
        now.documents_read -= earlier.documents_read
        return now

    def calls(self, *, listens: bool = False) -> int:
        """Every RPC; a client's listeners (`Listen`) only if `listens`."""
        return sum(n for name, n in self.rpcs.items() if listens or name != "Listen")

    def hottest(self, prefix: str = "") -> tuple[str, int]:
        """The document (whose path starts with `prefix`) written most, and how often."""
        return hottest(self.writes, prefix)

    @property
    def documents_written(self) -> int:
        return sum(self.writes.values())

    def _opened(self, method: str) -> None:
        with self._lock:
            self.rpcs[method] += 1

    def _request(self, method: str, payload: bytes) -> None:
        if method in _WRITES:
            request = _WRITES[method].deserialize(payload)
            paths = [written(write) for write in request.writes]
            stamped = {found for write in request.writes for found in _stamped(write)}
            entries: Counter[tuple[str, str]] = Counter()
            for write in request.writes:
                entries.update(_entries(write))
            with self._lock:
                for path in paths:
                    self.writes[path] += 1
                self.stamped |= stamped
                self.entries.update(entries)
        elif method in _READS:
            read = _READS[method].deserialize(payload)
            with self._lock:
                self.documents_read += len(read.documents)


def _stamped(write: Any) -> Iterator[tuple[str, str]]:
    """(collection, field path) of each time `write` puts in a top-level collection's document."""
    collection, *rest = written(write).split("/")
    if len(rest) != 1:
        return  # a sub-collection: one per parent document, its own range of every index
    pb = write._pb

    def times(fields: Any, prefix: str) -> Iterator[str]:
        for name, value in fields.items():
            yield from within(value, prefix + name)

    def within(value: Any, path: str) -> Iterator[str]:
        kind = value.WhichOneof("value_type")
        if kind == "timestamp_value":
            yield path
        elif kind == "map_value":
            yield from times(value.map_value.fields, f"{path}.")
        elif kind == "array_value":  # an array is indexed by its elements: named by the array
            for element in value.array_value.values:
                if any(within(element, path)):
                    yield path
                    return

    if pb.HasField("update"):
        for field in times(pb.update.fields, ""):
            yield collection, field
    for transform in _transforms(pb):
        if transform.set_to_server_value == _Transform.ServerValue.REQUEST_TIME:
            yield collection, transform.field_path


def _entries(write: Any) -> Counter[tuple[str, str]]:
    """The automatic index entries `write` makes, by (collection id, top-level field): of every
    field it sets (those of its mask, if it has one) and every field it transforms."""
    found: Counter[tuple[str, str]] = Counter()
    path = written(write).split("/")
    if len(path) < 2:
        return found
    collection = path[-2]
    pb = write._pb
    if pb.HasField("update"):
        fields = pb.update.fields
        masked = list(pb.update_mask.field_paths) if pb.HasField("update_mask") else list(fields)
        for field_path in masked:
            parts = _segments(field_path)
            value = _at(fields, parts)
            if value is not None:
                found[(collection, parts[0])] += _count(value)
    for transform in _transforms(pb):
        found[(collection, _segments(transform.field_path)[0])] += 2
    return found


def _transforms(pb: Any) -> list[Any]:
    """The field transforms of a write (with its update, or on their own)."""
    return list(pb.update_transforms) + list(pb.transform.field_transforms)


def _segments(field_path: str) -> list[str]:
    """A field path's names, back-quoted ones unquoted (a block id: `blocks.<id>.taken_at`)."""
    return field_path.replace("`", "").split(".")


def _at(fields: Any, parts: list[str]) -> Any:
    value = None
    for part in parts:
        if part not in fields:
            return None
        value = fields[part]
        fields = value.map_value.fields
    return value


def _count(value: Any) -> int:
    kind = value.WhichOneof("value_type")
    if kind == "map_value":
        inner = value.map_value.fields
        if "__type__" in inner and inner["__type__"].string_value == "__vector__":
            return 0  # a vector: only a vector index holds it
        return sum(_count(v) for v in inner.values())
    if kind == "array_value":
        return len({v.SerializeToString(deterministic=True) for v in value.array_value.values})
    return 2


class _Forward(grpc.GenericRpcHandler):  # type: ignore[misc]
    def __init__(self, channel: grpc.Channel, traffic: Traffic) -> None:
        self._channel = channel
        self._traffic = traffic

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = details.method
        name = method.rsplit("/", 1)[-1]
        forward = self._channel.stream_stream(method)  # bytes in, bytes out

        def handle(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
            self._traffic._opened(name)
            metadata = [
                (key, value)
                for key, value in context.invocation_metadata()
                if not key.startswith((":", "grpc-")) and key != "user-agent"
            ]

            def upstream() -> Iterator[bytes]:
                for payload in requests:
                    self._traffic._request(name, payload)
                    yield payload

            call = forward(upstream(), metadata=metadata)
            context.add_callback(call.cancel)
            try:
                yield from call
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.CANCELLED or context.is_active():
                    context.abort(error.code(), error.details() or "")

        return grpc.stream_stream_rpc_method_handler(handle)


@contextmanager
def proxy(emulator_host: str, *, workers: int = 128) -> Iterator[tuple[str, Traffic]]:
    """A proxy to `emulator_host` for the duration: its host (for FIRESTORE_EMULATOR_HOST) and
    the `Traffic` it counts. `workers` bounds the RPCs open at once (a listener holds one)."""
    traffic = Traffic()
    channel = grpc.insecure_channel(emulator_host)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    server.add_generic_rpc_handlers((_Forward(channel, traffic),))
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        yield f"127.0.0.1:{port}", traffic
    finally:
        server.stop(grace=None)
        channel.close()
