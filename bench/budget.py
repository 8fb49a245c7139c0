"""Budget reserve+settle throughput, latency and overspend on the Firestore emulator.

For 1, 8 and 32 concurrent workers (threads of one process), on one business and spread over
many businesses, and for 32 workers on one business as 4 processes of 8 threads (instances, as
Cloud Run runs them: one process's threads share its interpreter lock), prints reserve+settle
pairs per second and the p50/p99 latency of a pair. Then, under 32
workers, the overspend measured (each must be 0) for a tight budget; for a limit lowered
half-way through (against the new limit, or what was already committed when it changed); and
with every commit's first acknowledgement lost (the Firestore client's own retry delivering
each write twice).

    .venv/bin/python -m bench.budget [--pairs 600]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from common.budget import counters
from common.budget.ledger import BudgetLedger, utc_now
from common.platform import store
from common.platform.settings import get_settings
from common.spend.ledger import BudgetDenied
from common.tenants.businesses import Business, save_business
from local import emulator
from tests.faults import lost_acks
from tests.spending import attempt

NANOS = 1_000_000_000


def register(count: int, **overrides: str) -> list[Business]:
    businesses = [
        Business.model_validate(
            {
                "business_id": f"bench-{uuid.uuid4().hex[:10]}",
                "tier": "enterprise",
                "overrides": overrides,
            }
        )
        for _ in range(count)
    ]
    for business in businesses:
        save_business(business)
    return businesses


def _pairs(
    workers: int, businesses: list[Business], pairs: int, reserve: int
) -> tuple[list[float], list[str]]:
    """`pairs` reserve+settle pairs from `workers` threads: each granted pair's latency, and the
    reasons of the refused ones."""
    latencies: list[float] = []
    denied: list[str] = []
    lock = threading.Lock()

    def pair(number: int) -> None:
        ledger = BudgetLedger(businesses[number % len(businesses)])
        key = f"bench-{uuid.uuid4().hex}"
        started = time.perf_counter()
        try:
            ledger.reserve(key=key, model="gpt-5-mini", tier="mini", upper_bound_nanos=reserve)
        except BudgetDenied as refusal:
            with lock:
                denied.append(refusal.reason)
            return
        ledger.settle(attempt(key, random.randint(reserve // 3, reserve)))
        with lock:
            latencies.append(time.perf_counter() - started)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(pair, range(pairs)))
    return latencies, denied


def _figures(latencies: list[float], denied: list[str], elapsed: float) -> dict[str, float]:
    latencies = sorted(latencies)
    return {
        "pairs_per_s": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else 0.0,
        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))] * 1000 if latencies else 0.0,
        "granted": len(latencies),
        "denied": len(denied),
    }


def run(workers: int, businesses: list[Business], pairs: int, reserve: int) -> dict[str, float]:
    started = time.perf_counter()
    latencies, denied = _pairs(workers, businesses, pairs, reserve)
    return _figures(latencies, denied, time.perf_counter() - started)


def _instance(
    env: dict[str, str], start_at: float, workers: int, business: Business, pairs: int
) -> tuple[list[float], list[str], float, float]:
    """One instance (a process of its own, as Cloud Run runs them): its pairs from `start_at`."""
    os.environ.update(env)
    get_settings.cache_clear()
    run(2, [business], 4, NANOS // 100)  # its connections and code paths, before the clock
    time.sleep(max(0.0, start_at - time.time()))
    started = time.time()
    latencies, denied = _pairs(workers, [business], pairs, NANOS // 100)
    return latencies, denied, started, time.time()


def run_instances(instances: int, workers: int, business: Business, pairs: int) -> dict[str, float]:
    """`workers` threads in each of `instances` processes on one business, started together."""
    env = {name: os.environ[name] for name in ("FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")}
    start_at = time.time() + 8  # after every process has imported and warmed up
    context = multiprocessing.get_context("spawn")
    with context.Pool(instances) as pool:
        done = pool.starmap(
            _instance, [(env, start_at, workers, business, pairs // instances)] * instances
        )
    latencies = [value for result in done for value in result[0]]
    denied = [reason for result in done for reason in result[1]]
    elapsed = max(result[3] for result in done) - min(result[2] for result in done)
    return _figures(latencies, denied, elapsed)


def overspend(businesses: list[Business]) -> int:
    """Nanos spent above the daily limit, summed over the businesses (0 is the only good answer)."""
    total = 0
    for business in businesses:
        day = business.scopes(utc_now())[0]
        spent = counters.read([day])[day.name].spent
        total += max(0, spent - business.limits.daily_limit_nanos)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=600, help="reserve+settle pairs per scenario")
    args = parser.parse_args()
    firestore = emulator.start()
    os.environ["FIRESTORE_EMULATOR_HOST"] = firestore.host
    os.environ["GOOGLE_CLOUD_PROJECT"] = f"bench-{uuid.uuid4().hex[:8]}"
    get_settings.cache_clear()
    try:
        register(1)  # warm up connections and code paths
        run(4, register(1), 40, NANOS // 100)
        print(f"{'scenario':<28}{'workers':>8}{'pairs/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
        for label, count in (("one business", 1), ("many businesses (32)", 32)):
            for workers in (1, 8, 32):
                businesses = register(count)
                pairs = max(args.pairs // 4, 50) if workers == 1 else args.pairs
                result = run(workers, businesses, pairs, NANOS // 100)
                print(
                    f"{label:<28}{workers:>8}{result['pairs_per_s']:>10.1f}"
                    f"{result['p50_ms']:>9.1f}{result['p99_ms']:>9.1f}"
                )
        # 32 workers as Cloud Run serves them: instances (processes), each with concurrent requests.
        result = run_instances(4, 8, register(1)[0], args.pairs)
        label = "one business, 4 processes"
        print(
            f"{label:<28}{32:>8}{result['pairs_per_s']:>10.1f}"
            f"{result['p50_ms']:>9.1f}{result['p99_ms']:>9.1f}"
        )
        # Demand of 300 pairs x $0.01 against a $0.50 daily limit: most must be refused.
        tight = register(1, daily_limit_usd="0.5")
        result = run(32, tight, 300, NANOS // 100)
        print(
            f"tight budget, 32 workers: {result['granted']} granted, {result['denied']} denied, "
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
            day = lowered[0].scopes(utc_now())[0]
            totals = counters.read([day])[day.name]
            committed.append(totals.spent + totals.reserved)

        changer = threading.Thread(target=lower)
        changer.start()
        result = run(32, lowered, 300, NANOS // 100)
        changer.join()
        allowed = max(lowered[0].limits.daily_limit_nanos, committed[0])
        day = lowered[0].scopes(utc_now())[0]
        over = max(0, counters.read([day])[day.name].spent - allowed)
        print(
            f"limit lowered $1.50 -> $0.50 half-way, 32 workers: {result['granted']} granted, "
            f"{result['denied']} denied, overspend ${over / NANOS:.9f} (must be 0)"
        )
        flaky = register(1, daily_limit_usd="0.5")
        with lost_acks(store.db()) as faults:
            faults.arm(10**6)
            result = run(32, flaky, 300, NANOS // 100)
        print(
            f"every first acknowledgement lost ({faults.dropped} commits), 32 workers: "
            f"{result['granted']} granted, {result['denied']} denied, "
            f"overspend ${overspend(flaky) / NANOS:.9f} (must be 0)"
        )
    finally:
        firestore.stop()


if __name__ == "__main__":
    main()
