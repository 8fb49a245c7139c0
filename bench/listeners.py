"""Realtime listeners under load: 100 consumers of one live run, three ways, on one emulator.

A writer moves a run document forward as a phase does (percent +1, step, ETA, updated_at)
WRITES times, after WARMUP writes nobody measures; in a process of their own, LISTENERS
consumers record when each state reaches them:

- `watcher`: the product's way, `common.runs.documents.subscribe` in one process: one Firestore
  listener fanned out to every consumer, each a thread taking its states (as the CLI does);
- `raw`: one Firestore listener per consumer in one process (over `--clients` clients), each
  decoding its own `Run`, as every consumer did before the watcher (for reference);
- `node`: the Node firebase-admin client (`bench/listeners_node.mjs`, web/'s devDependency),
  one `onSnapshot` per consumer in one process.

For each it prints the write->consumer latency (p50/p95/p99/max over every consumer and write),
the updates missed (a state some consumer never saw: Firestore coalesces what a listener cannot
take in time), and the consumers' process CPU per delivery. Issue 19's target: the Python
watcher's p95 < 50 ms and <= 2x the Node client's p95 in the same run, with 0 missed.

    .venv/bin/python -m bench.listeners [--listeners 100] [--writes 100] [--interval-ms 100]
                                        [--warmup 10] [--modes watcher,raw,node] [--clients 10]

Starts its own Firestore emulator (the Google Cloud SDK's); nothing leaves this machine. The
node mode needs `make web-deps` (firebase-admin in web/node_modules) and Node.js on PATH.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.cloud import firestore

from local import emulator

ROOT = Path(__file__).resolve().parents[1]
NODE_SCRIPT = ROOT / "bench" / "listeners_node.mjs"
SAMPLE = ROOT / "local" / "samples" / "tidewater.json"
MODES = ("watcher", "raw", "node")

#: For each consumer, percent -> when it first arrived (time.monotonic_ns: CLOCK_MONOTONIC,
#: comparable across processes, and Node's process.hrtime).
Seen = list[dict[int, int]]


@dataclass
class Outcome:
    seen: Seen
    cpu_seconds: float  # the consumers' process, from all attached to the last write seen


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listeners", type=int, default=100)
    parser.add_argument("--writes", type=int, default=100)
    parser.add_argument("--interval-ms", type=float, default=100.0)
    parser.add_argument(
        "--warmup", type=int, default=30, help="writes first, not measured (percent stays 0)"
    )
    parser.add_argument("--modes", default=",".join(MODES), help="of " + ", ".join(MODES))
    parser.add_argument("--clients", type=int, default=10, help="Firestore clients (raw mode)")
    args = parser.parse_args()
    modes = [mode for mode in args.modes.split(",") if mode]
    if unknown := set(modes) - set(MODES):
        parser.error(f"unknown mode(s): {', '.join(sorted(unknown))}")
    if "node" in modes and not (ROOT / "web" / "node_modules" / "firebase-admin").is_dir():
        parser.error("the node mode needs firebase-admin: run `make web-deps` first")

    running = emulator.start()
    os.environ["FIRESTORE_EMULATOR_HOST"] = running.host
    try:
        measure(args, modes)
    finally:
        running.stop()


# --- The consumers, each mode in a process of its own -------------------------------------------


def python_consumers(
    mode: str, project: str, run_id: str, count: int, clients: int, last: int, pipe: Any
) -> None:
    """Attach `count` consumers, say so, then send back what each saw and the CPU it took."""
    os.environ["GOOGLE_CLOUD_PROJECT"] = project
    from common.runs import documents

    seen: Seen = [{} for _ in range(count)]
    # The consumers' threads (watcher) or one thread waiting for every first snapshot (raw).
    attached = threading.Barrier((count if mode == "watcher" else 1) + 1)
    done = threading.Event()
    remaining = [count]
    lock = threading.Lock()

    def arrived(index: int, percent: int) -> None:
        now = time.monotonic_ns()
        states = seen[index]
        if percent in states:
            return
        states[percent] = now
        if percent == last:
            with lock:
                remaining[0] -= 1
                if remaining[0] == 0:
                    done.set()

    stop: list[Any] = []
    if mode == "watcher":

        def consume(index: int, subscription: Any) -> None:
            first = True
            for run in subscription:
                arrived(index, run.percent)
                if first:
                    first = False
                    attached.wait()
                if run.percent == last:
                    return

        for index in range(count):
            subscription = documents.subscribe(run_id)
            stop.append(subscription.close)
            threading.Thread(target=consume, args=(index, subscription), daemon=True).start()
    else:
        pool = [firestore.Client(project=project) for _ in range(clients)]
        firsts = [threading.Event() for _ in range(count)]

        def listener(index: int) -> Any:
            def on_snapshot(snapshots: list[Any], _changes: Any, _read_time: Any) -> None:
                for snapshot in snapshots:  # each consumer decodes its own state
                    arrived(index, documents.run_from(snapshot).percent)
                firsts[index].set()

            reference = pool[index % clients].collection(documents.RUNS).document(run_id)
            return reference.on_snapshot(on_snapshot)

        stop.extend(listener(index).unsubscribe for index in range(count))

        def all_attached() -> None:
            for first in firsts:
                first.wait()
            attached.wait()

        threading.Thread(target=all_attached, daemon=True).start()
    attached.wait()
    cpu = time.process_time()
    pipe.send("ready")
    done.wait(timeout=60 + last)
    cpu = time.process_time() - cpu
    for close in stop:
        close()
    pipe.send(Outcome(seen, cpu))


def start_python(mode: str, project: str, run_id: str, args: argparse.Namespace) -> Any:
    context = multiprocessing.get_context("spawn")
    mine, theirs = context.Pipe()
    process = context.Process(
        target=python_consumers,
        args=(mode, project, run_id, args.listeners, args.clients, args.writes, theirs),
    )
    process.start()
    if not mine.poll(300) or mine.recv() != "ready":
        raise SystemExit(f"the {mode} consumers did not attach")

    def finish() -> Outcome:
        outcome: Outcome = mine.recv()
        process.join()
        return outcome

    return finish


def start_node(project: str, run_id: str, args: argparse.Namespace) -> Any:
    node = shutil.which("node")
    if node is None:
        raise SystemExit("the node mode needs Node.js on PATH")
    process = subprocess.Popen(
        [node, str(NODE_SCRIPT), project, f"runs/{run_id}", str(args.listeners), str(args.writes)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        raise SystemExit("the node consumers did not attach")

    def finish() -> Outcome:
        assert process.stdout is not None
        report = json.loads(process.stdout.readline())
        process.wait()
        seen = [{int(p): int(ns) for p, ns in states} for states in report["listeners"]]
        return Outcome(seen, report["cpu_us"] / 1e6)

    return finish


# --- The writer and the figures -----------------------------------------------------------------


def measure(args: argparse.Namespace, modes: list[str]) -> None:
    from common.models import BusinessInput
    from common.runs.documents import new_run_document

    project = f"bench-listeners-{uuid.uuid4().hex[:8]}"
    client = firestore.Client(project=project)
    business = BusinessInput.model_validate_json(SAMPLE.read_text())
    print(
        f"{args.writes} writes every {args.interval_ms:g} ms to one run document (after "
        f"{args.warmup} not measured), {args.listeners} consumers in one process, one emulator"
    )
    verdict: dict[str, float] = {}
    for mode in modes:
        run_id = uuid.uuid4().hex
        writer = client.collection("runs").document(run_id)
        writer.set(new_run_document(run_id, business, "enterprise") | {"status": "running"})
        started = time.monotonic()
        if mode == "node":
            finish = start_node(project, run_id, args)
        else:
            finish = start_python(mode, project, run_id, args)
        attach = time.monotonic() - started

        # Deliveries the consumers take but nobody counts: connections settle, and Node's JIT
        # (its first few thousand deliveries are several times slower).
        for round_ in range(args.warmup):
            writer.update({"step": f"warm-up {round_}", "updated_at": firestore.SERVER_TIMESTAMP})
            time.sleep(args.interval_ms / 1000)
        written_at: dict[int, int] = {}
        for step in range(1, args.writes + 1):
            written_at[step] = time.monotonic_ns()
            writer.update(
                {
                    "percent": step,
                    "step": f"step {step}",
                    "eta_seconds": args.writes - step,
                    "updated_at": firestore.SERVER_TIMESTAMP,
                }
            )
            time.sleep(args.interval_ms / 1000)
        outcome = finish()

        latencies = [
            (states[step] - written_at[step]) / 1e6
            for states in outcome.seen
            for step in written_at
            if step in states
        ]
        missed = sum(1 for states in outcome.seen for step in written_at if step not in states)
        # CPU from all attached to the last state, over every write delivered (warm-up included).
        deliveries = args.listeners * (args.warmup + args.writes)
        p95 = percentile(latencies, 0.95) if latencies else float("inf")
        verdict[mode] = p95
        verdict[f"{mode}_missed"] = missed
        print(
            f"{mode:>8}: p50 {percentile(latencies, 0.50):5.1f} ms  p95 {p95:5.1f} ms  "
            f"p99 {percentile(latencies, 0.99):5.1f} ms  max {max(latencies):6.1f} ms  "
            f"missed {missed} of {args.writes * args.listeners}  "
            f"CPU {outcome.cpu_seconds * 1000 / deliveries:.3f} ms/delivery  "
            f"(attached in {attach:.2f} s)"
            if latencies
            else f"{mode:>8}: nothing arrived"
        )
    if "watcher" in verdict:
        met = verdict["watcher"] < 50 and verdict["watcher_missed"] == 0
        against = ""
        if "node" in verdict:
            ratio = verdict["watcher"] / verdict["node"]
            met = met and ratio <= 2
            against = f", {ratio:.2f}x the Node client's p95 (target <= 2x)"
        print(
            f"watcher: p95 {verdict['watcher']:.1f} ms (target < 50){against}, "
            f"{verdict['watcher_missed']:.0f} missed: {'met' if met else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
