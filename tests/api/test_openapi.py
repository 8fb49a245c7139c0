"""GET /v1/openapi.json: a valid OpenAPI 3.1 document of exactly the routes served."""

from __future__ import annotations

import json

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from common.backend.app import ROUTES
from common.platform.settings import get_settings
from tests.api.conftest import Api

pytestmark = pytest.mark.emulator
METHODS = ("get", "post", "put", "patch", "delete")


def concrete(path: str) -> str:
    return path.replace("{business_id}", "some-business").replace("{run_id}", "some-run")


def test_the_document_is_valid_openapi_3_1(api: Api, project_id: str) -> None:
    response = api.call("GET", "/v1/openapi.json")
    assert response.status_code == 200
    spec = response.json
    assert spec["openapi"] == "3.1.0"
    validate(spec, cls=OpenAPIV31SpecValidator)  # raises on the first violation


def test_the_server_is_configured_never_taken_from_the_host_header(
    api: Api, project_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 22, finding 4: `servers` reflected the request's Host header, so a forged Host
    made the document send clients (and their tokens) elsewhere."""
    forged = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}
    spec = api.call("GET", "/v1/openapi.json", headers=forged).json
    # Unconfigured: no server, so clients resolve paths against the document's own URL.
    assert "servers" not in spec and "evil.example" not in json.dumps(spec)

    monkeypatch.setenv("API_PUBLIC_URL", "https://api.raptorflow.example/")
    get_settings.cache_clear()
    spec = api.call("GET", "/v1/openapi.json", headers=forged).json
    assert spec["servers"] == [{"url": "https://api.raptorflow.example/"}]
    validate(spec, cls=OpenAPIV31SpecValidator)


def test_every_documented_operation_is_served_and_nothing_else(api: Api, project_id: str) -> None:
    spec = api.call("GET", "/v1/openapi.json").json
    documented = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    assert documented == {(route.method, route.path) for route in ROUTES}
    for path, item in spec["paths"].items():
        for method in METHODS:
            response = api.call(method.upper(), concrete(path), json_body={})
            if method in item:
                # Served: anonymous callers are refused at the door, the document is public.
                expected = 401 if item[method]["security"] else 200
                assert response.status_code == expected, (method, path)
            else:
                assert response.status_code == 405, (method, path)
                allowed = {m.strip().lower() for m in response.headers["Allow"].split(",")}
                assert allowed == set(item) | {"options"}


def test_each_operation_documents_its_errors_in_the_common_shape(api: Api, project_id: str) -> None:
    spec = api.call("GET", "/v1/openapi.json").json
    error_ref = {"$ref": "#/components/schemas/Error"}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            if operation["security"]:
                assert {"401", "403"} <= set(responses), (method, path)
            for status, answer in responses.items():
                if status.startswith(("4", "5")):
                    assert answer["content"]["application/json"]["schema"] == error_ref
    start = spec["paths"]["/v1/businesses/{business_id}/runs"]["post"]
    body = start["requestBody"]["content"]["application/json"]["schema"]
    run_request = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert "business_id" not in run_request["properties"]
    assert {"name", "industry", "description", "goals", "target_market"} <= set(
        run_request["required"]
    )
    usage = spec["paths"]["/v1/businesses/{business_id}/usage"]["get"]
    assert set(usage["responses"]["200"]["content"]) == {"application/json", "text/csv"}
