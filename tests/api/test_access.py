"""Authorisation: members use their business, owners manage its members, others get 403."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from common.models import BusinessInput
from common.runs import documents
from common.tenants.businesses import Business, get_business
from tests.api.conftest import Api

pytestmark = pytest.mark.emulator


def business_paths(business_id: str) -> list[tuple[str, str]]:
    """Every route that names a business, on `business_id`."""
    return [
        ("POST", f"/v1/businesses/{business_id}/runs"),
        ("GET", f"/v1/businesses/{business_id}/runs"),
        ("GET", f"/v1/businesses/{business_id}/budget"),
        ("GET", f"/v1/businesses/{business_id}/usage"),
        ("GET", f"/v1/businesses/{business_id}/members"),
        ("POST", f"/v1/businesses/{business_id}/members"),
        ("DELETE", f"/v1/businesses/{business_id}/members?uid=x"),
    ]


def run_paths(run_id: str) -> list[tuple[str, str]]:
    """Every route that names a run, on `run_id`."""
    return [
        ("GET", f"/v1/runs/{run_id}"),
        ("GET", f"/v1/runs/{run_id}/results"),
        ("POST", f"/v1/runs/{run_id}:cancel"),
    ]


@pytest.fixture
def run_of(business_input: BusinessInput) -> Callable[[Business], str]:
    """A queued run document of a business (as `start_run` leaves it)."""

    def _run_of(business: Business) -> str:
        run_id = uuid.uuid4().hex
        given = business_input.model_copy(update={"business_id": business.business_id})
        documents.run_ref(run_id).create(documents.new_run_document(run_id, given, business.tier))
        return run_id

    return _run_of


def test_a_non_member_is_refused_everywhere_and_changes_nothing(
    api: Api,
    project_id: str,
    business: Callable[..., Business],
    people: dict[str, str],
    run_of: Callable[[Business], str],
    business_input: BusinessInput,
) -> None:
    registered = business()
    run_id = run_of(registered)
    body = business_input.model_dump(exclude={"business_id"})
    for method, path in business_paths(registered.business_id):
        response = api.call(method, path, people["outsider"], json_body=body)
        assert response.status_code == 403, (method, path, response.json)
        assert response.json["error"]["code"] == "not_a_member"
    for method, path in run_paths(run_id):
        response = api.call(method, path, people["outsider"], json_body=body)
        assert response.status_code == 404, (method, path, response.json)
        assert response.json["error"]["code"] == "run_not_found"
    assert documents.get_run(run_id).cancel_requested is False
    assert get_business(registered.business_id).members == registered.members


def test_someone_elses_run_looks_exactly_like_no_run(
    api: Api,
    project_id: str,
    business: Callable[..., Business],
    people: dict[str, str],
    run_of: Callable[[Business], str],
) -> None:
    """Issue 22, finding 4: an unknown run answered 404 and another tenant's 403, so anyone
    signed in could tell which run ids exist."""
    theirs = run_of(business())
    missing = uuid.uuid4().hex
    for (method, path), (_, other) in zip(run_paths(theirs), run_paths(missing), strict=True):
        seen = api.call(method, path, people["outsider"])
        unseen = api.call(method, other, people["outsider"])
        assert seen.status_code == unseen.status_code == 404, (method, path)
        assert seen.json == {
            "error": {**unseen.json["error"], "message": f"run {theirs} does not exist"}
        }


def test_an_unknown_business_looks_the_same_as_someone_elses(
    api: Api, project_id: str, people: dict[str, str]
) -> None:
    response = api.call("GET", "/v1/businesses/no-such-business/budget", people["member"])
    assert response.status_code == 403
    assert response.json["error"]["code"] == "not_a_member"


def test_a_member_reads_the_run_and_budget_of_their_business(
    api: Api,
    project_id: str,
    business: Callable[..., Business],
    people: dict[str, str],
    run_of: Callable[[Business], str],
) -> None:
    registered = business(tier="pro")
    run_id = run_of(registered)
    run = api.call("GET", f"/v1/runs/{run_id}", people["member"])
    assert run.status_code == 200
    assert run.json["business_id"] == registered.business_id and run.json["status"] == "queued"
    budget = api.call("GET", f"/v1/businesses/{registered.business_id}/budget", people["member"])
    assert budget.status_code == 200
    assert budget.json["tier"] == "pro" and budget.json["daily_limit"] == 50.0
    results = api.call("GET", f"/v1/runs/{run_id}/results", people["member"])
    assert results.json["completed"] == [] and results.json["research"] is None


def test_an_unknown_run_is_404(api: Api, project_id: str, people: dict[str, str]) -> None:
    response = api.call("GET", "/v1/runs/nope", people["member"])
    assert response.status_code == 404
    assert response.json["error"]["code"] == "run_not_found"


def test_member_management_is_for_owners_only(
    api: Api, project_id: str, business: Callable[..., Business], people: dict[str, str]
) -> None:
    registered = business()
    members = f"/v1/businesses/{registered.business_id}/members"
    newcomer = f"new-{uuid.uuid4().hex[:6]}"

    for method, extra in (("GET", ""), ("POST", ""), ("DELETE", f"?uid={people['owner']}")):
        response = api.call(method, members + extra, people["member"], json_body={"uid": newcomer})
        assert response.status_code == 403, method
        assert response.json["error"]["code"] == "not_an_owner"
    assert get_business(registered.business_id).members == registered.members

    listed = api.call("GET", members, people["owner"])
    assert listed.json == {
        "business_id": registered.business_id,
        "members": registered.members,
        "owners": [people["owner"]],
    }
    added = api.call("POST", members, people["owner"], json_body={"uid": newcomer})
    assert added.status_code == 200 and newcomer in added.json["members"]
    assert newcomer not in added.json["owners"]
    # The newcomer is now a member: they read the budget, but still manage nobody.
    budget = f"/v1/businesses/{registered.business_id}/budget"
    assert api.call("GET", budget, newcomer).status_code == 200
    assert api.call("GET", members, newcomer).status_code == 403

    promoted = api.call(
        "POST", members, people["owner"], json_body={"uid": newcomer, "owner": True}
    )
    assert set(promoted.json["owners"]) == {people["owner"], newcomer}
    assert api.call("GET", members, newcomer).status_code == 200

    removed = api.call("DELETE", f"{members}?uid={people['member']}", people["owner"])
    assert removed.status_code == 200 and people["member"] not in removed.json["members"]
    gone = api.call("GET", f"/v1/businesses/{registered.business_id}/budget", people["member"])
    assert gone.status_code == 403


def test_the_last_owner_cannot_leave_and_bad_changes_are_400(
    api: Api, project_id: str, business: Callable[..., Business], people: dict[str, str]
) -> None:
    registered = business()
    members = f"/v1/businesses/{registered.business_id}/members"
    owner = people["owner"]

    last = api.call("DELETE", f"{members}?uid={owner}", owner)
    assert last.status_code == 409 and last.json["error"]["code"] == "last_owner"
    demoted = api.call("POST", members, owner, json_body={"uid": owner, "owner": False})
    assert demoted.status_code == 409
    assert get_business(registered.business_id).owners == [owner]

    assert api.call("DELETE", f"{members}?uid=stranger", owner).status_code == 404
    missing = api.call("DELETE", members, owner)
    assert missing.status_code == 400 and missing.json["error"]["field"] == "uid"
    bad = api.call("POST", members, owner, json_body={"uid": "has spaces"})
    assert bad.status_code == 400 and bad.json["error"]["field"] == "uid"
    extra = api.call("POST", members, owner, json_body={"uid": "x", "role": "admin"})
    assert extra.status_code == 400 and extra.json["error"]["field"] == "role"
