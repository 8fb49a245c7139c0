"""GET /v1/businesses/{id}/runs: a member's run history, newest first, a page at a time,
filtered by status and by UTC day (the contract the web app's history list is built on)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from common.models import BusinessInput
from common.platform.store import db
from common.runs import documents
from common.tenants.businesses import Business
from tests.api.conftest import Api

pytestmark = pytest.mark.emulator

ITEM_FIELDS = [
    "run_id",
    "business_id",
    "name",
    "status",
    "percent",
    "phase",
    "step",
    "created_at",
    "finished_at",
    "duration_seconds",
    "cost_usd",
    "stop_reason",
    "error",
    "models_used",
]
T0 = dt.datetime(2026, 11, 30, 22, 0, tzinfo=dt.UTC)


@pytest.fixture
def seed(business_input: BusinessInput) -> Callable[..., str]:
    """`seed(business, created_at, status="succeeded", **fields)`: a run document as the
    lifecycle leaves it, created at `created_at`."""

    def _seed(
        business: Business, created_at: dt.datetime, status: str = "succeeded", **fields: Any
    ) -> str:
        run_id = uuid.uuid4().hex
        given = business_input.model_copy(update={"business_id": business.business_id})
        document = documents.new_run_document(run_id, given, business.tier)
        finished = created_at + dt.timedelta(seconds=90) if status != "running" else None
        document |= {
            "status": status,
            "created_at": created_at,
            "updated_at": created_at,
            "finished_at": finished,
            "duration_seconds": 90.0 if finished else None,
            "percent": 100 if status == "succeeded" else 40,
            "phase": None if finished else "icps",
            "cost_nanos": 41_000_000,
            "models_used": ["gpt-4.1-mini"],
            **fields,
        }
        documents.run_ref(run_id).create(document)
        return run_id

    return _seed


def history(api: Api, business_id: str, uid: str, **params: Any) -> Any:
    query = "&".join(f"{name}={value}" for name, value in params.items())
    return api.call("GET", f"/v1/businesses/{business_id}/runs?{query}", uid)


def every_page(api: Api, business_id: str, uid: str, **params: Any) -> list[list[str]]:
    """The run ids of each page, following next_cursor to the end."""
    pages = []
    cursor = None
    while True:
        extra: dict[str, str] = {"cursor": cursor} if cursor else {}
        answer = history(api, business_id, uid, **params, **extra)
        assert answer.status_code == 200, answer.json
        pages.append([item["run_id"] for item in answer.json["runs"]])
        cursor = answer.json["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "the cursor does not advance"


def test_pages_cover_every_run_once_newest_first(
    api: Api,
    project_id: str,
    business: Callable[..., Business],
    people: dict[str, str],
    seed: Callable[..., str],
) -> None:
    mine = business()
    created = {
        seed(mine, T0 + dt.timedelta(minutes=7 * i)): T0 + dt.timedelta(minutes=7 * i)
        for i in range(21)
    }
    # Three runs created in the same microsecond: the run id orders them, none is lost.
    tie = T0 + dt.timedelta(hours=9)
    created |= {seed(mine, tie): tie for _ in range(3)}
    seed(business(), T0)  # another business's run never shows
    newest_first = sorted(created, key=lambda run_id: (created[run_id], run_id), reverse=True)

    pages = every_page(api, mine.business_id, people["member"], limit=5)
    assert [len(page) for page in pages] == [5, 5, 5, 5, 4]
    assert [run_id for page in pages for run_id in page] == newest_first
    # The default page is 20 runs.
    assert [len(page) for page in every_page(api, mine.business_id, people["owner"])] == [20, 4]


def test_each_item_is_what_the_contract_says(
    api: Api,
    project_id: str,
    business: Callable[..., Business],
    people: dict[str, str],
    seed: Callable[..., str],
    business_input: BusinessInput,
) -> None:
    mine = business()
    done = seed(
        mine, T0, "budget_exceeded", stop_reason="daily_budget_exceeded", error="over budget"
    )
    live = seed(mine, T0 + dt.timedelta(minutes=1), "running")
    answer = history(api, mine.business_id, people["member"])
    assert answer.status_code == 200
    assert list(answer.json) == ["runs", "next_cursor"] and answer.json["next_cursor"] is None
    running, ended = answer.json["runs"]
    for item in (running, ended):
        assert list(item) == ITEM_FIELDS
        assert item["business_id"] == mine.business_id
        assert item["name"] == business_input.name
        assert item["cost_usd"] == 0.041 and item["models_used"] == ["gpt-4.1-mini"]
        # RFC 3339, in UTC.
        assert dt.datetime.fromisoformat(item["created_at"]).utcoffset() == dt.timedelta(0)
    assert running["run_id"] == live and running["status"] == "running"
    assert running["finished_at"] is None and running["duration_seconds"] is None
    assert running["phase"] == "icps" and running["percent"] == 40
    assert ended["run_id"] == done and ended["status"] == "budget_exceeded"
    assert dt.datetime.fromisoformat(ended["created_at"]) == T0
    assert dt.datetime.fromisoformat(ended["finished_at"]) == T0 + dt.timedelta(seconds=90)
    assert ended["duration_seconds"] == 90.0
    assert ended["stop_reason"] == "daily_budget_exceeded" and ended["error"] == "over budget"


def test_filters_by_status_and_by_utc_day_inclusive(
    api: Api,
    project_id: str,
    business: Callable[..., Business],
    people: dict[str, str],
    seed: Callable[..., str],
) -> None:
    mine = business()
    day = dt.timedelta(days=1)
    midnight = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    runs = {
        "nov30-late": seed(mine, midnight - dt.timedelta(microseconds=1), "failed"),
        "dec1-first": seed(mine, midnight, "succeeded"),
        "dec1-failed": seed(mine, midnight + dt.timedelta(hours=12), "failed"),
        "dec2-last": seed(mine, midnight + 2 * day - dt.timedelta(microseconds=1), "failed"),
        "dec3": seed(mine, midnight + 2 * day, "cancelled"),
    }
    member = people["member"]

    def listed(**params: Any) -> list[str]:
        return [run for page in every_page(api, mine.business_id, member, **params) for run in page]

    assert listed(status="failed") == [runs["dec2-last"], runs["dec1-failed"], runs["nov30-late"]]
    assert listed(**{"from": "2026-12-01", "to": "2026-12-02"}) == [
        runs["dec2-last"],
        runs["dec1-failed"],
        runs["dec1-first"],
    ]
    assert listed(**{"from": "2026-12-02"}) == [runs["dec3"], runs["dec2-last"]]
    assert listed(to="2026-11-30") == [runs["nov30-late"]]
    assert listed(status="failed", limit=1, **{"from": "2026-12-01"}) == [
        runs["dec2-last"],
        runs["dec1-failed"],
    ]
    assert listed(status="queued") == []


def test_only_members_see_the_history(
    api: Api,
    project_id: str,
    business: Callable[..., Business],
    people: dict[str, str],
    seed: Callable[..., str],
) -> None:
    mine = business()
    seed(mine, T0)
    path = f"/v1/businesses/{mine.business_id}/runs"
    outsider = api.call("GET", path, people["outsider"])
    assert outsider.status_code == 403 and outsider.json["error"]["code"] == "not_a_member"
    nowhere = api.call("GET", "/v1/businesses/no-such-business/runs", people["member"])
    assert nowhere.status_code == 403 and nowhere.json == {
        "error": {**outsider.json["error"], "message": nowhere.json["error"]["message"]}
    }
    assert api.call("GET", path).status_code == 401
    # A cursor of my list is no key to theirs.
    theirs = business(members=[people["outsider"]], owners=[people["outsider"]])
    for i in range(3):
        seed(theirs, T0 + dt.timedelta(minutes=i))
    cursor = history(api, theirs.business_id, people["outsider"], limit=1).json["next_cursor"]
    stolen = history(api, mine.business_id, people["member"], cursor=cursor)
    assert stolen.status_code == 400 and stolen.json["error"]["field"] == "cursor"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=exploded", "status"),
        ("status=FAILED", "status"),
        ("status=failed&status=running", "status"),
        ("from=2026-13-01", "from"),
        ("from=20261201", "from"),
        ("from=2026-12-01T00:00:00Z", "from"),
        ("to=yesterday", "to"),
        ("to=", "to"),
        ("from=2026-12-02&to=2026-12-01", "from"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=-1", "limit"),
        ("limit=1.5", "limit"),
        ("limit=ten", "limit"),
        ("limit=99999999999999999999", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=" + "A" * 5000, "cursor"),
        ("cursor=eyJ0IjogMX0", "cursor"),  # {"t": 1}: ours in shape, not in content
        ("cursor=%E2%9C%93", "cursor"),
    ],
)
def test_a_bad_parameter_is_400_naming_it(
    api: Api,
    project_id: str,
    business: Callable[..., Business],
    people: dict[str, str],
    query: str,
    field: str,
) -> None:
    mine = business()
    answer = api.call("GET", f"/v1/businesses/{mine.business_id}/runs?{query}", people["member"])
    assert answer.status_code == 400, answer.json
    assert answer.json["error"]["field"] == field
    assert answer.json["error"]["code"] == "invalid_field"


def test_a_cursor_used_with_other_filters_is_refused(
    api: Api,
    project_id: str,
    business: Callable[..., Business],
    people: dict[str, str],
    seed: Callable[..., str],
) -> None:
    mine = business()
    for i in range(3):
        seed(mine, T0 + dt.timedelta(minutes=i), "failed")
    cursor = history(api, mine.business_id, people["member"], status="failed", limit=1).json[
        "next_cursor"
    ]
    assert cursor is not None
    other = history(api, mine.business_id, people["member"], status="succeeded", cursor=cursor)
    assert other.status_code == 400 and other.json["error"]["field"] == "cursor"
    # Another page length is the same list: allowed.
    longer = history(
        api, mine.business_id, people["member"], status="failed", limit=5, cursor=cursor
    )
    assert longer.status_code == 200 and len(longer.json["runs"]) == 2


def test_a_run_document_that_is_not_a_run_is_left_out_not_a_500(
    api: Api,
    project_id: str,
    business: Callable[..., Business],
    people: dict[str, str],
    seed: Callable[..., str],
) -> None:
    mine = business()
    good = seed(mine, T0)
    db().collection(documents.RUNS).document("broken").set(
        {"business_id": mine.business_id, "created_at": T0 + dt.timedelta(minutes=1), "status": 7}
    )
    answer = history(api, mine.business_id, people["member"])
    assert answer.status_code == 200
    assert [item["run_id"] for item in answer.json["runs"]] == [good]
