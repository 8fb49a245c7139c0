"""Peak memory of process trees, read from Linux's /proc while they run.

Cloud Run stops an instance whose container uses more memory than its limit. A function's
container holds functions-framework's gunicorn arbiter and the worker it forked, which share
pages until either writes them; the container's memory counts each page once. So a tree's
memory here is the sum of its processes' proportional set sizes (`Pss` in `smaps_rollup`: each
shared page divided among the processes sharing it), sampled on a thread. A spike shorter than
the sampling interval is caught by each process's own high-water mark (`VmHWM`), a lower bound
of the tree's usage at that moment; the peak reported is the larger of the two.

Used by the production-parity run (tests/parity), which fails a function whose peak exceeds
the memory its Terraform plan gives it, and by `bench/memory.py`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
_KIB = 1024


def _field_kib(text: str, name: str) -> int:
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (children, grandchildren ...), alive now."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        # The command name is in parentheses and may hold spaces: fields follow the last ")".
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(children.get(current, []))
    return found


@dataclass(frozen=True)
class TreeMemory:
    """One reading of a process tree, in bytes: its proportional set size (each page once) and
    the largest high-water mark of any of its processes."""

    pss: int
    hwm: int


def read_tree(pid: int) -> TreeMemory:
    """The memory of the tree rooted at `pid` now (zeros for processes that exited)."""
    pss = hwm = 0
    for member in descendants(pid):
        with contextlib.suppress(OSError):
            pss += _field_kib((PROC / str(member) / "smaps_rollup").read_text(), "Pss") * _KIB
            status = (PROC / str(member) / "status").read_text()
            hwm = max(hwm, _field_kib(status, "VmHWM") * _KIB)
    return TreeMemory(pss, hwm)


class PeakSampler:
    """Samples process trees on a thread and keeps each one's peak.

    Args:
        roots: Name -> a callable giving the tree's root pid now (None while it has none); asked
            at every sample, so a process replaced by a restart is followed.
        interval: Seconds between samples.
    """

    def __init__(
        self, roots: Mapping[str, Callable[[], int | None]], *, interval: float = 0.1
    ) -> None:
        self._roots = dict(roots)
        self._interval = interval
        self._peaks = dict.fromkeys(self._roots, 0)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)

    def start(self) -> PeakSampler:
        """Start sampling (returns self)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Take a last sample and stop."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def sample(self) -> None:
        """Read every tree once and raise its peak if it grew."""
        for name, root in self._roots.items():
            pid = root()
            if pid is None:
                continue
            reading = read_tree(pid)
            with self._lock:
                self._peaks[name] = max(self._peaks[name], reading.pss, reading.hwm)

    def peaks(self) -> dict[str, int]:
        """Each tree's peak so far, in bytes (a fresh sample first)."""
        self.sample()
        with self._lock:
            return dict(self._peaks)
