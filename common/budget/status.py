"""What a business sees of its budget: `budget_status/{business_id}` (clients listen to it), the
status computed on demand, and the 75/90/100% warnings of its day and month, each recorded once
per period (`budget_alerts/{scope}:{level}`).

The published document is written by every commit a block's owner makes to the business's
periods (a take, a flush, a close: `view`), from the periods as that commit leaves them; those
commits are conditional on the periods they read, so nothing newer can be overwritten. A flush or
a close also records, in the same commit, each threshold it is the first to find reached (marked
on the period, so it is announced once). `publish` rewrites the document from a fresh read, on
the condition that nobody rewrote it since: after a new limit, and after a flush or close that
had to move its money blindly (it lost too many races to commit with the status).
"""

from __future__ import annotations

import calendar
import datetime as dt
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions
from google.cloud import firestore
from pydantic import BaseModel, Field

from common.budget.blocks import Doc, Left, View
from common.budget.clock import server_clock
from common.budget.controls import Controls
from common.budget.periods import WARNING_LEVELS, Period, day_key, scope_name, scope_ref
from common.budget.room import Room, read_room
from common.money import format_usd, usd
from common.platform import log
from common.platform.store import db
from common.tenants.businesses import Business

ALERTS = "budget_alerts"
STATUS = "budget_status"  # what clients may read: one document per business
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BudgetWarning:
    """A threshold crossed: `key` is unique per scope (business and period) and level."""

    key: str
    kind: str  # "day" | "month"
    level: int
    message: str


class LimitChange(BaseModel):
    """A limit of a period changed (a new tier, an override)."""

    period: str  # the scope, e.g. "business:acme:2026-11-25"
    version: int
    from_usd: float
    to_usd: float


class BudgetStatus(BaseModel):
    """A business's budget right now (the seed's `get_budget_status`), amounts in USD.

    `*_reserved` is what blocks of work in flight hold (their calls' upper bounds and headroom
    taken ahead); it comes back as they settle and close."""

    business_id: str
    tier: str
    daily_limit: float
    today_spent: float
    today_reserved: float
    today_remaining: float
    percent_used: float
    warning_level: int | None  # the highest threshold reached today or this month: 75, 90, 100
    month_spent: float
    month_reserved: float
    monthly_limit: float
    month_remaining: float
    projected_monthly: float
    platform_paused: bool = False
    paused_reason: str | None = None
    limit_changes: list[LimitChange] = Field(default_factory=list)


def warning_level(used: int, limit: int) -> int | None:
    percent = 100 * used / max(limit, 1)
    return next((level for level in reversed(WARNING_LEVELS) if percent >= level), None)


def projected_month(spent_usd: float, now: dt.datetime) -> float:
    """Month-to-date spend extrapolated to the whole month at the month-to-date daily rate
    (the first day counts as a whole day, so an early spike is not multiplied by 30 000)."""
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    elapsed_days = max((now - start).total_seconds() / 86400, 1.0)
    return spent_usd * calendar.monthrange(now.year, now.month)[1] / elapsed_days


def compute(
    business: Business, day: Period, month: Period, controls: Controls, now: dt.datetime
) -> BudgetStatus:
    """The status of `business` from its periods as read."""
    levels = [
        level
        for level in (warning_level(day.spent, day.limit), warning_level(month.spent, month.limit))
        if level is not None
    ]
    return BudgetStatus(
        business_id=business.business_id,
        tier=business.tier,
        daily_limit=usd(day.limit),
        today_spent=usd(day.spent),
        today_reserved=usd(day.allocated),
        today_remaining=usd(max(day.limit_room, 0)),
        percent_used=round(100 * (day.spent + day.allocated) / max(day.limit, 1), 2),
        warning_level=max(levels) if levels else None,
        month_spent=usd(month.spent),
        month_reserved=usd(month.allocated),
        monthly_limit=usd(month.limit),
        month_remaining=usd(max(month.limit_room, 0)),
        projected_monthly=round(projected_month(usd(month.spent), now), 6),
        platform_paused=controls.paused,
        paused_reason=controls.reason if controls.paused else None,
        limit_changes=[
            LimitChange(period=period.name, **change)
            for period in (day, month)
            for change in period.changes
        ],
    )


def _status_doc(
    business: Business, controls: Controls, day: Period, month: Period, now: dt.datetime
) -> Doc:
    status = compute(business, day, month, controls, now)
    return db().collection(STATUS).document(business.business_id), _document(status)


def _alert_doc(period: Period, level: int) -> Doc:
    ref = db().collection(ALERTS).document(f"{period.name}:{level}")
    return ref, {
        "business_id": period.business_id,
        "scope": period.name,
        "kind": period.kind,
        "level": level,
        "spent_nanos": period.spent,
        "limit_nanos": period.limit,
        "message": _message(period, level),
        "at": firestore.SERVER_TIMESTAMP,
    }


# What the owner's commits write of the periods for clients (see `blocks.View`).
view = View(status=_status_doc, alert=_alert_doc)


def _document(status: BudgetStatus) -> dict[str, Any]:
    """What `budget_status/{business_id}` holds for `status`."""
    return {**status.model_dump(mode="json"), "updated_at": firestore.SERVER_TIMESTAMP}


def read_status(
    business_id: str, *, now: dt.datetime | None = None
) -> tuple[BudgetStatus, Room, Any]:
    """The business's status from one read of its documents (with the published document, for
    a conditional rewrite)."""
    now = now or server_clock.now()
    ref = db().collection(STATUS).document(business_id)
    room, found = read_room(business_id, now, shards=False, also=[ref])
    status = compute(room.business, room.day, room.month, room.controls, now)
    return status, room, found[ref.path]


def get_budget_status(business_id: str, *, now: dt.datetime | None = None) -> BudgetStatus:
    """Where a business stands against its daily and monthly limits (one read; writes nothing).

    Raises:
        NotFound: the business is not registered (code `unknown_business`).
    """
    return read_status(business_id, now=now)[0]


_warnings: dict[tuple[str, str], list[BudgetWarning]] = {}
_warnings_lock = threading.Lock()


def publish(business_id: str, day: str | None = None) -> BudgetStatus:
    """Rewrite `budget_status/{business_id}` from a fresh read of `day` (default today) and its
    month, and record the thresholds they crossed (each once per period)."""
    for _ in range(8):
        now = server_clock.now()
        if day is not None and day_key(now) != day:  # a block of another day: that day's figures
            now = dt.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=dt.UTC)
        status, room, published_doc = read_status(business_id, now=now)
        ref = db().collection(STATUS).document(business_id)
        data = _document(status)
        try:
            if published_doc.exists:
                ref.update(
                    data, option=db().write_option(last_update_time=published_doc.update_time)
                )
            else:
                ref.create(data)
        except (exceptions.FailedPrecondition, exceptions.AlreadyExists, exceptions.NotFound):
            continue  # someone rewrote it after our read: read again
        break
    _hand_over(business_id, record_warnings(status.tier, room.day, room.month))
    return status


def announce(left: Left) -> list[BudgetWarning]:
    """Announce the thresholds a flush or close was the first to find reached (it recorded
    them in its commit): a WARNING log line each, and a warning for `published`."""
    found = [_announced(left.business.tier, period, level) for period, level in left.reached]
    _hand_over(left.business.business_id, found)
    return found


def _hand_over(business_id: str, found: list[BudgetWarning]) -> None:
    if found:
        with _warnings_lock:
            _warnings.setdefault((db().project, business_id), []).extend(found)


def published(business_id: str) -> list[BudgetWarning]:
    """The warnings this process recorded for `business_id` since it last asked."""
    with _warnings_lock:
        return _warnings.pop((db().project, business_id), [])


def record_warnings(tier: str, day: Period, month: Period) -> list[BudgetWarning]:
    """Record each 75/90/100% threshold `day` and `month` have reached, once per period (an
    alert document and a WARNING log line). Returns the ones recorded now."""
    found = []
    for period in (day, month):
        for level in period.reached:
            if level in period.warned:
                continue  # an owner's commit recorded it
            ref, data = _alert_doc(period, level)
            batch = db().batch()
            batch.create(ref, data)
            if period.exists:
                # Marked on the period as an owner's commit marks it, so that the next close
                # does not announce it again.
                batch.update(scope_ref(period.name), {"warned": firestore.ArrayUnion([level])})
            try:
                batch.commit()
            except (exceptions.AlreadyExists, exceptions.NotFound):
                continue  # recorded once per period already (or the period is gone)
            found.append(_announced(tier, period, level))
    return found


def _message(period: Period, level: int) -> str:
    when = "today" if period.kind == "day" else "this month"
    budget_name = "daily budget" if period.kind == "day" else "monthly budget"
    return (
        f"{period.business_id} passed {level}% of its {budget_name} {when}: "
        f"{format_usd(period.spent, 4)} of {format_usd(period.limit, 2)} spent"
        + ("; new tasks are blocked until the period rolls over" if level == 100 else "")
    )


def _announced(tier: str, period: Period, level: int) -> BudgetWarning:
    """A threshold just recorded: its WARNING log line and its warning."""
    message = _message(period, level)
    logger.warning(
        message,
        extra=log.fields(
            event="budget_warning",
            business_id=period.business_id,
            tier=tier,
            scope=period.name,
            kind=period.kind,
            level=level,
        ),
    )
    return BudgetWarning(f"{period.name}.{level}", period.kind, level, message)


def alerts(business_id: str, periods: list[str]) -> list[BudgetWarning]:
    """The warnings recorded for the business's `periods` (days or months), in one read,
    lowest level first."""
    refs = alert_refs(business_id, periods)
    return alerts_in(refs, db().get_all(refs))


def alert_refs(business_id: str, periods: list[str]) -> list[firestore.DocumentReference]:
    """The documents a warning of the business's `periods` is recorded in, if it was."""
    return [
        db().collection(ALERTS).document(f"{scope_name(business_id, period)}:{level}")
        for period in periods
        for level in WARNING_LEVELS
    ]


def alerts_in(
    refs: list[firestore.DocumentReference], snapshots: Iterable[Any]
) -> list[BudgetWarning]:
    """The warnings recorded in `refs` as `snapshots` (read with them, maybe with others) found
    them, lowest level first."""
    found = {snapshot.reference.path: snapshot for snapshot in snapshots}
    warnings = []
    for ref in refs:
        snapshot = found.get(ref.path)
        if snapshot is not None and snapshot.exists:
            data = snapshot.to_dict() or {}
            scope, level = ref.id.rsplit(":", 1)
            warnings.append(
                BudgetWarning(
                    f"{scope}.{level}", str(data["kind"]), int(level), str(data["message"])
                )
            )
    return sorted(warnings, key=lambda warning: warning.level)
