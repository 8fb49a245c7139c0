"""`Idempotency-Key` on `POST /v1/businesses/{id}/runs`, Stripe's convention: the same key and
request within 24 hours answer the first run; another request with the key is a 409; no key
keeps starting a run per request."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from common.backend import idempotency
from common.backend.app import RunRequest
from common.models import BusinessInput
from common.platform.store import db
from common.runs import documents
from common.tenants.businesses import Business, save_business
from tests.api.conftest import Api, ApiInstances

pytestmark = pytest.mark.emulator


def runs_of(business_id: str) -> list[str]:
    query = (
        db().collection(documents.RUNS).where(filter=FieldFilter("business_id", "==", business_id))
    )
    return sorted(snapshot.id for snapshot in query.stream())


def keys_of(uid: str) -> list[dict[str, Any]]:
    query = db().collection(idempotency.KEYS).where(filter=FieldFilter("uid", "==", uid))
    return [snapshot.to_dict() or {} for snapshot in query.stream()]


@pytest.fixture
def starter(
    api: Api, served: ApiInstances, people: dict[str, str], business_input: BusinessInput
) -> Callable[..., Any]:
    """`starter(business_id, key=None, uid=member, **changes)`: POST a start of the sample
    business input (with `changes`), with an Idempotency-Key when given."""

    def _start(
        business_id: str, key: str | None = None, uid: str | None = None, **changes: Any
    ) -> Any:
        body = business_input.model_dump(mode="json", exclude={"business_id"}) | changes
        headers = {} if key is None else {"Idempotency-Key": key}
        return api.call(
            "POST",
            f"/v1/businesses/{business_id}/runs",
            uid or people["member"],
            json_body=body,
            headers=headers,
        )

    return _start


def test_the_same_key_and_request_answer_the_first_run(
    api: Api,
    starter: Callable[..., Any],
    business: Callable[..., Business],
    people: dict[str, str],
    business_input: BusinessInput,
) -> None:
    registered = business()
    key = str(uuid.uuid4())
    first = starter(registered.business_id, key)
    assert first.status_code == 201, first.json
    assert "Idempotent-Replayed" not in first.headers
    run_id = first.json["run_id"]

    again = starter(registered.business_id, key)
    assert again.status_code == 200, again.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json["run_id"] == run_id and again.headers["Location"] == f"/v1/runs/{run_id}"
    assert again.json["listen"] == first.json["listen"]

    # The same request spelled differently (key order, spacing) is the same request.
    body = business_input.model_dump(mode="json", exclude={"business_id"})
    respelled = api.call(
        "POST",
        f"/v1/businesses/{registered.business_id}/runs",
        people["member"],
        data=json.dumps(dict(reversed(body.items())), indent=3),
        content_type="application/json",
        headers={"Idempotency-Key": key},
    )
    assert respelled.status_code == 200 and respelled.json["run_id"] == run_id
    assert runs_of(registered.business_id) == [run_id]

    # Kept for Firestore's TTL policy to delete a day later.
    (stored,) = keys_of(people["member"])
    assert stored["run_id"] == run_id and stored["state"] == "started"
    assert stored["expires_at"] - stored["created_at"] == dt.timedelta(hours=24)


def test_the_same_key_with_another_request_is_a_409(
    starter: Callable[..., Any], business: Callable[..., Business]
) -> None:
    registered, other = business(), business()
    key = "order-7f3a"
    run_id = starter(registered.business_id, key).json["run_id"]
    for changed in (
        starter(registered.business_id, key, icp_count=4),
        starter(registered.business_id, key, name="Another name"),
        starter(other.business_id, key),  # another business is another request
    ):
        assert changed.status_code == 409, changed.json
        assert changed.json["error"]["code"] == "idempotency_key_reused"
        assert changed.json["error"]["field"] == "Idempotency-Key"
    assert runs_of(registered.business_id) == [run_id]
    assert runs_of(other.business_id) == []


def test_without_a_key_each_request_starts_a_run(
    starter: Callable[..., Any], business: Callable[..., Business]
) -> None:
    registered = business()
    first, second = starter(registered.business_id), starter(registered.business_id)
    assert first.status_code == second.status_code == 201
    assert first.json["run_id"] != second.json["run_id"]
    assert len(runs_of(registered.business_id)) == 2


def test_keys_are_each_users_own(
    starter: Callable[..., Any], business: Callable[..., Business], people: dict[str, str]
) -> None:
    registered = business()
    mine = starter(registered.business_id, "same-key")
    theirs = starter(registered.business_id, "same-key", uid=people["owner"])
    assert mine.status_code == theirs.status_code == 201
    assert mine.json["run_id"] != theirs.json["run_id"]


@pytest.mark.parametrize("key", ["", " ", "x" * 256, "tab\there", "new\nline", "ключ"], ids=repr)
def test_a_malformed_key_is_400_naming_the_header(
    api: Api,
    served: ApiInstances,
    business: Callable[..., Business],
    people: dict[str, str],
    business_input: BusinessInput,
    key: str,
) -> None:
    registered = business()
    # Sent as the header's raw bytes: the test client would refuse some of these itself.
    answer = api.client.open(
        f"/v1/businesses/{registered.business_id}/runs",
        method="POST",
        json=business_input.model_dump(mode="json", exclude={"business_id"}),
        environ_base={
            "HTTP_AUTHORIZATION": f"Bearer {api.token(people['member'])}",
            "HTTP_IDEMPOTENCY_KEY": key.encode().decode("latin-1"),
        },
    )
    body = answer.get_json()
    assert answer.status_code == 400, body
    assert body["error"]["field"] == "Idempotency-Key"
    assert runs_of(registered.business_id) == []


def test_a_refused_start_leaves_the_key_free_for_the_same_request(
    starter: Callable[..., Any], business: Callable[..., Business]
) -> None:
    """Only a started run is remembered: a start refused for the tier (402) is sent again
    with the same key once the business may run it, and starts its run."""
    basic = business(tier="basic")
    refused = starter(basic.business_id, "retry-me", icp_count=5)
    assert refused.status_code == 402, refused.json
    assert runs_of(basic.business_id) == []
    save_business(basic.model_copy(update={"tier": "enterprise"}))
    accepted = starter(basic.business_id, "retry-me", icp_count=5)
    assert accepted.status_code == 201, accepted.json
    assert runs_of(basic.business_id) == [accepted.json["run_id"]]


def test_a_replay_spends_no_rate_limit(
    starter: Callable[..., Any], business: Callable[..., Business], monkeypatch: pytest.MonkeyPatch
) -> None:
    from common.platform.settings import get_settings

    monkeypatch.setenv("API_RUN_BURST", "1")
    get_settings.cache_clear()
    registered = business()
    answers = [starter(registered.business_id, "once").status_code for _ in range(6)]
    assert answers == [201, 200, 200, 200, 200, 200]
    assert starter(registered.business_id, "another").status_code == 429


def claim_ref(uid: str, key: str) -> firestore.DocumentReference:
    return idempotency._ref(uid, key)


def test_a_key_older_than_24_hours_starts_a_new_run(
    starter: Callable[..., Any], business: Callable[..., Business], people: dict[str, str]
) -> None:
    registered = business()
    first = starter(registered.business_id, "daily").json["run_id"]
    # A day passes: Firestore's TTL policy may not have deleted the key yet.
    ref = claim_ref(people["member"], "daily")
    stored = ref.get().to_dict() or {}
    ref.update({"expires_at": stored["expires_at"] - dt.timedelta(hours=24, seconds=1)})
    second = starter(registered.business_id, "daily", icp_count=4)
    assert second.status_code == 201, second.json
    assert second.json["run_id"] != first
    assert sorted([first, second.json["run_id"]]) == runs_of(registered.business_id)


@pytest.mark.parametrize("got_as_far_as_the_run", [True, False])
def test_a_claim_left_by_a_request_that_died_is_taken_over(
    starter: Callable[..., Any],
    business: Callable[..., Business],
    people: dict[str, str],
    business_input: BusinessInput,
    got_as_far_as_the_run: bool,
) -> None:
    """An instance dies while starting a keyed run: the next request with the key answers the
    run if it exists, else starts it, under the id the dead request had claimed."""
    registered = business()
    body = business_input.model_dump(mode="json", exclude={"business_id"})
    request = idempotency.fingerprint(registered.business_id, RunRequest.model_validate(body))
    run_id = uuid.uuid4().hex
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    claim_ref(people["member"], "orphan").create(
        {
            "uid": people["member"],
            "key": "orphan",
            "business_id": registered.business_id,
            "fingerprint": request,
            "run_id": run_id,
            "state": "pending",
            "created_at": long_ago,
            "pending_until": long_ago + idempotency.LEASE,
            "expires_at": long_ago + idempotency.LIFETIME,
        }
    )
    if got_as_far_as_the_run:
        given = business_input.model_copy(update={"business_id": registered.business_id})
        documents.run_ref(run_id).create(documents.new_run_document(run_id, given, "enterprise"))
    answer = starter(registered.business_id, "orphan")
    assert answer.status_code == (200 if got_as_far_as_the_run else 201), answer.json
    assert answer.json["run_id"] == run_id
    assert runs_of(registered.business_id) == [run_id]
