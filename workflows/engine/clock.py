"""Time for the engine: `sys.now`, `sys.sleep` and retry backoff all go through a clock.

Tests inject a `VirtualClock`, which records every sleep and advances instantly, so retry delays are
measured exactly without waiting.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

from .errors import ExecutionCancelled


class CancelToken:
    """Cancellation for an execution and, as children, for each parallel branch.

    Cancelling a token cancels its children; a child sees its ancestors' cancellation.
    """

    def __init__(self, parent: CancelToken | None = None, event: threading.Event | None = None):
        self._event = event if event is not None else threading.Event()
        self._parent = parent
        self._children: list[CancelToken] = []
        self._lock = threading.Lock()

    def child(self) -> CancelToken:
        """A token cancelled with this one, which can also be cancelled on its own."""
        token = CancelToken(self)
        with self._lock:
            self._children.append(token)
        if self.is_set():
            token.cancel()
        return token

    def cancel(self) -> None:
        """Cancel this token and every child."""
        self._event.set()
        with self._lock:
            children = list(self._children)
        for child in children:
            child.cancel()

    def is_set(self) -> bool:
        """Whether this token or an ancestor was cancelled."""
        if self._event.is_set():
            return True
        return self._parent is not None and self._parent.is_set()

    def check(self) -> None:
        """Raise ExecutionCancelled when cancelled."""
        if self.is_set():
            raise ExecutionCancelled()

    def wait(self, seconds: float) -> bool:
        """Block up to `seconds`; True as soon as this token is cancelled."""
        return self._event.wait(seconds) or self.is_set()


class Clock(Protocol):
    """What the engine needs to know about time."""

    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    def sleep(self, seconds: float, token: CancelToken) -> None:
        """Sleep, raising ExecutionCancelled as soon as `token` is cancelled."""
        ...


class SystemClock:
    """Real time."""

    # An external cancel Event is polled at this interval while sleeping.
    POLL_SECONDS = 0.05

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float, token: CancelToken) -> None:
        deadline = time.monotonic() + seconds
        while True:
            token.check()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            token.wait(min(remaining, self.POLL_SECONDS))


class VirtualClock:
    """Simulated time for tests: sleeps return at once and are recorded in `sleeps`."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float, token: CancelToken) -> None:
        token.check()
        with self._lock:
            self.sleeps.append(seconds)
            self._now += seconds
        token.check()
