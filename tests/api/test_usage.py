"""GET /v1/businesses/{id}/usage: the usage records grouped, as JSON or CSV, summing alike."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from google.cloud import firestore

from common.tenants.businesses import Business
from tests.api.conftest import Api

pytestmark = pytest.mark.emulator


def record(business_id: str, day: str, model: str, task: str, nanos: int, **extra: Any) -> Any:
    """A usage record as `common.budget` writes it when it settles a model call."""
    return {
        "business_id": business_id,
        "tier": "pro",
        "model": model,
        "provider": "openai",
        "task_type": task,
        "input_tokens": 1000,
        "output_tokens": 200,
        "cost_nanos": nanos,
        "charged_nanos": nanos,
        "state": "settled",
        "ok": True,
        "day": day,
        "month": day[:7],
        "run_id": "r1",
        "phase": "research",
        **extra,
    }


@pytest.fixture
def seeded(db: firestore.Client, business: Callable[..., Business]) -> Business:
    registered = business(tier="pro")
    bid = registered.business_id
    rows = [
        record(bid, "2026-11-03", "gpt-5-nano", "research", 333_333_333),
        record(bid, "2026-11-03", "gpt-5-mini", "positioning", 1_000_000_001),
        record(bid, "2026-11-04", "gpt-5-mini", "icps", 7, tier="enterprise"),
        record(bid, "2026-11-30", "gemini-2.5-flash", "content", 123_456_789),
        record(bid, "2026-12-01", "gpt-5-nano", "research", 5_000_000_000),  # outside the range
        record("someone-else", "2026-11-03", "gpt-5-nano", "research", 999),  # another business
    ]
    for row in rows:
        db.collection("usage").document(uuid.uuid4().hex).set(row)
    return registered


URL = "/v1/businesses/{}/usage?from=2026-11-01&to=2026-11-30&group_by={}"


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        (
            "model",
            {
                "gpt-5-nano": 333_333_333,
                "gpt-5-mini": 1_000_000_008,
                "gemini-2.5-flash": 123_456_789,
            },
        ),
        (
            "task",
            {
                "research": 333_333_333,
                "positioning": 1_000_000_001,
                "icps": 7,
                "content": 123_456_789,
            },
        ),
        ("tier", {"pro": 1_456_790_123, "enterprise": 7}),
        ("day", {"2026-11-03": 1_333_333_334, "2026-11-04": 7, "2026-11-30": 123_456_789}),
    ],
)
def test_usage_groups_the_business_records_in_the_range(
    api: Api, seeded: Business, people: dict[str, str], group_by: str, expected: dict[str, int]
) -> None:
    response = api.call("GET", URL.format(seeded.business_id, group_by), people["member"])
    assert response.status_code == 200
    report = response.json
    assert {g["group"]: g["cost_nanos"] for g in report["groups"]} == expected
    assert report["total"]["cost_nanos"] == 1_456_790_130
    assert report["total"]["calls"] == 4
    assert report["from_day"] == "2026-11-01" and report["to_day"] == "2026-11-30"


@pytest.mark.parametrize("group_by", ["model", "tier", "task", "day"])
def test_the_csv_sums_to_the_json(
    api: Api, seeded: Business, people: dict[str, str], group_by: str
) -> None:
    url = URL.format(seeded.business_id, group_by)
    as_json = api.call("GET", url, people["member"]).json
    answer = api.call("GET", url, people["member"], headers={"Accept": "text/csv"})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in answer.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    assert [row["group"] for row in rows] == [g["group"] for g in as_json["groups"]]
    for column in ("calls", "input_tokens", "output_tokens", "cost_nanos"):
        assert sum(int(row[column]) for row in rows) == as_json["total"][column]
    # cost_usd is exact in the CSV: its decimal sum is the total to the nano-dollar.
    total_usd = sum(int(row["cost_usd"].replace(".", "")) for row in rows)
    assert total_usd == as_json["total"]["cost_nanos"]


def test_usage_defaults_to_this_month_by_model(
    api: Api, seeded: Business, people: dict[str, str]
) -> None:
    report = api.call("GET", f"/v1/businesses/{seeded.business_id}/usage", people["member"]).json
    today = dt.datetime.now(dt.UTC).date()
    assert report["group_by"] == "model"
    assert report["from_day"] == today.replace(day=1).isoformat()
    assert report["to_day"] == today.isoformat()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=yesterday", "from"),
        ("to=2026-13-01", "to"),
        ("from=2026-11-05&to=2026-11-01", "from"),
        ("from=2024-01-01&to=2026-01-01", "from"),
        ("group_by=colour", "group_by"),
    ],
)
def test_bad_usage_queries_are_400_naming_the_parameter(
    api: Api, seeded: Business, people: dict[str, str], query: str, field: str
) -> None:
    url = f"/v1/businesses/{seeded.business_id}/usage?{query}"
    response = api.call("GET", url, people["member"])
    assert response.status_code == 400
    assert response.json["error"]["field"] == field
