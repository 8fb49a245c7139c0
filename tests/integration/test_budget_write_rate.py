"""The production limit as a test: Firestore sustains about one write per second per document,
and the emulator enforces none of it, so the writes are counted (a gRPC hook below the client,
tests/counting.py) and held to what 500 pairs a second per business and 10,000 a second over
all businesses need.

- One business, a burst of reserve+settle pairs from 32 threads: no document is written more
  than once per 500 pairs (the business's day and month, its blocks, its published status);
  each call's own record is written twice (its hold, its settle) and never again.
- Fifty businesses whose day was made ahead (as every business's is before midnight): during
  their burst no document shared by all businesses (the platform's shards and controls) is
  written at all, so at most 1 per 10,000 pairs; making the days ahead writes each shard a
  few times per day in all, not per pair.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from common.budget import blocks
from common.budget.controls import read_controls
from common.budget.escrow import escrow
from common.budget.ledger import BudgetLedger
from common.budget.periods import day_key, month_key
from common.platform.store import db
from common.tenants.businesses import Business
from tests.counting import Calls, counting
from tests.spending import attempt

MILLI = 1_000_000  # a tenth of a cent


def burst(businesses: list[Business], pairs: int, workers: int = 32) -> None:
    """`pairs` reserve+settle pairs from `workers` threads, round-robin over `businesses`."""

    def pair(number: int) -> None:
        ledger = BudgetLedger(businesses[number % len(businesses)])
        key = f"pair-{uuid.uuid4().hex}"
        ledger.reserve(key=key, model="gpt-5-nano", tier="nano", upper_bound_nanos=MILLI)
        ledger.settle(attempt(key, MILLI // 2, model="gpt-5-nano"))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(pair, range(pairs)))
    escrow.release()  # the end of the requests: counted too


def hottest(calls: Calls, *, shared: bool) -> tuple[str, int]:
    """The document written most: of those every business shares, or of the others (a call's
    own usage record aside, which is a new document each time)."""
    found = [
        (path, n)
        for path, n in calls.writes.items()
        if path.startswith(("budget_scopes/platform:", "platform/")) == shared
        and not path.startswith("usage/")
    ]
    return max(found, key=lambda item: item[1]) if found else ("", 0)


@pytest.mark.emulator
def test_one_business_writes_no_document_more_than_once_per_500_pairs(
    register: Callable[..., Business],
) -> None:
    business = register("busy", "enterprise")
    pairs = 5000
    with counting(db()) as calls:
        burst([business], pairs)
    path, writes = hottest(calls, shared=False)
    assert writes * 500 <= pairs, f"{path} written {writes} times in {pairs} pairs"
    records = {path: n for path, n in calls.writes.items() if path.startswith("usage/")}
    # Its hold and its settle. A hold that rides in a block's take goes out again with the take
    # when that commit lost a race to another take (the hook counts what is sent; a failed
    # commit writes nothing): a few of the pairs, never most.
    assert len(records) == pairs and min(records.values()) == 2, calls.writes.most_common(3)
    assert sum(records.values()) - 2 * pairs <= pairs // 100, calls.writes.most_common(3)
    assert hottest(calls, shared=True)[1] <= 17  # the day's shards, split once, and a share


@pytest.mark.emulator
def test_fifty_businesses_write_no_shared_document_per_pair(
    register: Callable[..., Business],
) -> None:
    businesses = [register(f"shop-{n:02d}", "basic") for n in range(50)]
    now = dt.datetime.now(dt.UTC)
    tomorrow = now + dt.timedelta(days=1)
    controls = read_controls()
    with counting(db()) as warming:
        for business in businesses:  # what the hour before midnight does, for today
            blocks.warm(business, controls, day_key(now), month_key(now))
            # and for tomorrow (the burst does it itself in the hour before midnight)
            blocks.warm(business, controls, day_key(tomorrow), month_key(tomorrow))
    # Making fifty days ahead: the shards split once, then each written by the businesses whose
    # home it is (a share each), a few times per day in all.
    assert hottest(warming, shared=True)[1] <= 1 + 50

    pairs = 50 * 100
    with counting(db()) as calls:
        burst(businesses, pairs)
    path, writes = hottest(calls, shared=True)
    assert writes * 10_000 <= pairs, f"{path} written {writes} times in {pairs} pairs"
    path, writes = hottest(calls, shared=False)
    assert writes * 500 <= pairs, f"{path} written {writes} times in {pairs} pairs"
