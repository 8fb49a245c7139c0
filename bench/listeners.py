"""Realtime listeners under load: N concurrent Python Firestore listeners on one live run.

A writer moves the run document forward as a phase does (percent +1, step, ETA, updated_at)
WRITES times; each listener records when each state reaches its callback. Prints the
write->callback latency (p50/p95/p99 over every listener and write) and the updates missed: a
state that some listener never saw (Firestore may coalesce snapshots of a document that changes
faster than it can deliver; the target is 0 missed at the product's pace). Target p95 < 50 ms.

    .venv/bin/python bench/listeners.py [--listeners 100] [--writes 100] [--interval-ms 100]

Starts its own Firestore emulator (the Google Cloud SDK's); nothing leaves this machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import uuid
from typing import Any

from google.cloud import firestore

from common import emulator


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listeners", type=int, default=100)
    parser.add_argument("--writes", type=int, default=100)
    parser.add_argument("--interval-ms", type=float, default=100.0)
    parser.add_argument("--clients", type=int, default=10, help="Firestore clients they share")
    args = parser.parse_args()

    running = emulator.start()
    os.environ["FIRESTORE_EMULATOR_HOST"] = running.host
    try:
        measure(args)
    finally:
        running.stop()


def measure(args: argparse.Namespace) -> None:
    project = f"bench-listeners-{uuid.uuid4().hex[:8]}"
    # Listeners spread over a few clients (gRPC channels), as several backend instances or
    # browser tabs would be; each listener is its own Listen stream.
    clients = [firestore.Client(project=project) for _ in range(args.clients)]
    run_id = uuid.uuid4().hex
    writer = clients[0].collection("runs").document(run_id)
    writer.set({"run_id": run_id, "status": "running", "percent": 0, "step": "started"})

    written_at: dict[int, float] = {}
    seen: list[dict[int, float]] = [{} for _ in range(args.listeners)]
    ready = threading.Barrier(args.listeners + 1)
    lock = threading.Lock()

    def listener(index: int) -> Any:
        first = threading.Event()

        def on_snapshot(snapshots: list[Any], _changes: Any, _read_time: Any) -> None:
            arrived = time.perf_counter()
            for snapshot in snapshots:
                percent = int((snapshot.to_dict() or {}).get("percent", -1))
                with lock:
                    seen[index].setdefault(percent, arrived)
            if not first.is_set():
                first.set()
                ready.wait()

        ref = clients[index % len(clients)].collection("runs").document(run_id)
        return ref.on_snapshot(on_snapshot)

    started = time.perf_counter()
    watches = [listener(i) for i in range(args.listeners)]
    ready.wait(timeout=120)
    print(f"{args.listeners} listeners attached in {time.perf_counter() - started:.2f} s")

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
    deadline = time.perf_counter() + 10
    while time.perf_counter() < deadline:
        with lock:
            if all(args.writes in states for states in seen):
                break
        time.sleep(0.05)
    for watch in watches:
        watch.unsubscribe()

    latencies = [
        (states[step] - written_at[step]) * 1000
        for states in seen
        for step in written_at
        if step in states
    ]
    missed = sum(1 for states in seen for step in written_at if step not in states)
    print(
        f"{args.writes} writes every {args.interval_ms:g} ms to one run, "
        f"{args.listeners} listeners on {len(clients)} clients"
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
