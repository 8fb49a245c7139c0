"""One Firestore listener per document per process, fanned out in memory to every consumer.

The Python client spends about 0.2 ms of CPU per delivery and per listener inside its own
`Watch` (proto-plus decoding, two deep copies of the document, its change tree), plus a thread
wake-up per listener, all under one interpreter lock: a hundred listeners to one run in one
process queue some 50 ms of work behind every write. A `Watcher` keeps a single listener per
document, decodes each state once, and hands that same object to every `Subscription`; a
hundred consumers then cost one delivery and a hundred queue appends (bench/listeners.py).

Around Firestore's callback thread it keeps the guards the client does not:

- the callback never raises: an exception there leaves the library's `Watch` half-updated, and
  every later delivery fails on the same stale state, silently; a document that cannot be
  decoded reaches each consumer as that error instead, and the listener goes on;
- it never waits on a consumer: each subscription has its own bounded queue (a consumer that
  falls `capacity` states behind skips its oldest ones, counted in `skipped`; Firestore itself
  coalesces states a listener cannot take in time, so no consumer may rely on every one);
- the listener is closed when the last consumer leaves, never from its own thread;
- a listener that dies is re-established: the stream ended by the server (which the client
  takes as final, without a word), an error it does not retry, or its own reopen loop spinning
  against a server that is gone (it reopens at once, forever, burning CPU). After `attempts`
  failures in a row, with backoff, the error reaches every consumer as `ListenerFailed`.
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, TypeVar

import grpc
from google.cloud import firestore

from common.platform.errors import Busy

T = TypeVar("T")
Decode = Callable[[firestore.DocumentSnapshot[Any]], T]

_LOG = logging.getLogger(__name__)


class ListenerFailed(Busy):
    """Firestore's listener to a document failed and could not be re-established."""

    code = "listener_failed"


class SubscriptionClosed(Exception):
    """The subscription was closed by its consumer: it has nothing more to give."""


@dataclass(frozen=True)
class _Error:
    """An error in a consumer's queue, raised by `get` in its place in the order."""

    error: BaseException


class Subscription(Generic[T]):
    """One consumer's view of a document: every new state, in order, from `get` or iteration.

    The first state is the document as it is now. States are shared with every other consumer
    of the document in this process: treat them as read-only. Close it (or use `with`) when
    done; the last one closed ends the Firestore listener.
    """

    def __init__(self, listener: _Listener[T], capacity: int) -> None:
        self._listener = listener
        self._capacity = capacity
        self._items: deque[T | _Error] = deque()
        self._lock = threading.Lock()
        # One token per state offered (and one to wake the consumer on close or failure): a
        # C-level queue, so a hundred consumers cost the callback thread a hundred cheap puts
        # and each wake-up no Python-level condition (about a third less CPU per fan-out).
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._failure: BaseException | None = None
        self._closed = False
        self.skipped = 0
        """States dropped unread because this consumer fell `capacity` states behind."""

    @property
    def path(self) -> str:
        """The document's path ("runs/RUN_ID")."""
        return str(self._listener.reference.path)

    def get(self, timeout: float | None = None) -> T:
        """The oldest state not yet taken, waiting up to `timeout` seconds for one.

        Raises:
            TimeoutError: no new state within `timeout`.
            ListenerFailed: the listener failed for good (again on every later call).
            SubscriptionClosed: `close` was called.
            Exception: whatever decoding this state raised (e.g. `NotFound` for a document
                that does not exist); the next state may decode again.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if self._closed:
                    raise SubscriptionClosed(f"the subscription to {self.path} is closed")
                if not self._items and self._failure is not None:
                    raise _fresh(self._failure)
            try:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                self._tokens.get(timeout=left)
            except queue.Empty:
                raise TimeoutError(f"no new state of {self.path} within {timeout:g} s") from None
            with self._lock:
                # No item for this token: it woke us for a close or a failure, or its state was
                # skipped; look again.
                item = self._items.popleft() if self._items and not self._closed else None
            if item is None:
                continue
            if isinstance(item, _Error):
                raise _fresh(item.error)
            return item

    def __iter__(self) -> Iterator[T]:
        """Every state until the subscription is closed (errors are raised, as by `get`)."""
        while True:
            try:
                yield self.get()
            except SubscriptionClosed:
                return

    def close(self) -> None:
        """Stop receiving states; idempotent. The last consumer to leave ends the listener."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._items.clear()
        self._tokens.put(None)
        self._listener.watcher._release(self)

    def __enter__(self) -> Subscription[T]:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.close()

    # Called on Firestore's callback thread: a short lock, never a wait on the consumer.
    def _offer(self, item: T | _Error) -> None:
        with self._lock:
            if self._closed or self._failure is not None:
                return
            if len(self._items) >= self._capacity:
                self._drop_oldest_state()
            self._items.append(item)
        self._tokens.put(None)

    def _drop_oldest_state(self) -> None:
        for index, queued in enumerate(self._items):
            if not isinstance(queued, _Error):
                del self._items[index]
                self.skipped += 1
                return

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            if self._failure is not None or self._closed:
                return
            self._failure = error
        self._tokens.put(None)


@dataclass
class _Stream:
    """One Firestore listener (the client's `Watch`) of a document, and how it fares."""

    watch: Any  # google.cloud.firestore_v1.watch.Watch (untyped)
    generation: int
    reopens: deque[float] = field(default_factory=deque)
    tripped: bool = False  # the client's reopen loop was stopped: this stream is done

    def dead(self) -> bool:
        return self.tripped or not self.watch.is_active


class _Listener(Generic[T]):
    """The one Firestore listener of a document in this process, and who consumes it."""

    def __init__(self, watcher: Watcher[T], reference: firestore.DocumentReference) -> None:
        self.watcher = watcher
        self.reference = reference
        self.subscriptions: list[Subscription[T]] = []
        self.stream: _Stream | None = None
        # Callbacks of a stream replaced or closed since carry an older generation.
        self.generation = 0
        self.last: T | _Error | None = None
        self.version: Any = None  # the update time of the state delivered last
        self.delivered = False
        self.failures = 0  # streams that died in a row, without a state in between
        self.retry_at = 0.0
        self.cause: BaseException | None = None
        self.callback_thread: int | None = None


class Watcher(Generic[T]):
    """Listeners shared per document: `subscribe` to a document, get its states decoded once.

    Args:
        decode: turns a snapshot (`exists` False for a missing document) into the state
            consumers get; what it raises reaches them as that state's error.
        attempts: listeners opened in a row that die without delivering a state before the
            failure reaches the consumers.
        backoff: seconds before the second attempt, doubled for each further one (the first
            is immediate: a stream the server ended is usually fine again at once).
        check_every: how often (seconds) the supervisor looks for a listener that died without
            telling; it is also woken at once when the client reports a failure.
        reopens: how many times within `reopen_window` seconds the client may reopen a stream
            by itself before that listener counts as dead.
        capacity: states queued per consumer before its oldest are skipped.
    """

    def __init__(
        self,
        decode: Decode[T],
        *,
        attempts: int = 8,
        backoff: float = 0.25,
        check_every: float = 0.5,
        reopens: int = 3,
        reopen_window: float = 5.0,
        capacity: int = 1024,
    ) -> None:
        self.decode = decode
        self.attempts = attempts
        self.backoff = backoff
        self.check_every = check_every
        self.reopens = reopens
        self.reopen_window = reopen_window
        self.capacity = capacity
        self._listeners: dict[tuple[int, str], _Listener[T]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._supervisor: threading.Thread | None = None

    def subscribe(self, reference: firestore.DocumentReference) -> Subscription[T]:
        """A new consumer of the document: its current state first, then every change."""
        with self._lock:
            listener = self._listeners.get(_key(reference))
            if listener is None:
                listener = _Listener(self, reference)
                self._listeners[_key(reference)] = listener
                self._open(listener)
                self._ensure_supervisor()
            subscription = Subscription(listener, self.capacity)
            listener.subscriptions.append(subscription)
            # A late joiner starts from the state the others have (a fresh listener's first).
            if listener.last is not None:
                subscription._offer(listener.last)
        return subscription

    def listening(self) -> int:
        """Documents with a Firestore listener open (or being re-established) for this watcher."""
        with self._lock:
            return len(self._listeners)

    # --- Firestore's side --------------------------------------------------------------------

    def _open(self, listener: _Listener[T]) -> None:
        """Start a Firestore listener for `listener` (under `self._lock`)."""
        listener.generation += 1
        generation = listener.generation

        def on_snapshot(snapshots: list[Any], _changes: Any, read_time: Any) -> None:
            try:
                self._deliver(listener, generation, snapshots, read_time)
            except BaseException:  # never on Firestore's thread: it would kill the listener
                _LOG.exception("delivering a state of %s failed", listener.reference.path)

        stream = _Stream(listener.reference.on_snapshot(on_snapshot), generation)
        listener.stream = stream
        self._hook(listener, stream)

    def _hook(self, listener: _Listener[T], stream: _Stream) -> None:
        """Hear of the client's stream failures at once, and stop its reopen loop.

        The client's `Watch` neither tells its callback that its stream failed nor backs off:
        against a server that is gone it reopens the stream at once, forever. Its resumable
        stream takes a `should_recover` policy (api_core's `ResumableBidiRpc`), which `Watch`
        does not let callers set; wrapping it here gives the failure's cause and a budget of
        reopens. Its own done callback, which closes the watch by raising the failure on a
        thread of its own (a traceback on stderr), is replaced by a wake-up of the supervisor,
        which closes it quietly. Without these private attributes, polling still notices a dead
        listener, only later, and the reopen loop is not stopped."""
        rpc = getattr(stream.watch, "_rpc", None)
        library_policy = getattr(rpc, "_should_recover", None)
        callbacks = getattr(rpc, "_callbacks", None)
        if rpc is None or library_policy is None or not isinstance(callbacks, list):
            return

        def should_recover(error: Any) -> bool:
            if isinstance(error, BaseException):
                listener.cause = error
            recover = bool(library_policy(error)) and not stream.tripped
            if recover:
                now = time.monotonic()
                stream.reopens.append(now)
                while stream.reopens[0] < now - self.reopen_window:
                    stream.reopens.popleft()
                recover = len(stream.reopens) <= self.reopens
            if not recover:
                stream.tripped = True
                self._wake.set()
            return recover

        def on_done(result: Any) -> None:
            if isinstance(result, BaseException):
                listener.cause = result
            self._wake.set()

        rpc._should_recover = should_recover
        callbacks[:] = [c for c in callbacks if getattr(c, "__self__", None) is not stream.watch]
        callbacks.append(on_done)

    def _deliver(
        self, listener: _Listener[T], generation: int, snapshots: list[Any], read_time: Any
    ) -> None:
        listener.callback_thread = threading.get_ident()
        snapshot = (
            snapshots[0]
            if snapshots
            else firestore.DocumentSnapshot(
                listener.reference,
                None,
                exists=False,
                read_time=read_time,
                create_time=None,
                update_time=None,
            )
        )
        with self._lock:
            if generation != listener.generation:
                return  # a stream replaced or closed since
            listener.failures = 0
            listener.cause = None
            if listener.delivered and snapshot.update_time == listener.version:
                return  # a re-established stream repeats the state everyone has
            listener.delivered = True
            listener.version = snapshot.update_time
        item: T | _Error
        try:
            item = self.decode(snapshot)  # once per delivery, not once per consumer
        except Exception as error:
            item = _Error(error)
        with self._lock:
            if generation != listener.generation:
                return
            listener.last = item
            consumers = list(listener.subscriptions)
        for subscription in consumers:
            subscription._offer(item)

    # --- Consumers leaving -------------------------------------------------------------------

    def _release(self, subscription: Subscription[T]) -> None:
        listener = subscription._listener
        with self._lock:
            if subscription in listener.subscriptions:
                listener.subscriptions.remove(subscription)
            if listener.subscriptions:
                return
            stream = self._forget(listener)
        self._close(listener, stream)

    def _forget(self, listener: _Listener[T]) -> _Stream | None:
        """Drop `listener` from the registry (under `self._lock`); its stream, to be closed."""
        listener.generation += 1  # whatever its stream still delivers is ignored
        if self._listeners.get(_key(listener.reference)) is listener:
            del self._listeners[_key(listener.reference)]
        stream, listener.stream = listener.stream, None
        return stream

    @staticmethod
    def _close(listener: _Listener[T], stream: _Stream | None) -> None:
        if stream is None:
            return
        if threading.get_ident() == listener.callback_thread:
            # Closing joins the callback's own thread: hand it to another one.
            threading.Thread(target=stream.watch.unsubscribe, daemon=True).start()
        else:
            stream.watch.unsubscribe()

    # --- The supervisor ----------------------------------------------------------------------

    def _ensure_supervisor(self) -> None:
        """Start the supervisor thread if it is not running (under `self._lock`)."""
        if self._supervisor is None:
            self._supervisor = threading.Thread(
                target=self._supervise, name="firestore-watcher", daemon=True
            )
            self._supervisor.start()

    def _supervise(self) -> None:
        wait = self.check_every
        while True:
            self._wake.wait(wait)
            self._wake.clear()
            with self._lock:
                if not self._listeners:
                    self._supervisor = None  # started again by the next subscribe
                    return
                listeners = list(self._listeners.values())
            wait = self.check_every
            for listener in listeners:
                try:
                    wait = min(wait, self._check(listener))
                except Exception:
                    _LOG.exception("checking the listener of %s failed", listener.reference.path)

    def _check(self, listener: _Listener[T]) -> float:
        """Close a stream that died; open another when its backoff is over, or fail the
        consumers after `attempts`. Returns how soon (seconds) it wants another look."""
        with self._lock:
            dead = listener.stream if listener.stream and listener.stream.dead() else None
            if dead is not None:
                listener.stream = None
                listener.generation += 1  # its late callbacks, if any, are ignored
                listener.failures += 1
                delay = self.backoff * 2 ** (listener.failures - 2) if listener.failures > 1 else 0
                listener.retry_at = time.monotonic() + delay
        if dead is not None:
            self._close(listener, dead)
            _LOG.warning(
                "the listener of %s died (%s); attempt %d of %d",
                listener.reference.path,
                _describe(listener.cause),
                listener.failures,
                self.attempts,
            )
        failed: list[Subscription[T]] = []
        with self._lock:
            if (
                listener.stream is not None
                or self._listeners.get(_key(listener.reference)) is not listener
            ):
                return self.check_every
            if listener.failures >= self.attempts:
                self._forget(listener)
                failed, listener.subscriptions = listener.subscriptions, []
            elif time.monotonic() >= listener.retry_at:
                self._open(listener)
            else:
                return listener.retry_at - time.monotonic()
        if failed:
            error = ListenerFailed(
                f"lost Firestore's listener of {listener.reference.path} after "
                f"{listener.failures} attempts: {_describe(listener.cause)}"
            )
            for subscription in failed:
                subscription._fail(error)
        return self.check_every


def _key(reference: firestore.DocumentReference) -> tuple[int, str]:
    # Per client (each is its own connection, project and database) and document.
    return (id(reference._client), reference.path)


def _describe(cause: BaseException | None) -> str:
    """A failure of a stream in one line."""
    if cause is None or isinstance(cause, StopIteration):
        return "the server ended the stream"
    if isinstance(cause, grpc.Call):  # the finished call itself, as gRPC reports it
        return f"{cause.code().name}: {cause.details()}"
    return str(cause) or type(cause).__name__


def _fresh(error: BaseException) -> BaseException:
    """A copy of `error` to raise: the same object raised by several consumers' threads (or
    again and again) would pile all their tracebacks onto one another."""
    try:
        return copy.copy(error)
    except Exception:
        return error
