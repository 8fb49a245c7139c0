"""A per-user limit on starting runs: past the burst, 429 with Retry-After, and nothing written."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from google.cloud import firestore

from common.models import BusinessInput
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


def test_tokens_come_back_over_time(
    api: Api,
    db: firestore.Client,
    monkeypatch: pytest.MonkeyPatch,
    business: Callable[..., Business],
    people: dict[str, str],
    business_input: BusinessInput,
) -> None:
    monkeypatch.setenv("API_RUN_BURST", "1")
    monkeypatch.setenv("API_RUN_REFILL_SECONDS", "3600")
    get_settings.cache_clear()
    registered = business(tier="basic")
    start = f"/v1/businesses/{registered.business_id}/runs"
    body = business_input.model_dump(exclude={"business_id"}) | {"icp_count": 9}
    member = people["member"]
    assert api.call("POST", start, member, json_body=body).status_code == 402
    assert api.call("POST", start, member, json_body=body).status_code == 429
    # An hour passes for this user's bucket.
    bucket = db.collection("rate_limits").document(member)
    stored = bucket.get().to_dict() or {}
    bucket.update({"updated_at": stored["updated_at"] - dt.timedelta(hours=1)})
    assert api.call("POST", start, member, json_body=body).status_code == 402


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
    assert not db.collection("rate_limits").document(people["member"]).get().exists
