"""What a business sees of its budget: `budget_status/{business_id}`, and the 75/90/100%
warnings of its day and month, each recorded once per period."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Protocol

from google.api_core import exceptions
from google.cloud import firestore
from pydantic import BaseModel, Field

from common.budget import counters, usage
from common.budget.businesses import Business
from common.budget.counters import Scope
from common.money import format_usd, usd
from common.platform import log
from common.platform.process import Throttle
from common.platform.settings import get_settings
from common.platform.store import db

ALERTS = "budget_alerts"
STATUS = "budget_status"  # what clients may read: one document per business
WARNING_LEVELS = (75, 90, 100)
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BudgetWarning:
    """A threshold crossed: `key` is unique per scope (business and period) and level."""

    key: str
    kind: str  # "day" | "month"
    level: int
    message: str


class WarningRecorder(Protocol):
    """What a caller records in the batch of a budget warning (e.g. an event on its run)."""

    def on_warning(self, batch: firestore.WriteBatch, warning: BudgetWarning) -> None: ...


class LimitChange(BaseModel):
    """A limit of a period changed (a new tier, an override, the platform cap)."""

    period: str  # the scope, e.g. "acme:2026-11-25"
    version: int
    from_usd: float
    to_usd: float


class BudgetStatus(BaseModel):
    """A business's budget right now (the seed's `get_budget_status`), amounts in USD."""

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


_refreshes = Throttle()


def refresh_due(business_id: str) -> bool:
    """At most one refresh per business per `budget_refresh_seconds` in this process, so that
    busy businesses do not pay a read of every counter shard on every settle."""
    return _refreshes.due((db().project, business_id), get_settings().budget_refresh_seconds)


def refresh(
    business: Business,
    now: dt.datetime,
    *,
    recorder: WarningRecorder | None = None,
) -> BudgetStatus:
    """Compute the business's budget status, publish it to `budget_status/{business_id}` for its
    clients, and record each 75/90/100% threshold of the day and month once per period (an
    alert document, what `recorder` records with it, a WARNING log line)."""
    scopes = business.scopes(now)
    day, month = scopes[0], scopes[1]
    stored = counters.prepare([day, month])
    totals = counters.read([day, month])
    today, this_month = totals[day.name], totals[month.name]
    levels = [
        level
        for level in (
            warning_level(today.spent, today.limit),
            warning_level(this_month.spent, this_month.limit),
        )
        if level is not None
    ]
    controls = scopes[2].source.get().to_dict() or {}
    status = BudgetStatus(
        business_id=business.business_id,
        tier=business.tier,
        daily_limit=usd(today.limit),
        today_spent=usd(today.spent),
        today_reserved=usd(today.reserved),
        today_remaining=usd(max(today.headroom, 0)),
        percent_used=round(100 * (today.limit - today.headroom) / max(today.limit, 1), 2),
        warning_level=max(levels) if levels else None,
        month_spent=usd(this_month.spent),
        month_reserved=usd(this_month.reserved),
        monthly_limit=usd(this_month.limit),
        month_remaining=usd(max(this_month.headroom, 0)),
        projected_monthly=round(usage.projected_month(usd(this_month.spent), now), 6),
        platform_paused=bool(controls.get("paused")),
        paused_reason=controls.get("reason") if controls.get("paused") else None,
        limit_changes=[
            LimitChange(period=scope.name, **change)
            for scope, kept in zip((day, month), stored, strict=True)
            for change in kept.changes
        ],
    )
    db().collection(STATUS).document(business.business_id).set(
        {**status.model_dump(mode="json"), "updated_at": firestore.SERVER_TIMESTAMP}
    )
    for scope in (day, month):
        spent, limit = totals[scope.name].spent, totals[scope.name].limit
        for level in WARNING_LEVELS:
            if 100 * spent >= level * limit:
                _record_warning(business, scope, limit, level, spent, recorder)
    return status


def _record_warning(
    business: Business,
    scope: Scope,
    limit: int,
    level: int,
    spent: int,
    recorder: WarningRecorder | None,
) -> None:
    bid = business.business_id
    period = "today" if scope.kind == "day" else "this month"
    budget_name = "daily budget" if scope.kind == "day" else "monthly budget"
    message = (
        f"{bid} passed {level}% of its {budget_name} {period}: "
        f"{format_usd(spent, 4)} of {format_usd(limit, 2)} spent"
        + ("; new tasks are blocked until the period rolls over" if level == 100 else "")
    )
    batch = db().batch()
    batch.create(
        db().collection(ALERTS).document(f"{scope.name}:{level}"),
        {
            "business_id": bid,
            "scope": scope.name,
            "kind": scope.kind,
            "level": level,
            "spent_nanos": spent,
            "limit_nanos": limit,
            "message": message,
            "at": firestore.SERVER_TIMESTAMP,
        },
    )
    if recorder is not None:
        recorder.on_warning(
            batch, BudgetWarning(f"{scope.name}.{level}", scope.kind, level, message)
        )
    try:
        batch.commit()
    except exceptions.AlreadyExists:
        return  # recorded once per period already
    logger.warning(
        message,
        extra=log.fields(
            event="budget_warning",
            business_id=bid,
            tier=business.tier,
            scope=scope.name,
            kind=scope.kind,
            level=level,
        ),
    )
