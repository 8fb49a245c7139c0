"""A usage record is written for every model call, and its `created_at` only grows: Firestore
sustains 500 writes a second to a collection whose documents hold such a value in an indexed
field, so the field keeps no single-field index (terraform/firestore_unindexed.json) and each
record carries a shard (`common.budget.blocks.USAGE_SHARDS`, 30). The one query ordered by the
time, the router's recent outcomes, reads every shard's range of (shard, created_at) at once:
still the newest records of all (while that index is missing or building, phases route without
the outcomes: tests/integration/test_outcomes_shared.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from common.analysis import outcomes
from common.analysis.phases import run_phase
from common.budget.blocks import USAGE, USAGE_SHARDS, usage_shard

pytestmark = pytest.mark.emulator


def test_each_usage_record_carries_the_shard_of_its_key(
    new_run: Callable[..., str], db: firestore.Client
) -> None:
    run_id = new_run()
    run_phase(run_id, "research")
    records = list(db.collection(USAGE).where(filter=FieldFilter("run_id", "==", run_id)).stream())
    assert len(records) >= 3
    for record in records:
        assert (record.to_dict() or {})["shard"] == usage_shard(record.id), record.id
    # The shards spread the records: a key's shard is a hash of it, not one range.
    assert len({usage_shard(f"{run_id}:research:facts:{n}") for n in range(200)}) == USAGE_SHARDS


def test_the_outcomes_read_the_newest_records_of_every_shard(db: firestore.Client) -> None:
    start = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)  # newer than any other test's records
    records: dict[str, dict[str, Any]] = {}
    for n in range(3 * USAGE_SHARDS):
        key = f"shards-{n:03d}"
        records[key] = {
            "key": key,
            "shard": n % USAGE_SHARDS if n % 7 else 0,  # shard 0 holds more than its share
            "created_at": start + dt.timedelta(seconds=n),
            "state": "settled",
        }
    batch = db.batch()
    for key, record in records.items():
        batch.set(db.collection(USAGE).document(key), record)
    batch.commit()
    try:
        found = outcomes._recent(40)
        newest = sorted(records, reverse=True)[:40]  # keys in the order of their times
        assert [r["key"] for r in found] == newest
        assert len({records[key]["shard"] for key in newest}) > USAGE_SHARDS // 2
    finally:
        batch = db.batch()
        for key in records:
            batch.delete(db.collection(USAGE).document(key))
        batch.commit()
