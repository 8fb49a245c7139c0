"""The API's HTTP surface: unknown paths, wrong methods, malformed bodies, CORS."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from common.tenants.businesses import Business
from tests.api.conftest import Api

pytestmark = pytest.mark.emulator


def test_an_unknown_path_is_a_json_404(api: Api, project_id: str) -> None:
    for path in ("/", "/v2/runs/x", "/v1/runs/x/nope", "/v1/runs/../../etc"):
        response = api.call("GET", path)
        assert response.status_code == 404, path
        assert response.json["error"]["code"] == "unknown_path"


def test_a_wrong_method_is_405_with_allow(api: Api, project_id: str) -> None:
    response = api.call("PUT", "/v1/runs/abc", json_body={})
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, OPTIONS"
    assert response.json["error"]["code"] == "method_not_allowed"
    members = api.call("PATCH", "/v1/businesses/b1/members")
    assert members.headers["Allow"] == "DELETE, GET, OPTIONS, POST"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b"", "body"),
        (b"[1, 2]", "body"),
        (b"[" * 20_000 + b"]" * 20_000, "body"),
        (b'{"name": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", "body"),
        (b'{"name": ' + b"[" * 500 + b"]" * 500 + b"}", "name"),
        (b'{"name": "Tidewater"}', "industry"),
        (b'{"business_id": "someone-else"}', "business_id"),
    ],
    ids=[
        "broken",
        "empty",
        "array",
        "deep-array",
        "deep-field",
        "nested-field",
        "missing-field",
        "id-in-body",
    ],
)
def test_a_malformed_body_is_400_naming_the_field(
    api: Api,
    project_id: str,
    business: Callable[..., Business],
    people: dict[str, str],
    body: bytes,
    field: str,
) -> None:
    registered = business()
    response = api.call(
        "POST",
        f"/v1/businesses/{registered.business_id}/runs",
        people["member"],
        data=body,
        content_type="application/json",
    )
    assert response.status_code == 400, response.json
    assert response.json["error"]["field"] == field


def test_a_huge_body_is_413(
    api: Api, project_id: str, business: Callable[..., Business], people: dict[str, str]
) -> None:
    registered = business()
    response = api.call(
        "POST",
        f"/v1/businesses/{registered.business_id}/runs",
        people["member"],
        json_body={"description": "x" * 100_000},
    )
    assert response.status_code == 413
    assert response.json["error"]["code"] == "body_too_large"


def test_browsers_may_call_it_cross_origin(api: Api, project_id: str) -> None:
    preflight = api.call(
        "OPTIONS",
        "/v1/businesses/b1/runs",
        headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    answer = api.call("GET", "/v1/me", headers={"Origin": "http://localhost:5173"})
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
