"""The run watcher (`common.runs.watcher`): one Firestore listener per run per process, fanned out
to every consumer, on the emulator; streams cut, refused or spinning through a loopback gRPC gate
in front of it (the real client on the wire, the real emulator behind)."""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from google.cloud import firestore
from pydantic import ValidationError

from common.models import BusinessInput
from common.platform.errors import NotFound
from common.platform.store import db
from common.runs import documents
from common.runs.watcher import ListenerFailed, Subscription, SubscriptionClosed, Watcher
from local.emulator import FirestoreEmulator
from tests.counting import counting

pytestmark = pytest.mark.emulator

LISTEN = "/google.firestore.v1.Firestore/Listen"


class ListenGate(grpc.GenericRpcHandler):  # type: ignore[misc]
    """A plain-gRPC front for the emulator that forwards every Firestore call as raw bytes and
    can end (`cut`) or refuse (`refuse`) Listen streams, as a server may; it counts them."""

    def __init__(self, upstream: str) -> None:
        self.opened = 0  # Listen calls received
        self.forwarded = 0  # Listen calls passed on to the emulator (each can be cut)
        self.refusing: grpc.StatusCode | None = None
        self._streams: dict[int, tuple[Any, list[grpc.StatusCode | None]]] = {}
        self._lock = threading.Lock()
        self._channel = grpc.insecure_channel(upstream)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        self._server.add_generic_rpc_handlers((self,))
        self.endpoint = f"127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"
        self._server.start()

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        if not details.method.startswith("/google.firestore.v1.Firestore/"):
            return None
        return grpc.stream_stream_rpc_method_handler(
            functools.partial(self._forward, details.method)
        )

    def _forward(self, method: str, requests: Any, context: grpc.ServicerContext) -> Any:
        listen = method == LISTEN
        if listen:
            with self._lock:
                self.opened += 1
                refusing = self.refusing
            if refusing is not None:
                context.abort(refusing, "refused by the gate")
        call = self._channel.stream_stream(method)(
            requests, metadata=tuple(context.invocation_metadata())
        )
        context.add_callback(call.cancel)
        ending: list[grpc.StatusCode | None] = []  # how a cut stream ends: OK or a status
        if listen:
            with self._lock:
                self._streams[id(call)] = (call, ending)
                self.forwarded += 1
        try:
            yield from call
        except grpc.RpcError as error:
            if ending and ending[0] is not None:
                context.abort(ending[0], "cut by the gate")
            if not ending and error.code() != grpc.StatusCode.CANCELLED:
                context.abort(error.code(), error.details() or "")
        finally:
            with self._lock:
                self._streams.pop(id(call), None)

    def cut(self, code: grpc.StatusCode | None = None) -> None:
        """End every open Listen stream: cleanly (None) or with `code`."""
        with self._lock:
            streams = list(self._streams.values())
        for call, ending in streams:
            ending.append(code)
            call.cancel()

    def open_streams(self) -> int:
        with self._lock:
            return len(self._streams)

    def stop(self) -> None:
        self._server.stop(grace=None)
        self._channel.close()


@pytest.fixture
def gate(firestore_emulator: FirestoreEmulator) -> Iterator[ListenGate]:
    running = ListenGate(firestore_emulator.host)
    yield running
    running.stop()


@pytest.fixture
def gated(gate: ListenGate, project_id: str, monkeypatch: pytest.MonkeyPatch) -> firestore.Client:
    """A Firestore client of this test's project that talks to the emulator through `gate`."""
    with monkeypatch.context() as patch:
        patch.setenv("FIRESTORE_EMULATOR_HOST", gate.endpoint)
        return firestore.Client(project=project_id)


def as_dict(snapshot: firestore.DocumentSnapshot[Any]) -> dict[str, Any]:
    if not snapshot.exists:
        raise NotFound(f"{snapshot.reference.path} does not exist")
    return snapshot.to_dict() or {}


def percents(subscription: Subscription[Any], until: int, timeout: float = 20) -> list[int]:
    """The percents a consumer takes, up to the state with percent `until`."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while not seen or seen[-1] != until:
        seen.append(int(subscription.get(timeout=max(0.0, deadline - time.monotonic()))["percent"]))
    return seen


def eventually(condition: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def run_id(project_id: str, business_input: BusinessInput) -> str:
    """A queued run on this test's project (percent 0)."""
    run_id = uuid.uuid4().hex
    documents.run_ref(run_id).create(documents.new_run_document(run_id, business_input, "pro"))
    return run_id


def test_consumers_of_a_run_share_one_listener_and_each_sees_every_state(run_id: str) -> None:
    with counting(db()) as calls:
        consumers = [documents.subscribe(run_id) for _ in range(5)]
        first = [consumer.get(timeout=10) for consumer in consumers]
        for percent in (10, 20, 30):
            documents.run_ref(run_id).update({"percent": percent, "step": f"step {percent}"})
            states = [consumer.get(timeout=10) for consumer in consumers]
            assert {state.percent for state in states} == {percent}
            # Decoded once for everyone: the very same validated state.
            assert all(state is states[0] for state in states)
    assert {state.percent for state in first} == {0}
    assert calls.rpcs["Listen"] == 1
    assert documents.run_watcher.listening() == 1

    for consumer in consumers:
        consumer.close()
    assert documents.run_watcher.listening() == 0
    with pytest.raises(SubscriptionClosed):
        consumers[0].get(timeout=1)

    with counting(db()) as calls, documents.subscribe(run_id) as again:
        assert again.get(timeout=10).percent == 30  # a new listener, from the state now
    assert calls.rpcs["Listen"] == 1


def test_a_late_consumer_starts_from_the_state_now(run_id: str) -> None:
    with documents.subscribe(run_id) as early:
        assert early.get(timeout=10).percent == 0
        for percent in (5, 15):
            documents.run_ref(run_id).update({"percent": percent})
            assert early.get(timeout=10).percent == percent
        with documents.subscribe(run_id) as late:
            assert late.get(timeout=10).percent == 15
            documents.run_ref(run_id).update({"percent": 25})
            assert late.get(timeout=10).percent == 25
            assert early.get(timeout=10).percent == 25


def test_a_consumer_that_stops_reading_holds_no_one_up(db: firestore.Client) -> None:
    reference = db.collection("runs").document(uuid.uuid4().hex)
    reference.set({"percent": 0})
    watcher = Watcher(as_dict, capacity=3)
    with watcher.subscribe(reference) as stuck, watcher.subscribe(reference) as reader:
        assert reader.get(timeout=10)["percent"] == 0
        for percent in range(1, 11):
            reference.update({"percent": percent})
            assert reader.get(timeout=10)["percent"] == percent  # each, while `stuck` sleeps
        # The one that fell behind skipped its oldest states and keeps the newest, in order.
        assert eventually(lambda: stuck.skipped == 8)
        assert [stuck.get(timeout=1)["percent"] for _ in range(3)] == [8, 9, 10]


def test_a_state_that_cannot_be_read_reaches_every_consumer_and_the_listener_goes_on(
    run_id: str,
) -> None:
    with documents.subscribe(run_id) as one, documents.subscribe(run_id) as two:
        for consumer in (one, two):
            assert consumer.get(timeout=10).percent == 0
        documents.run_ref(run_id).update({"percent": "most of it"})
        for consumer in (one, two):
            with pytest.raises(ValidationError, match="percent"):
                consumer.get(timeout=10)
        documents.run_ref(run_id).update({"percent": 40})
        assert [consumer.get(timeout=10).percent for consumer in (one, two)] == [40, 40]

        data = documents.run_ref(run_id).get().to_dict()
        documents.run_ref(run_id).delete()
        for consumer in (one, two):
            with pytest.raises(NotFound, match=f"run {run_id} does not exist"):
                consumer.get(timeout=10)
        documents.run_ref(run_id).set({**(data or {}), "percent": 50})
        assert [consumer.get(timeout=10).percent for consumer in (one, two)] == [50, 50]


def test_watch_follows_a_run_to_its_end_on_the_callers_thread(run_id: str) -> None:
    seen: list[tuple[int, str]] = []
    caller = threading.get_ident()

    def on_change(run: documents.Run) -> None:
        assert threading.get_ident() == caller
        seen.append((run.percent, run.status))
        if run.percent == 0:
            documents.run_ref(run_id).update({"percent": 60, "status": "running"})
        elif run.percent == 60:
            documents.run_ref(run_id).update({"percent": 100, "status": "succeeded"})

    final = documents.watch(run_id, on_change, timeout=30)
    assert final.status == "succeeded"
    assert seen == [(0, "queued"), (60, "running"), (100, "succeeded")]
    assert documents.run_watcher.listening() == 0  # the listener ended with the watch


def test_watch_of_a_missing_run_or_one_that_does_not_end(run_id: str) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        documents.watch(uuid.uuid4().hex, lambda _run: None, timeout=30)
    with pytest.raises(TimeoutError, match=f"run {run_id} did not end"):
        documents.watch(run_id, lambda _run: None, timeout=0.5)
    assert documents.run_watcher.listening() == 0


def test_the_last_consumer_leaving_ends_the_stream(
    gate: ListenGate, gated: firestore.Client
) -> None:
    reference = gated.collection("runs").document(uuid.uuid4().hex)
    reference.set({"percent": 0})
    watcher = Watcher(as_dict)
    first, second = watcher.subscribe(reference), watcher.subscribe(reference)
    assert second.get(timeout=10)["percent"] == 0
    assert gate.opened == 1 and gate.open_streams() == 1
    first.close()
    assert gate.open_streams() == 1 and watcher.listening() == 1
    second.close()
    assert watcher.listening() == 0
    assert eventually(lambda: gate.open_streams() == 0)


def test_a_stream_the_server_ends_is_opened_again(
    gate: ListenGate, gated: firestore.Client
) -> None:
    reference = gated.collection("runs").document(uuid.uuid4().hex)
    reference.set({"percent": 0})
    watcher = Watcher(as_dict)
    consumers = [watcher.subscribe(reference) for _ in range(3)]
    assert [consumer.get(timeout=10)["percent"] for consumer in consumers] == [0, 0, 0]
    for ending in (None, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAVAILABLE):
        before = gate.forwarded
        gate.cut(ending)  # the client gives up on the first two by itself
        assert eventually(lambda before=before: gate.forwarded > before)  # type: ignore[misc]
    reference.update({"percent": 1})
    for consumer in consumers:
        assert percents(consumer, until=1) == [1]  # no state twice, none lost
        consumer.close()


def test_a_listener_that_cannot_be_opened_again_fails_every_consumer(
    gate: ListenGate, gated: firestore.Client
) -> None:
    reference = gated.collection("runs").document(uuid.uuid4().hex)
    reference.set({"percent": 0})
    watcher = Watcher(as_dict, attempts=3, backoff=0.05)
    consumers = [watcher.subscribe(reference) for _ in range(3)]
    for consumer in consumers:
        assert consumer.get(timeout=10)["percent"] == 0

    # A server that is gone: the client's own reopen loop would spin on it for ever.
    gate.refusing = grpc.StatusCode.UNAVAILABLE
    gate.cut(grpc.StatusCode.UNAVAILABLE)
    for consumer in consumers:
        with pytest.raises(ListenerFailed, match=f"{reference.path} after 3 attempts"):
            consumer.get(timeout=30)
        with pytest.raises(ListenerFailed):  # and stays failed
            consumer.get(timeout=1)
    assert watcher.listening() == 0
    tried = gate.opened
    time.sleep(0.5)
    assert gate.opened == tried  # nothing keeps trying behind the consumers' backs

    gate.refusing = None  # the server is back: a new consumer gets a new listener
    with watcher.subscribe(reference) as fresh:
        assert fresh.get(timeout=10)["percent"] == 0
    for consumer in consumers:
        consumer.close()
