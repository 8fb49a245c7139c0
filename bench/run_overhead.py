"""What orchestration and Firestore add to a run, and how many Firestore calls a run makes.

Starts the local stack (emulator, every function under functions-framework behind its ingress,
the workflow engine) with every process, this one included, reaching the emulator through a
counting gRPC proxy (`tests/proxy.py`), runs N full offline analyses one after another, and
prints for each:
- the wall time from `start_run` to the final status the customer's listener sees, the
  critical path through the phases' own time (each phase's handler as it measured itself, less
  its budget check; parallel pairs count their longer branch) and their ratio;
- where the rest went, along the critical path: the launch, the lifecycle's start and succeed,
  the budget checks (each phase's own, on its first read, as it measured it; and any call to
  the budget_check function), each phase call beyond the phase's own time (framework, HTTP
  hops, the phase's final commit), and what is left (the workflow engine, the listener's
  delivery);
- every Firestore call the run made, by kind (counted by the proxy, not estimated): documents
  read in batch reads, documents written by commits, queries; the customer's listener apart;
  the writes to the documents it writes most (its own, its business's day and budget status);
  and the automatic index entries its writes make, with and without the fields Terraform exempts
  (terraform/firestore_unindexed.json).

    .venv/bin/python -m bench.run_overhead [--runs 5]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from common.analysis import launch
from common.models import BusinessInput
from common.platform.settings import get_settings
from common.runs import documents
from common.tenants.businesses import Business, save_business
from local import emulator, stack
from tests.proxy import Traffic, proxy
from tests.terraform.planfile import UNINDEXED_FILE, unindexed

SAMPLE = Path(__file__).resolve().parents[1] / "local" / "samples" / "tidewater.json"
STAGES: list[tuple[str, ...]] = [
    ("research",),
    ("positioning",),
    ("icps", "strategy"),
    ("content", "analytics"),
]
KINDS = [
    ("BatchGetDocuments", "batch reads"),
    ("Commit", "commits"),
    ("RunQuery", "queries"),
    ("RunAggregationQuery", "aggregations"),
    ("BeginTransaction", "transactions"),
    ("Rollback", "rollbacks"),
    ("BatchWrite", "batch writes"),
]


@dataclass
class Hop:
    """One request through a function's ingress."""

    function: str
    label: str  # the phase a budget check or phase is for, the lifecycle's transition
    started: float
    ended: float

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class Hops:
    found: list[Hop] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> list[Hop]:
        with self.lock:
            taken, self.found = self.found, []
        return taken


@contextmanager
def timed_ingresses(local: stack.LocalStack) -> Iterator[Hops]:
    """Record every request each function's ingress serves, labelled from its body."""
    hops = Hops()
    for function in local.functions.values():
        ingress = function.ingress
        original: Callable[[BaseHTTPRequestHandler], None] = ingress._handle

        def handle(
            request: BaseHTTPRequestHandler,
            original: Callable[[BaseHTTPRequestHandler], None] = original,
            name: str = function.name,
        ) -> None:
            started = time.perf_counter()
            body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
            request.rfile = io.BytesIO(body)
            try:
                sent = json.loads(body or b"{}")
            except ValueError:
                sent = {}
            label = str(sent.get("phase") or sent.get("transition") or name)
            try:
                original(request)
            finally:
                with hops.lock:
                    hops.found.append(Hop(name, label, started, time.perf_counter()))

        ingress._handle = handle  # type: ignore[method-assign]
    yield hops


@dataclass
class Result:
    """One run: its wall time, its critical path, where the rest went, its Firestore traffic."""

    wall: float
    critical_path: float
    parts: dict[str, float]
    traffic: Traffic


def one_run(business: BusinessInput, traffic: Traffic, hops: Hops) -> Result:
    before = traffic.snapshot()
    hops.take()
    started = time.perf_counter()
    run_id = launch.start_run(business)
    launched = time.perf_counter() - started
    final = documents.watch(run_id, lambda _run: None, timeout=300)
    wall = time.perf_counter() - started
    assert final.status == "succeeded", final.status
    time.sleep(0.3)  # what the functions still write after answering belongs to this run
    used = traffic.since(before)
    taken = hops.take()
    # A phase checks its budget on its first read: that is the check's, not the phase's work.
    checked = {
        name: float(phase.get("check_ms") or 0) / 1000 for name, phase in final.phases.items()
    }
    own = {
        name: float(phase["duration_ms"]) / 1000 - checked[name]
        for name, phase in final.phases.items()
    }
    checks = {h.label: h.seconds for h in taken if h.function == "budget_check"}
    for name, seconds in checked.items():
        checks[name] = checks.get(name, 0.0) + seconds
    calls = {h.label: h.seconds for h in taken if h.function == h.label}
    lifecycle = {h.label: h.seconds for h in taken if h.function == "lifecycle"}
    critical = 0.0
    parts = {"budget checks": 0.0, "phase calls beyond own time": 0.0}
    for stage in STAGES:
        branch = max(stage, key=lambda p: checks.get(p, 0.0) + calls.get(p, 0.0))
        critical += max(own[p] for p in stage)
        parts["budget checks"] += checks.get(branch, 0.0)
        parts["phase calls beyond own time"] += (
            calls.get(branch, 0.0) - own[branch] - checked[branch]
        )
    # The workflow's first call (the lifecycle's start) may begin before the launch returns.
    first = min((h.started for h in taken if h.label == "start"), default=started + launched)
    parts["launch"] = min(launched, first - started)
    parts["lifecycle start + succeed"] = lifecycle.get("start", 0.0) + lifecycle.get("succeed", 0.0)
    # Less what overlaps: the listener sees the run end before the lifecycle's succeed answers.
    parts["engine, listener, the rest"] = wall - critical - sum(parts.values())
    return Result(wall, critical, parts, used)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    business = BusinessInput.model_validate(json.loads(SAMPLE.read_text())).model_copy(
        update={"business_id": f"bench-{uuid.uuid4().hex[:8]}"}
    )
    print("starting the local stack...")
    firestore = emulator.start()
    try:
        with (
            proxy(firestore.host) as (host, traffic),
            stack.running(
                f"bench-{uuid.uuid4().hex[:8]}",
                firestore=firestore,
                function_env={"OFFLINE_LATENCY_MS": "0", "FIRESTORE_EMULATOR_HOST": host},
            ) as local,
            timed_ingresses(local) as hops,
        ):
            os.environ.update({**local.client_env, "FIRESTORE_EMULATOR_HOST": host})
            get_settings.cache_clear()
            save_business(Business(business_id=business.business_id, tier="enterprise"))
            one_run(business, traffic, hops)  # warm-up: lazy imports, connections, blocks
            results = [one_run(business, traffic, hops) for _ in range(args.runs)]
    finally:
        firestore.stop()
    report(results)


def report(results: list[Result]) -> None:
    print(f"{'run':>4} {'wall s':>8} {'critical s':>11} {'wall/critical':>14} {'calls':>6}")
    for number, r in enumerate(results, 1):
        print(
            f"{number:>4} {r.wall:>8.3f} {r.critical_path:>11.3f} "
            f"{r.wall / r.critical_path:>14.2f} {r.traffic.calls():>6}"
        )
    wall = statistics.median(r.wall for r in results)
    critical = statistics.median(r.critical_path for r in results)
    ratio = statistics.median(r.wall / r.critical_path for r in results)
    print(
        f"median of {len(results)}: wall {wall:.3f} s, critical path {critical:.3f} s, "
        f"wall/critical path = {ratio:.2f}; {wall - critical:.3f} s beyond it:"
    )
    for name in results[0].parts:
        seconds = statistics.median(r.parts[name] for r in results)
        print(f"  {name:<32} {seconds * 1000:>7.1f} ms")
    traffics = [r.traffic for r in results]
    calls = statistics.median(t.calls() for t in traffics)
    print(f"Firestore calls per run (median): {calls:.0f}, the customer's listener apart")
    for method, kind in KINDS:
        n = statistics.median(t.rpcs.get(method, 0) for t in traffics)
        if n:
            print(f"  {kind:<14} {n:>5.0f}")
    read = statistics.median(t.documents_read for t in traffics)
    written = statistics.median(t.documents_written for t in traffics)
    listens = statistics.median(t.rpcs.get("Listen", 0) for t in traffics)
    print(
        f"  documents read in batch reads {read:.0f}, written {written:.0f}; "
        f"listeners opened {listens:.0f}"
    )
    # Production sustains about one write a second per document: with real models a run lasts
    # minutes, so these stay far under it.
    hottest = statistics.median(t.hottest()[1] for t in traffics)
    day = statistics.median(t.hottest("budget_scopes/business:")[1] for t in traffics)
    status = statistics.median(t.hottest("budget_status/")[1] for t in traffics)
    print(
        f"Writes per run to the documents written most (median): the run's {hottest:.0f}, "
        f"its business's day {day:.0f}, its budget status {status:.0f}"
    )
    exempt = unindexed()
    kept = statistics.median(
        sum(n for key, n in t.entries.items() if key not in exempt) for t in traffics
    )
    spared = statistics.median(
        sum(n for key, n in t.entries.items() if key in exempt) for t in traffics
    )
    print(
        f"Automatic index entries the writes make per run (median): {kept:.0f}; "
        f"{spared:.0f} more without the exemptions of {UNINDEXED_FILE.name}"
    )


if __name__ == "__main__":
    main()
