"""Child processes of the local stack: free ports, and stopping a process with its whole group."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

_given: set[int] = set()
_lock = threading.Lock()


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
