"""A business's runs, newest first, a page at a time: the run history clients list.

One Firestore query per page: `business_id ==`, optionally `status ==`, a range of
`created_at`, ordered by `created_at` then the run id, both descending (the id breaks ties, so
that no run is skipped or repeated between pages). It needs the composite indexes
(business_id, created_at desc) and (business_id, status, created_at desc) of
terraform/firestore.tf.

The cursor is opaque to clients: the position after the page's last run, and a digest of the
filters it was made for, so that a cursor used with other filters is refused rather than
silently giving a page of another list.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from pydantic import BaseModel, ValidationError

from common.money import usd
from common.platform import log
from common.platform.errors import InvalidInput
from common.platform.store import db
from common.runs.documents import RUNS, RunStatus

STATUSES: tuple[str, ...] = get_args(RunStatus)
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
PARAMETERS = ("status", "from", "to", "limit", "cursor")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LIMIT = re.compile(r"^\d{1,4}$")
_CURSOR_CHARS = 400
logger = logging.getLogger(__name__)


class RunSummaryItem(BaseModel):
    """One run in a history list: enough to show it in a row and decide to open it."""

    run_id: str
    business_id: str
    name: str  # the business input's name
    status: RunStatus
    percent: int
    phase: str | None
    step: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None
    duration_seconds: float | None
    cost_usd: float
    stop_reason: str | None
    error: str | None
    models_used: list[str]


class RunPage(BaseModel):
    """A page of runs, newest first; `next_cursor` fetches the next page (null on the last)."""

    runs: list[RunSummaryItem]
    next_cursor: str | None


@dataclass(frozen=True)
class HistoryQuery:
    """Which runs, how many, and where the page starts (after `after`, a (created_at, run id))."""

    business_id: str
    status: str | None = None
    first: dt.date | None = None
    last: dt.date | None = None
    limit: int = DEFAULT_LIMIT
    after: tuple[dt.datetime, str] | None = None

    @property
    def filters(self) -> str:
        """A digest of what the list is (not where a page starts, nor its length)."""
        text = f"{self.business_id}|{self.status}|{self.first}|{self.last}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _one(args: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = args.get(name) or []
    if len(values) > 1:
        raise InvalidInput(f"give {name} once", code="invalid_field", field=name)
    return values[0] if values else None


def _date(value: str | None, name: str) -> dt.date | None:
    if value is None:
        return None
    try:
        if not _DATE.match(value):
            raise ValueError(value)
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{name} must be a UTC date YYYY-MM-DD, not {value[:40]!r}",
            code="invalid_field",
            field=name,
        ) from None


def parse(business_id: str, args: Mapping[str, Sequence[str]]) -> HistoryQuery:
    """The query a request's parameters ask for (`status`, `from`, `to`, `limit`, `cursor`;
    others are ignored, as elsewhere in the API).

    Raises:
        InvalidInput: naming the parameter that is malformed, out of range or given twice;
            `from` after `to`; a cursor that is not one of ours or was made for other filters.
    """
    status = _one(args, "status")
    if status is not None and status not in STATUSES:
        raise InvalidInput(
            f"status must be one of {', '.join(STATUSES)}, not {status[:40]!r}",
            code="invalid_field",
            field="status",
        )
    first, last = _date(_one(args, "from"), "from"), _date(_one(args, "to"), "to")
    if first and last and first > last:
        raise InvalidInput("from must not be after to", code="invalid_field", field="from")
    raw_limit = _one(args, "limit")
    limit = DEFAULT_LIMIT
    if raw_limit is not None:
        if not _LIMIT.match(raw_limit) or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise InvalidInput(
                f"limit must be a whole number from 1 to {MAX_LIMIT}, not {raw_limit[:40]!r}",
                code="invalid_field",
                field="limit",
            )
        limit = int(raw_limit)
    query = HistoryQuery(business_id, status, first, last, limit)
    cursor = _one(args, "cursor")
    if cursor is None:
        return query
    return HistoryQuery(business_id, status, first, last, limit, _position(cursor, query))


def _cursor(query: HistoryQuery, created_at: dt.datetime, run_id: str) -> str:
    position = {"t": created_at.isoformat(), "id": run_id, "f": query.filters}
    text = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


def _position(cursor: str, query: HistoryQuery) -> tuple[dt.datetime, str]:
    bad = InvalidInput(
        "cursor is not one this API gave (pass next_cursor back unchanged)",
        code="invalid_field",
        field="cursor",
    )
    if len(cursor) > _CURSOR_CHARS or not cursor.isascii():
        raise bad
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        created_at = dt.datetime.fromisoformat(position["t"])
        run_id = position["id"]
        filters = position["f"]
    except (ValueError, binascii.Error, KeyError, TypeError, RecursionError):
        raise bad from None
    if not isinstance(run_id, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", run_id):
        raise bad
    if created_at.tzinfo is None:
        raise bad
    if filters != query.filters:
        raise InvalidInput(
            "cursor belongs to a list with other filters (status, from, to): "
            "start again without it",
            code="invalid_field",
            field="cursor",
        )
    return created_at, run_id


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def page(query: HistoryQuery) -> RunPage:
    """The page of runs `query` asks for, newest first, and the cursor of the next one."""
    found = db().collection(RUNS).where(filter=FieldFilter("business_id", "==", query.business_id))
    if query.status is not None:
        found = found.where(filter=FieldFilter("status", "==", query.status))
    if query.first is not None:
        found = found.where(filter=FieldFilter("created_at", ">=", _midnight(query.first)))
    if query.last is not None:
        next_day = _midnight(query.last) + dt.timedelta(days=1)
        found = found.where(filter=FieldFilter("created_at", "<", next_day))
    found = found.order_by("created_at", direction=firestore.Query.DESCENDING).order_by(
        "__name__", direction=firestore.Query.DESCENDING
    )
    if query.after is not None:
        found = found.start_after(list(query.after))
    snapshots = list(found.limit(query.limit + 1).stream())
    more = len(snapshots) > query.limit
    snapshots = snapshots[: query.limit]
    runs = [item for item in map(_summary, snapshots) if item is not None]
    next_cursor = None
    if more and snapshots:
        last = snapshots[-1]
        next_cursor = _cursor(query, (last.to_dict() or {})["created_at"], last.id)
    return RunPage(runs=runs, next_cursor=next_cursor)


def _summary(snapshot: Any) -> RunSummaryItem | None:
    data = snapshot.to_dict() or {}
    given = data.get("input")
    try:
        return RunSummaryItem.model_validate(
            {
                **{field: data.get(field) for field in RunSummaryItem.model_fields},
                "run_id": snapshot.id,
                "name": given.get("name", "") if isinstance(given, dict) else "",
                "percent": data.get("percent", 0),
                "cost_usd": usd(int(data.get("cost_nanos") or 0)),
                "models_used": data.get("models_used") or [],
            }
        )
    except (ValidationError, TypeError, ValueError):
        # A document this code did not write; listing the others beats failing the page.
        logger.warning(
            "a run document does not hold a run",
            extra=log.fields(event="run_unreadable", run_id=snapshot.id),
        )
        return None
