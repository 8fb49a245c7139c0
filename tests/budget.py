"""Reading what the budget stored, for tests and benchmarks: a business's period as its document
holds it, and the sum of its usage records (which the periods' totals must equal, to the nano)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from common.budget.blocks import USAGE
from common.budget.escrow import escrow
from common.budget.periods import Kind, Period, scope_name, scope_ref
from common.budget.status import STATUS, get_budget_status
from common.budget.usage import CHARGED
from common.platform.settings import get_settings
from common.platform.store import db


def period(business_id: str, key: str) -> Period:
    """The business's day (`YYYY-MM-DD`) or month (`YYYY-MM`) as stored (zeros if unused)."""
    snapshot = scope_ref(scope_name(business_id, key)).get()
    if not snapshot.exists:
        kind: Kind = "day" if len(key) == 10 else "month"
        return Period(scope_name(business_id, key), kind, business_id, key, 0, 0)
    return Period.of(snapshot, "day" if len(key) == 10 else "month")


def charged(business_id: str, key: str) -> int:
    """The sum of the business's usage records charged in `key` (a day or a month)."""
    field = "day" if len(key) == 10 else "month"
    total = 0
    query = db().collection(USAGE).where(filter=FieldFilter("business_id", "==", business_id))
    for snapshot in query.stream():
        record = snapshot.to_dict() or {}
        if record.get(field) == key and record.get("state") in CHARGED:
            total += int(record["charged_nanos"])
    return total


def settle_all() -> None:
    """Close every block of this process with nothing in flight (the end of a request)."""
    escrow.release()


@contextmanager
def short_blocks(monkeypatch: pytest.MonkeyPatch, *, active: float = 0.5) -> Iterator[float]:
    """Blocks that expire (by the database's clock) within about two seconds, so a test can
    see a vanished holder's block reconciled; yields how long to wait for that."""
    monkeypatch.setenv("LLM_TIMEOUT_SECONDS", "0.5")
    monkeypatch.setenv("DEADLINE_MARGIN_SECONDS", "0.25")
    monkeypatch.setenv("BUDGET_BLOCK_ACTIVE_SECONDS", str(active))
    monkeypatch.setenv("BUDGET_RECONCILE_GRACE_SECONDS", "0.25")
    monkeypatch.setenv("BUDGET_IDLE_SECONDS", "60")
    get_settings.cache_clear()
    settings = get_settings()
    yield settings.budget_block_ttl_seconds + settings.budget_reconcile_grace_seconds + 0.5
    get_settings.cache_clear()


def shows_the_fresh_status(db: firestore.Client, business_id: str) -> None:
    """The published document says what a fresh read computes (the month's projection moves
    with the clock between the two, so it is compared to a thousandth)."""
    published = db.collection(STATUS).document(business_id).get().to_dict() or {}
    fresh = get_budget_status(business_id).model_dump(mode="json")
    published.pop("updated_at")
    assert published.pop("projected_monthly") == pytest.approx(
        fresh.pop("projected_monthly"), rel=1e-3
    )
    assert published == fresh
