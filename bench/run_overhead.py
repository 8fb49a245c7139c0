"""What orchestration and Firestore add to a run.

Starts the local stack (emulator, every function under functions-framework, the workflow engine),
runs N full offline analyses, and prints for each: the wall time from `start_run` to the final
status, the sum of the phase functions' own time (each phase's handler, as it measured itself),
the critical path through the phases (parallel pairs count once), and their ratios.

    .venv/bin/python bench/run_overhead.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from pathlib import Path

from common.analysis import launch
from common.models import BusinessInput
from common.platform.settings import get_settings
from common.runs import documents
from common.tenants.businesses import Business, save_business
from local import stack

SAMPLE = Path(__file__).resolve().parents[1] / "local" / "samples" / "tidewater.json"


def one_run(business: BusinessInput) -> dict[str, float]:
    started = time.perf_counter()
    run_id = launch.start_run(business)
    final = documents.watch(run_id, lambda _run: None, timeout=300)
    wall = time.perf_counter() - started
    assert final.status == "succeeded", final.status
    own = {name: float(phase["duration_ms"]) / 1000 for name, phase in final.phases.items()}
    critical = (
        own["research"]
        + own["positioning"]
        + max(own["icps"], own["strategy"])
        + max(own["content"], own["analytics"])
    )
    return {"wall": wall, "phases_sum": sum(own.values()), "critical_path": critical}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    business = BusinessInput.model_validate(json.loads(SAMPLE.read_text())).model_copy(
        update={"business_id": f"bench-{uuid.uuid4().hex[:8]}"}
    )
    print("starting the local stack...")
    with stack.running(
        f"bench-{uuid.uuid4().hex[:8]}", function_env={"OFFLINE_LATENCY_MS": "0"}
    ) as local:
        os.environ.update(local.client_env)
        get_settings.cache_clear()
        save_business(Business(business_id=business.business_id, tier="enterprise"))
        one_run(business)  # warm-up: first requests import lazily and open connections
        results = [one_run(business) for _ in range(args.runs)]
    header = f"{'run':>4} {'wall s':>8} {'phases sum s':>13} {'critical s':>11} {'wall/sum':>9}"
    print(f"{header} {'wall/critical':>14}")
    for number, r in enumerate(results, 1):
        print(
            f"{number:>4} {r['wall']:>8.3f} {r['phases_sum']:>13.3f} {r['critical_path']:>11.3f}"
            f" {r['wall'] / r['phases_sum']:>9.2f} {r['wall'] / r['critical_path']:>14.2f}"
        )
    wall = statistics.median(r["wall"] for r in results)
    phases_sum = statistics.median(r["phases_sum"] for r in results)
    critical = statistics.median(r["critical_path"] for r in results)
    print(
        f"median: wall {wall:.3f} s, phase functions' own time {phases_sum:.3f} s "
        f"(critical path {critical:.3f} s); wall/own = {wall / phases_sum:.2f}, "
        f"wall/critical path = {wall / critical:.2f}; orchestration + gate + lifecycle add "
        f"{wall - critical:.3f} s per run"
    )


if __name__ == "__main__":
    main()
