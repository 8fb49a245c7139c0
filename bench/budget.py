"""Budget reserve+settle throughput, cost per pair and the production ceilings it implies, on the
Firestore emulator.

One business, 32 workers: as 32 threads of one process, and as 4 processes of 8 threads
(instances, as Cloud Run runs them). For each: reserve+settle pairs per second, p50/p99 latency of
a pair, CPU per pair (this process's or the instances', and the emulator's), Firestore calls and
document writes per pair, and the hottest document's writes per pair -- counted by a gRPC hook
below the client, not estimated. Production Firestore sustains about one write per second per
document, so the hottest business document's writes per pair give the ceiling for one business,
and the hottest document shared by all businesses (50 businesses, days made ahead) the ceiling
for the platform. Then the overspend (each must be 0) of a tight budget, of a limit lowered
half-way and of every first acknowledgement lost.

    .venv/bin/python -m bench.budget [--pairs 3000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import random
import resource
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

from common.budget import blocks
from common.budget.controls import read_controls
from common.budget.escrow import escrow
from common.budget.ledger import BudgetLedger
from common.budget.periods import day_key, month_key
from common.platform import store
from common.platform.settings import get_settings
from common.spend.ledger import BudgetBusy, BudgetDenied
from common.tenants.businesses import Business, save_business
from local import emulator
from tests.budget import charged, period
from tests.counting import Calls, counting
from tests.faults import lost_acks
from tests.spending import attempt

NANOS = 1_000_000_000
AMOUNT = NANOS // 1000  # $0.001 a call


def register(count: int, tier: str = "enterprise", **overrides: str) -> list[Business]:
    businesses = [
        Business.model_validate(
            {"business_id": f"bench-{uuid.uuid4().hex[:10]}", "tier": tier, "overrides": overrides}
        )
        for _ in range(count)
    ]
    for business in businesses:
        save_business(business)
    return businesses


def _pairs(
    workers: int, businesses: list[Business], pairs: int, amount: int = AMOUNT
) -> tuple[list[float], list[str]]:
    """`pairs` reserve+settle pairs from `workers` threads: each granted pair's latency, and the
    reasons of the refused ones. The blocks go back at the end, as at a request's end."""
    latencies: list[float] = []
    denied: list[str] = []
    lock = threading.Lock()

    def pair(number: int) -> None:
        ledger = BudgetLedger(businesses[number % len(businesses)])
        key = f"bench-{uuid.uuid4().hex}"
        started = time.perf_counter()
        try:
            ledger.reserve(key=key, model="gpt-5-nano", tier="nano", upper_bound_nanos=amount)
        except (BudgetDenied, BudgetBusy) as refusal:
            with lock:
                denied.append(refusal.reason)
            return
        ledger.settle(attempt(key, random.randint(amount // 3, amount), model="gpt-5-nano"))
        with lock:
            latencies.append(time.perf_counter() - started)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(pair, range(pairs)))
    escrow.release()
    return latencies, denied


def _cpu_seconds(pid: int | None = None) -> float:
    """User+system CPU of this process (or of `pid` and the processes it forked)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat.parent.name) == pid or int(fields[1]) == pid:  # the JVM, or its launcher
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _figures(latencies: list[float], denied: list[str], elapsed: float) -> dict[str, float]:
    latencies = sorted(latencies)
    return {
        "pairs_per_s": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else 0.0,
        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))] * 1000 if latencies else 0.0,
        "granted": len(latencies),
        "denied": len(denied),
    }


def hottest(calls: Calls, *, shared: bool) -> int:
    found = [
        n
        for path, n in calls.writes.items()
        if path.startswith(("budget_scopes/platform:", "platform/")) == shared
        and not path.startswith("usage/")
    ]
    return max(found, default=0)


def run_threads(
    workers: int, businesses: list[Business], pairs: int, emulator_pid: int
) -> dict[str, Any]:
    """Threads of this process: figures and CPU per pair from a plain run, then calls and writes
    per pair from a second run of the same size counted below the client (the hook costs CPU of
    its own, so it stays out of the timed run)."""
    cpu, jvm = _cpu_seconds(), _cpu_seconds(emulator_pid)
    started = time.perf_counter()
    latencies, denied = _pairs(workers, businesses[: len(businesses) // 2 or 1], pairs)
    elapsed = time.perf_counter() - started
    cpu, jvm = _cpu_seconds() - cpu, _cpu_seconds(emulator_pid) - jvm
    result: dict[str, Any] = _figures(latencies, denied, elapsed)
    done = max(result["granted"], 1)
    with counting(store.db()) as calls:
        counted, _ = _pairs(workers, businesses[len(businesses) // 2 :], pairs)
    pairs_counted = max(len(counted), 1)
    result.update(
        cpu_ms=cpu * 1000 / done,
        emulator_cpu_ms=jvm * 1000 / done,
        calls=calls.total / pairs_counted,
        writes=sum(calls.writes.values()) / pairs_counted,
        hottest_business=hottest(calls, shared=False) / pairs_counted,
        hottest_shared=hottest(calls, shared=True) / pairs_counted,
        rpcs=dict(calls.rpcs),
    )
    return result


def _instance(
    env: dict[str, str], start_at: float, workers: int, business: Business, pairs: int
) -> tuple[list[float], list[str], float, float, float]:
    """One instance (a process of its own, as Cloud Run runs them): its pairs from `start_at`."""
    os.environ.update(env)
    get_settings.cache_clear()
    _pairs(2, [business], 4)  # its connections and code paths, before the clock
    time.sleep(max(0.0, start_at - time.time()))
    cpu, started = _cpu_seconds(), time.time()
    latencies, denied = _pairs(workers, [business], pairs)
    return latencies, denied, started, time.time(), _cpu_seconds() - cpu


def run_instances(
    instances: int, workers: int, business: Business, pairs: int, emulator_pid: int
) -> dict[str, Any]:
    """`workers` threads in each of `instances` processes on one business, started together."""
    env = {name: os.environ[name] for name in ("FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")}
    start_at = time.time() + 8  # after every process has imported and warmed up
    context = multiprocessing.get_context("spawn")
    jvm = 0.0
    with context.Pool(instances) as pool:
        pending = pool.starmap_async(
            _instance, [(env, start_at, workers, business, pairs // instances)] * instances
        )
        time.sleep(max(0.0, start_at - time.time()))
        jvm = _cpu_seconds(emulator_pid)
        done = pending.get()
        jvm = _cpu_seconds(emulator_pid) - jvm
    latencies = [value for result in done for value in result[0]]
    denied = [reason for result in done for reason in result[1]]
    elapsed = max(result[3] for result in done) - min(result[2] for result in done)
    result: dict[str, Any] = _figures(latencies, denied, elapsed)
    granted = max(result["granted"], 1)
    result.update(
        cpu_ms=sum(r[4] for r in done) * 1000 / granted, emulator_cpu_ms=jvm * 1000 / granted
    )
    return result


def overspend(businesses: list[Business], limit: int | None = None) -> int:
    """Nanos spent above the daily limit (or `limit`), over the businesses; 0 is the only good
    answer. Also checks each day equals the sum of its usage records."""
    total = 0
    today = day_key(dt.datetime.now(dt.UTC))
    for business in businesses:
        day = period(business.business_id, today)
        assert day.spent == charged(business.business_id, today), business.business_id
        total += max(0, day.spent - (limit if limit is not None else day.limit))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3000, help="pairs per throughput scenario")
    args = parser.parse_args()
    firestore = emulator.start()
    os.environ["FIRESTORE_EMULATOR_HOST"] = firestore.host
    os.environ["GOOGLE_CLOUD_PROJECT"] = f"bench-{uuid.uuid4().hex[:8]}"
    get_settings.cache_clear()
    pid = firestore.process.pid
    try:
        _pairs(4, register(1), 40)  # warm up connections and code paths
        header = f"{'one business, 32 workers':<30}{'pairs/s':>9}{'p50 ms':>8}{'p99 ms':>8}"
        print(f"{header}{'CPU ms/pair':>12}{'emulator':>10}")
        threads = run_threads(32, register(2), args.pairs, pid)
        instances = run_instances(4, 8, register(1)[0], args.pairs, pid)
        for label, result in (("as 32 threads", threads), ("as 4 processes x 8", instances)):
            print(
                f"{label:<30}{result['pairs_per_s']:>9.1f}{result['p50_ms']:>8.1f}"
                f"{result['p99_ms']:>8.1f}{result['cpu_ms']:>12.2f}{result['emulator_cpu_ms']:>10.2f}"
            )
        print(
            f"Firestore per pair (32 threads): {threads['calls']:.3f} calls "
            f"{threads['rpcs']}, {threads['writes']:.2f} document writes; hottest business "
            f"document {threads['hottest_business']:.5f} writes/pair"
        )
        # Fifty businesses, their day made ahead (as the hour before midnight does).
        many = register(100, "basic")
        now, controls = dt.datetime.now(dt.UTC), read_controls()
        for business in many:
            blocks.warm(business, controls, day_key(now), month_key(now))
        spread = run_threads(32, many, args.pairs, pid)
        business_ceiling = 1 / max(threads["hottest_business"], 1e-9)
        shared = spread["hottest_shared"]
        platform_ceiling = "unbounded (none written)" if shared == 0 else f"{1 / shared:,.0f}/s"
        print(
            f"50 businesses (days made ahead), 32 threads: {spread['pairs_per_s']:.1f} pairs/s; "
            f"hottest shared "
            f"document {shared:.5f} writes/pair, hottest business document "
            f"{spread['hottest_business']:.5f}"
        )
        print(
            f"Implied production ceilings at 1 write/s per document: {business_ceiling:,.0f} "
            f"pairs/s per business (target >= 500), platform {platform_ceiling} "
            "(target >= 10,000)"
        )
        # Demand of 300 pairs x $0.01 against a $0.50 daily limit: most must be refused.
        tight = register(1, daily_limit_usd="0.5")
        latencies, denied = _pairs(32, tight, 300, NANOS // 100)
        print(
            f"tight budget, 32 workers: {len(latencies)} granted, {len(denied)} refused, "
            f"overspend ${overspend(tight) / NANOS:.9f} (must be 0)"
        )
        lowered = register(1, daily_limit_usd="1.5")
        committed: list[int] = []

        def lower() -> None:
            time.sleep(0.5)
            business = lowered[0].model_copy(
                update={
                    "overrides": lowered[0].overrides.model_copy(
                        update={"daily_limit_usd": Decimal("0.5")}
                    )
                }
            )
            lowered[0] = save_business(business)
            # Every instance sees the change within budget_cache_seconds: what was committed by
            # then is what the old limit allowed; nothing granted after it may exceed the new one.
            time.sleep(get_settings().budget_cache_seconds + 0.1)
            found = period(business.business_id, day_key(dt.datetime.now(dt.UTC)))
            committed.append(found.spent + found.allocated)

        changer = threading.Thread(target=lower)
        changer.start()
        latencies, denied = _pairs(32, lowered, 300, NANOS // 100)
        changer.join()
        allowed = max(lowered[0].limits.daily_limit_nanos, committed[0])
        print(
            f"limit lowered $1.50 -> $0.50 half-way (seen within "
            f"{get_settings().budget_cache_seconds} s), 32 workers: {len(latencies)} granted, "
            f"{len(denied)} refused, overspend ${overspend(lowered, allowed) / NANOS:.9f} "
            "(must be 0)"
        )
        flaky = register(1, daily_limit_usd="0.5")
        with lost_acks(store.db()) as faults:
            faults.arm(10**6)
            latencies, denied = _pairs(32, flaky, 300, NANOS // 100)
        print(
            f"every first acknowledgement lost ({faults.dropped} commits and batch writes), "
            f"32 workers: {len(latencies)} granted, {len(denied)} refused, "
            f"overspend ${overspend(flaky) / NANOS:.9f} (must be 0)"
        )
    finally:
        firestore.stop()


if __name__ == "__main__":
    main()
