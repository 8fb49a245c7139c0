"""Group commit: independent single-document writes of many threads in one BatchWrite RPC.

A thread hands its write to the process's `GroupWriter` and waits for that write's own outcome.
When no RPC is under way (at most `lanes` at once), the thread sends everything queued so far in
one BatchWrite, which Firestore applies write by write with a status each (not atomically), so
one write's failed precondition does not fail its neighbours. Under load a batch carries many
threads' writes for the price of one round trip and one request's encoding overhead; alone, a
thread's write goes out at once, as a single commit would.

Writes of one document never share a batch (BatchWrite refuses that): a second write of a path
already in the batch waits for the next one.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from google.cloud import firestore
from google.cloud.firestore_v1.bulk_batch import BulkWriteBatch

Add = Callable[[BulkWriteBatch], None]
# google.rpc status codes of a write's outcome.
OK, NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION = 0, 5, 6, 9


@dataclass(frozen=True)
class Written:
    """One write's outcome: `code` is 0 when applied (then `update_time` is the document's new
    version), else Firestore's status code for it (6 ALREADY_EXISTS, 9 FAILED_PRECONDITION,
    5 NOT_FOUND) with the server's message."""

    code: int
    message: str = ""
    update_time: dt.datetime | None = None

    @property
    def ok(self) -> bool:
        return self.code == OK

    @property
    def exists(self) -> bool:
        return self.code == ALREADY_EXISTS

    @property
    def precondition_failed(self) -> bool:
        return self.code in (FAILED_PRECONDITION, NOT_FOUND)


@dataclass(eq=False)
class _Slot:
    path: str
    add: Add
    taken: bool = False
    result: Written | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class GroupWriter:
    """Sends queued writes of many threads in shared BatchWrite RPCs (see the module docstring)."""

    def __init__(self, client: firestore.Client, *, max_batch: int = 100, lanes: int = 2) -> None:
        self._client = client
        self._max_batch = max_batch
        self._lanes = lanes
        self._busy = 0
        self._queue: list[_Slot] = []
        self._cond = threading.Condition()
        self.rpcs = 0  # BatchWrite requests sent (for benchmarks)

    def write(self, ref: firestore.DocumentReference, add: Add) -> Written:
        """Apply the one write `add` makes to a batch (of document `ref`) and return its outcome.

        Raises:
            GoogleAPICallError: the RPC itself failed (after the library's own retries).
        """
        return self.write_all([(ref, add)])[0]

    def write_all(self, writes: list[tuple[firestore.DocumentReference, Add]]) -> list[Written]:
        """Apply one thread's independent writes (one per document) together, in as few
        batches as the queue allows (one, when they fit), and return their outcomes in order.

        Raises:
            GoogleAPICallError: an RPC itself failed (after the library's own retries).
        """
        slots = [_Slot(ref._document_path, add) for ref, add in writes]
        with self._cond:
            self._queue.extend(slots)
        for slot in slots:
            with self._cond:
                while not slot.taken and self._busy >= self._lanes:
                    self._cond.wait()
                if not slot.taken:
                    self._busy += 1
                    batch = self._take()
                else:
                    batch = []
            if batch:
                self._send(batch)
        results = []
        for slot in slots:
            slot.done.wait()
            if slot.error is not None:
                raise slot.error
            assert slot.result is not None
            results.append(slot.result)
        return results

    def _take(self) -> list[_Slot]:
        """The queued writes for one batch, at most one per document (called holding the lock)."""
        batch: list[_Slot] = []
        paths: set[str] = set()
        for slot in list(self._queue):
            if len(batch) >= self._max_batch:
                break
            if slot.path in paths:
                continue
            paths.add(slot.path)
            batch.append(slot)
            slot.taken = True
            self._queue.remove(slot)
        return batch

    def _send(self, batch: list[_Slot]) -> None:
        try:
            writes = BulkWriteBatch(self._client)
            for slot in batch:
                slot.add(writes)
            self.rpcs += 1
            response = writes.commit()
            for slot, status, result in zip(
                batch, response.status, response.write_results, strict=True
            ):
                code = int(status.code)
                slot.result = Written(
                    code, str(status.message), result.update_time if code == OK else None
                )
        except Exception as error:  # the RPC failed (or a write could not be built): all of them
            for slot in batch:
                slot.error = error
        finally:
            for slot in batch:
                slot.done.set()
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()


_writers: dict[int, tuple[firestore.Client, GroupWriter]] = {}
_writers_lock = threading.Lock()


def group_writer(client: firestore.Client) -> GroupWriter:
    """The process's group writer for `client` (clients are made once per project)."""
    with _writers_lock:
        found = _writers.get(id(client))
        if found is None or found[0] is not client:
            found = _writers[id(client)] = (client, GroupWriter(client))
        return found[1]
