"""A business's usage over a range of days, grouped by model, tier, task or day, as JSON or CSV.

Read from the usage records (`usage/{attempt}`, one per physical model call, written by the
budget ledger when the call's cost was settled). Costs are summed in integer nano-dollars, so
the CSV's rows add up to exactly the JSON's totals.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from collections.abc import Iterator
from typing import Any, Literal

from google.cloud.firestore_v1.base_query import FieldFilter
from pydantic import BaseModel

from common.budget.usage import CHARGED, USAGE
from common.platform.errors import InvalidInput
from common.platform.store import db

GroupBy = Literal["model", "tier", "task", "day"]
GROUP_FIELDS: dict[GroupBy, str] = {
    "model": "model",
    "tier": "tier",
    "task": "task_type",
    "day": "day",
}
MAX_DAYS = 366
CSV_COLUMNS = ("group", "calls", "input_tokens", "output_tokens", "cost_nanos", "cost_usd")


class UsageGroup(BaseModel):
    group: str
    calls: int
    input_tokens: int
    output_tokens: int
    cost_nanos: int
    cost_usd: float


class UsageReport(BaseModel):
    business_id: str
    from_day: str
    to_day: str
    group_by: GroupBy
    groups: list[UsageGroup]
    total: UsageGroup


def _day(value: str | None, default: dt.date, field: str) -> dt.date:
    if value is None or value == "":
        return default
    try:
        return dt.date.fromisoformat(value)
    except ValueError as error:
        raise InvalidInput(
            f"{field} must be a date YYYY-MM-DD, not {value[:40]!r}",
            code="invalid_field",
            field=field,
        ) from error


def parse_range(
    start: str | None, end: str | None, group_by: str | None, today: dt.date
) -> tuple[dt.date, dt.date, GroupBy]:
    """The query's range (default: this month so far) and grouping (default: model).

    Raises:
        InvalidInput: a bad date, `from` after `to`, a range over 366 days, or an unknown group.
    """
    first = _day(start, today.replace(day=1), "from")
    last = _day(end, today, "to")
    if first > last:
        raise InvalidInput("from must not be after to", code="invalid_field", field="from")
    if (last - first).days >= MAX_DAYS:
        raise InvalidInput(
            f"at most {MAX_DAYS} days per report", code="invalid_field", field="from"
        )
    grouping = group_by or "model"
    if grouping not in GROUP_FIELDS:
        raise InvalidInput(
            f"group_by must be one of {', '.join(GROUP_FIELDS)}",
            code="invalid_field",
            field="group_by",
        )
    return first, last, grouping


def _group(name: str, calls: int, tokens_in: int, tokens_out: int, nanos: int) -> UsageGroup:
    return UsageGroup(
        group=name,
        calls=calls,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cost_nanos=nanos,
        cost_usd=nanos / 1e9,
    )


def _records(business_id: str, first: dt.date, last: dt.date) -> Iterator[dict[str, Any]]:
    query = (
        db()
        .collection(USAGE)
        .where(filter=FieldFilter("business_id", "==", business_id))
        .where(filter=FieldFilter("day", ">=", first.isoformat()))
        .where(filter=FieldFilter("day", "<=", last.isoformat()))
    )
    for snapshot in query.stream():
        record = snapshot.to_dict() or {}
        if record.get("state") in CHARGED:  # holds in flight and void ones are not spending
            yield record


def daily_cost_by_model(
    business_id: str, first: dt.date, last: dt.date
) -> dict[str, dict[str, int]]:
    """Nano-dollars per day (every day of the range, also those with none) and model."""
    span = range((last - first).days + 1)
    days: dict[str, dict[str, int]] = {(first + dt.timedelta(days=n)).isoformat(): {} for n in span}
    for record in _records(business_id, first, last):
        models: dict[str, int] = days.setdefault(record["day"], {})
        models[record["model"]] = models.get(record["model"], 0) + int(record["charged_nanos"])
    return days


def usage_report(business_id: str, first: dt.date, last: dt.date, group_by: GroupBy) -> UsageReport:
    """Every usage record of the business on days `first`..`last` (UTC), grouped."""
    field = GROUP_FIELDS[group_by]
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for record in _records(business_id, first, last):
        row = sums[str(record.get(field) or "-")]
        row[0] += 1
        row[1] += int(record.get("input_tokens", 0))
        row[2] += int(record.get("output_tokens", 0))
        row[3] += int(record.get("charged_nanos", 0))
    groups = [_group(name, *sums[name]) for name in sorted(sums)]
    total = _group("total", *(sum(group[i] for group in sums.values()) for i in range(4)))
    return UsageReport(
        business_id=business_id,
        from_day=first.isoformat(),
        to_day=last.isoformat(),
        group_by=group_by,
        groups=groups,
        total=total,
    )


def to_csv(report: UsageReport) -> str:
    """One row per group (no total row, so that a spreadsheet's SUM is the total);
    `cost_usd` is exact: nano-dollars with nine decimals."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for group in report.groups:
        writer.writerow(
            [
                group.group,
                group.calls,
                group.input_tokens,
                group.output_tokens,
                group.cost_nanos,
                f"{group.cost_nanos // 10**9}.{group.cost_nanos % 10**9:09d}",
            ]
        )
    return out.getvalue()
