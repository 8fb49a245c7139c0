"""The database's time, as this process last learnt it.

Which day and month a reservation counts in follows the database's clock, not this machine's:
`server_clock.now()` is local time corrected by the offset of the latest timestamp the database
returned (a commit's or a read's time), so instances whose clocks disagree by minutes still put
a call in the same period. Expiry never uses it: see `common.budget.blocks`.
"""

from __future__ import annotations

import datetime as dt
import threading


class ServerClock:
    """Local UTC time plus the offset last observed against the database."""

    def __init__(self) -> None:
        self._offset = dt.timedelta(0)
        self._lock = threading.Lock()

    def observe(self, server_time: dt.datetime | None) -> None:
        """Learn from a timestamp the database just returned (None: nothing to learn)."""
        if server_time is None:
            return
        offset = server_time - dt.datetime.now(dt.UTC)
        with self._lock:
            self._offset = offset

    def now(self) -> dt.datetime:
        with self._lock:
            return dt.datetime.now(dt.UTC) + self._offset


server_clock = ServerClock()
