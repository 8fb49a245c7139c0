"""Realtime listeners under load: N concurrent Python Firestore listeners on one live run.

A writer moves the run document forward as a phase does (percent +1, step, ETA, updated_at)
WRITES times; each listener records when each state reaches its callback. Prints the
write->callback latency (p50/p95/p99 over every listener and write) and the updates missed: a
state that some listener never saw (Firestore may coalesce snapshots of a document that changes
faster than it can deliver; the target is 0 missed at the product's pace). Target p95 < 50 ms.

    .venv/bin/python bench/listeners.py [--listeners 100] [--writes 100] [--interval-ms 100]
                                        [--processes 1] [--clients 10]

Starts its own Firestore emulator (the Google Cloud SDK's); nothing leaves this machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import threading
import time
import uuid
from typing import Any

from google.cloud import firestore

from local import emulator


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listeners", type=int, default=100)
    parser.add_argument("--writes", type=int, default=100)
    parser.add_argument("--interval-ms", type=float, default=100.0)
    parser.add_argument("--clients", type=int, default=10, help="Firestore clients per process")
    parser.add_argument(
        "--processes", type=int, default=1, help="processes the listeners are spread over"
    )
    args = parser.parse_args()

    running = emulator.start()
    os.environ["FIRESTORE_EMULATOR_HOST"] = running.host
    try:
        measure(args)
    finally:
        running.stop()


def listen(
    project: str,
    run_id: str,
    count: int,
    clients: int,
    last: int,
    ready: Any,
    results: Any,
) -> None:
    """Attach `count` listeners, report when all saw their first snapshot, then send back when
    each saw each percent (perf_counter: CLOCK_MONOTONIC, comparable across processes)."""
    pool = [firestore.Client(project=project) for _ in range(clients)]
    seen: list[dict[int, float]] = [{} for _ in range(count)]
    lock = threading.Lock()
    attached = threading.Semaphore(0)
    done = threading.Event()

    def watcher(index: int) -> Any:
        def on_snapshot(snapshots: list[Any], _changes: Any, _read_time: Any) -> None:
            arrived = time.perf_counter()
            with lock:
                first = not seen[index]
                for snapshot in snapshots:
                    percent = int((snapshot.to_dict() or {}).get("percent", -1))
                    seen[index].setdefault(percent, arrived)
                if all(last in states for states in seen):
                    done.set()
            if first:
                attached.release()

        return pool[index % clients].collection("runs").document(run_id).on_snapshot(on_snapshot)

    watches = [watcher(i) for i in range(count)]
    for _ in range(count):
        attached.acquire()
    ready.put(count)
    done.wait(timeout=60 + last)
    for watch in watches:
        watch.unsubscribe()
    results.put(seen)


def measure(args: argparse.Namespace) -> None:
    project = f"bench-listeners-{uuid.uuid4().hex[:8]}"
    run_id = uuid.uuid4().hex
    writer = firestore.Client(project=project).collection("runs").document(run_id)
    writer.set({"run_id": run_id, "status": "running", "percent": 0, "step": "started"})

    # Listeners spread over processes and, in each, over a few clients (gRPC channels), as
    # several backend instances or browser tabs would be; each listener is its own Listen stream.
    context = multiprocessing.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    shares = [args.listeners // args.processes] * args.processes
    shares[0] += args.listeners - sum(shares)
    workers = [
        context.Process(
            target=listen,
            args=(project, run_id, share, args.clients, args.writes, ready, results),
        )
        for share in shares
    ]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.get(timeout=300)
    print(f"{args.listeners} listeners attached in {time.perf_counter() - started:.2f} s")

    written_at: dict[int, float] = {}
    for step in range(1, args.writes + 1):
        written_at[step] = time.perf_counter()
        writer.update(
            {
                "percent": step,
                "step": f"step {step}",
                "eta_seconds": args.writes - step,
                "updated_at": firestore.SERVER_TIMESTAMP,
            }
        )
        time.sleep(args.interval_ms / 1000)
    seen: list[dict[int, float]] = []
    for _ in workers:
        seen.extend(results.get(timeout=120))
    for worker in workers:
        worker.join()

    latencies = [
        (states[step] - written_at[step]) * 1000
        for states in seen
        for step in written_at
        if step in states
    ]
    missed = sum(1 for states in seen for step in written_at if step not in states)
    print(
        f"{args.writes} writes every {args.interval_ms:g} ms to one run, {args.listeners} "
        f"listeners in {args.processes} process(es), {args.clients} client(s) each"
    )
    print(
        f"write->callback latency over {len(latencies)} deliveries: "
        f"p50 {percentile(latencies, 0.50):.1f} ms, p95 {percentile(latencies, 0.95):.1f} ms, "
        f"p99 {percentile(latencies, 0.99):.1f} ms, mean {statistics.fmean(latencies):.1f} ms, "
        f"max {max(latencies):.1f} ms"
    )
    print(f"updates missed: {missed} of {args.writes * args.listeners} (target 0)")
    verdict = "met" if percentile(latencies, 0.95) < 50 and missed == 0 else "NOT met"
    print(f"target p95 < 50 ms with 0 missed: {verdict}")


if __name__ == "__main__":
    main()
