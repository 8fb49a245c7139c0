"""A per-user limit on starting runs: past the burst, 429 with Retry-After, and nothing written."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from google.cloud import firestore

from common.backend.ratelimit import shards, take_run_token
from common.models import BusinessInput
from common.platform.errors import TooManyRequests
from common.platform.settings import get_settings
from common.tenants.businesses import Business
from tests.api.conftest import Api

pytestmark = pytest.mark.emulator


def dump(client: firestore.Client) -> dict[str, Any]:
    """Every document of the project with its fields, subcollections included."""
    documents: dict[str, Any] = {}

    def walk(collections: Any) -> None:
        for collection in collections:
            for ref in collection.list_documents():
                snapshot = ref.get()
                if snapshot.exists:
                    documents[ref.path] = snapshot.to_dict()
                walk(ref.collections())

    walk(client.collections())
    return documents


@pytest.fixture
def burst_of_two(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_RUN_BURST", "2")
    monkeypatch.setenv("API_RUN_REFILL_SECONDS", "600")
    get_settings.cache_clear()


def test_a_burst_beyond_the_limit_is_429_and_writes_nothing(
    api: Api,
    db: firestore.Client,
    burst_of_two: None,
    business: Callable[..., Business],
    people: dict[str, str],
    business_input: BusinessInput,
) -> None:
    # On the basic tier 9 ICPs are refused by tier gating, after the rate limit: each request
    # spends a token and starts nothing, so nothing else writes while the test compares.
    registered = business(tier="basic")
    start = f"/v1/businesses/{registered.business_id}/runs"
    body = business_input.model_dump(exclude={"business_id"}) | {"icp_count": 9}
    member = people["member"]

    for _ in range(2):
        answer = api.call("POST", start, member, json_body=body)
        assert answer.status_code == 402
        assert answer.json["error"]["code"] == "feature_limit_exceeded"

    before = dump(db)
    limited = api.call("POST", start, member, json_body=body)
    assert limited.status_code == 429
    assert limited.json["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 600
    assert dump(db) == before

    # The limit is the user's, not the business's: the owner still has a full bucket.
    assert api.call("POST", start, people["owner"], json_body=body).status_code == 402


def test_tokens_come_back_one_per_refill_period(
    project_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_RUN_BURST", "3")
    monkeypatch.setenv("API_RUN_REFILL_SECONDS", "60")
    get_settings.cache_clear()
    uid = f"user-{uuid.uuid4().hex[:8]}"
    start = 1_800_000_000.0  # a tick boundary (a multiple of 60 s)
    for _ in range(3):
        take_run_token(uid, now=start + 5)
    with pytest.raises(TooManyRequests) as refused:
        take_run_token(uid, now=start + 5)
    assert refused.value.retry_after == 55  # the next tick
    # Each period gives back one token, never more.
    for period in (1, 2, 3):
        take_run_token(uid, now=start + 60 * period + 1)
        with pytest.raises(TooManyRequests):
            take_run_token(uid, now=start + 60 * period + 2)
    # A long pause fills the bucket to its burst, and no further.
    later = start + 3600
    for _ in range(3):
        take_run_token(uid, now=later)
    with pytest.raises(TooManyRequests):
        take_run_token(uid, now=later)


def test_over_any_window_the_shards_grant_no_more_than_one_bucket(
    project_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sharded bucket's bound (common.backend.ratelimit): over any T seconds at most
    burst + T / refill + 1 tokens, checked on a seeded sequence of requests."""
    burst, refill = 5, 10.0
    monkeypatch.setenv("API_RUN_BURST", str(burst))
    monkeypatch.setenv("API_RUN_REFILL_SECONDS", str(refill))
    get_settings.cache_clear()
    uid = f"user-{uuid.uuid4().hex[:8]}"
    clock = random.Random(22)
    times = sorted(clock.uniform(0, 120) for _ in range(60))
    granted = []
    for at in times:
        try:
            take_run_token(uid, now=1_800_000_000 + at)
        except TooManyRequests:
            continue
        granted.append(at)
    for i, first in enumerate(granted):
        for j in range(i, len(granted)):
            window = granted[j] - first
            assert j - i + 1 <= burst + window / refill + 1, (first, granted[j])
    # Refusals were real ones: requests came faster than the bucket refills, and the bucket
    # still granted its burst plus about one token per period.
    assert len(granted) < len(times)
    assert len(granted) >= burst + 120 / refill - shards(burst)


def test_invalid_requests_spend_no_token(
    api: Api,
    db: firestore.Client,
    burst_of_two: None,
    business: Callable[..., Business],
    people: dict[str, str],
) -> None:
    registered = business()
    start = f"/v1/businesses/{registered.business_id}/runs"
    for _ in range(5):
        assert api.call("POST", start, people["member"], json_body={}).status_code == 400
    assert list(db.collection("rate_limits").stream()) == []
