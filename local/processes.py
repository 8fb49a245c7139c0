"""Child processes of the local stack: free ports, starting a process so that none outlives the
command that started it, stopping a process with its whole group, and the signals that end a
command (Ctrl-C, SIGTERM, a closed terminal).

Every child runs in a session of its own (so that a stop reaches what it forks: the JVM,
gunicorn's workers, Node's) and is remembered by `spawn`; `interruptible()` turns the first
SIGINT, SIGTERM or SIGHUP into a KeyboardInterrupt, so that the `finally` blocks that stop the
stack run, lets no later signal interrupt them, and stops whatever `spawn` started that is
still running when the block ends. Python's default SIGTERM ends a process without running any
`finally`: `raptorflow web` left its eleven children running.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

_given: set[int] = set()
_lock = threading.Lock()
_started: list[subprocess.Popen[bytes]] = []
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Signals:
    """What the handler knows: a signal came (the command is stopping), one came while a child
    was being started (raised once it is remembered), and how deep `spawn` is."""

    stopping = False
    pending = False
    spawning = 0


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out to `bind(0)` and outgoing connections (Linux's
    default range starts at 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, for a process to bind later.

    Never one this process handed out before, and below the kernel's ephemeral range: between
    this call and the child's bind, no `bind(0)` (an ingress, a loopback server) and no outgoing
    connection's source port can take it. (A port from `bind(0)` was once taken by another
    function's ingress before its own process bound it: that function's requests went to the
    other function.)"""
    high = min(_ephemeral_low(), 65536) - 1
    low = max(1024, high - 12000)
    with _lock:
        for _ in range(500):
            port = random.randint(low, high)
            if port in _given:
                continue
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue  # in use
            _given.add(port)
            return port
    raise OSError(f"no free TCP port on 127.0.0.1 between {low} and {high}")


def stop_groups(*processes: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Stop processes started with `start_new_session=True` and everything they forked (the JVM,
    gunicorn's workers): SIGTERM to every group at once, SIGKILL to what is left after
    `timeout` seconds."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in running:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    if _Signals.stopping:
        # Already stopping: the cleanup under way must not be cut short (that is how children
        # were left behind), and it is bounded (stop_groups ends with SIGKILL).
        with contextlib.suppress(OSError):
            os.write(sys.stderr.fileno(), b"still stopping the local stack...\n")
        return
    if _Signals.spawning:
        _Signals.pending = True
        return
    _Signals.stopping = True
    raise KeyboardInterrupt


def spawn(command: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
    """Start a child in a session of its own, remembered until `stop_started`; a signal that
    arrives meanwhile takes effect once the child is remembered, so that it is stopped too."""
    _Signals.spawning += 1
    try:
        process: subprocess.Popen[bytes] = subprocess.Popen(
            command, start_new_session=True, **popen
        )
        with _lock:
            _started.append(process)
    finally:
        _Signals.spawning -= 1
    if _Signals.pending and not _Signals.spawning:
        _Signals.pending = False
        _Signals.stopping = True
        raise KeyboardInterrupt
    return process


def forget(process: subprocess.Popen[bytes]) -> None:
    """Let a child outlive the command that started it (the stack `raptorflow up` leaves)."""
    with _lock:
        if process in _started:
            _started.remove(process)


def stop_started(since: int = 0, timeout: float = 10) -> None:
    """Stop every child `spawn` started (after the first `since`) that is still running, and
    forget them."""
    with _lock:
        running = [process for process in _started[since:] if process.poll() is None]
        del _started[since:]
    stop_groups(*running, timeout=timeout)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """For a command that starts children: SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt
    (once), and every child still running when the block ends is stopped. Only in the main
    thread (where Python runs signal handlers); elsewhere the block runs as it is. Children
    started before the block (a test session's stack) are left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with _lock:
        mark = len(_started)
    previous = {signum: signal.signal(signum, _on_signal) for signum in SIGNALS}
    _Signals.stopping = _Signals.pending = False
    try:
        yield
    finally:
        _Signals.stopping = True  # the cleanup below is not interrupted either
        try:
            stop_started(mark)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            _Signals.stopping = _Signals.pending = False
