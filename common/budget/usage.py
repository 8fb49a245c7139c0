"""Analytics over usage records (`usage/{attempt_key}`, one per physical paid call, written by
`common.budget.ledger`): what was charged, by phase, task, day, model and outcome. Each record's
`charged_nanos` is what its business was charged (its cost, or its upper bound for a call whose
holder vanished); the periods' totals are sums of exactly these. Analytics read Firestore, not
memory: function instances are ephemeral.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, get_args

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from common.budget.blocks import USAGE as USAGE
from common.budget.status import projected_month
from common.llm.catalogue import TIERS
from common.money import NANOS_PER_USD
from common.platform.store import db
from common.spend.records import ModelTier, Outcome

# What a record may be in (see `common.budget.ledger`): these are charged to the business.
CHARGED = ("settled", "settled_late", "abandoned")


def _records(**equals: str) -> list[dict[str, Any]]:
    """The charged usage records matching `equals` (holds in flight and void ones left out)."""
    query: firestore.Query = db().collection(USAGE)  # type: ignore[assignment]
    for field, value in equals.items():
        query = query.where(filter=FieldFilter(field, "==", value))
    found = (snap.to_dict() or {} for snap in query.stream())
    return [record for record in found if record.get("state") in CHARGED]


@dataclass(frozen=True)
class RunTotals:
    """What a run was charged, from its usage records: per phase, and the models and providers
    that answered."""

    cost_by_phase: dict[str, int]
    models: list[str]
    providers: list[str]

    @property
    def cost_nanos(self) -> int:
        return sum(self.cost_by_phase.values())


def run_totals(run_id: str) -> RunTotals:
    """Every charged attempt of a run counts (fallbacks and failed ones included)."""
    costs: dict[str, int] = defaultdict(int)
    models, providers = set(), set()
    for record in _records(run_id=run_id):
        costs[record["phase"]] += int(record["charged_nanos"])
        if record.get("ok"):
            models.add(str(record["model"]))
            providers.add(str(record["provider"]))
    return RunTotals(dict(costs), sorted(models), sorted(providers))


def get_cost_by_task(business_id: str, month: str) -> dict[str, float]:
    """USD spent per task type by a business in a month (``YYYY-MM``)."""
    totals: dict[str, int] = defaultdict(int)
    for record in _records(business_id=business_id, month=month):
        totals[record.get("task_type") or "unknown"] += int(record["charged_nanos"])
    return {task: nanos / 1e9 for task, nanos in totals.items()}


def get_daily_cost(business_id: str, day: str) -> float:
    """USD spent by a business on a UTC day (``YYYY-MM-DD``)."""
    return sum(int(r["charged_nanos"]) for r in _records(business_id=business_id, day=day)) / 1e9


def project_monthly_cost(business_id: str, now: dt.datetime) -> float:
    """USD a business will have spent by the end of `now`'s month at its current rate."""
    records = _records(business_id=business_id, month=now.strftime("%Y-%m"))
    return projected_month(sum(int(r["charged_nanos"]) for r in records) / 1e9, now)


def model_distribution(business_id: str, month: str) -> dict[str, float]:
    """Share of successful calls answered by each model in a month (sums to 1)."""
    counts = Counter(
        r["model"] for r in _records(business_id=business_id, month=month) if r.get("ok")
    )
    total = sum(counts.values())
    return {model: count / total for model, count in counts.items()} if total else {}


@dataclass(frozen=True)
class CallOutcomes:
    """How the calls of one task type on one model tier ended (`router_report`)."""

    task_type: str
    tier: ModelTier
    calls: int
    outcomes: dict[Outcome, int]  # every outcome, 0 included; they sum to `calls`
    cost_nanos: int  # every attempt of these calls, failed ones included

    def share(self, outcome: Outcome) -> float:
        """The share of these calls that ended with `outcome`."""
        return self.outcomes[outcome] / self.calls


@dataclass(frozen=True)
class RouterReport:
    """`router_report`'s answer: one row per (task type, tier), and what it left out."""

    rows: list[CallOutcomes]
    attempts_without_outcome: int  # written before outcomes were recorded: not counted

    def table(self) -> str:
        """The report as a text table (what `raptorflow router-report` prints)."""
        lines = [
            f"{'task type':<24} {'tier':<4} {'calls':>6} {'first try':>9} {'repaired':>9} "
            f"{'fell back':>9} {'escalated':>9} {'failed':>7} {'cost $':>10}"
        ]
        for row in self.rows:
            widths = (8, 8, 8, 8, 6)  # the columns' widths, less the % sign
            shares = [
                f"{row.share(o) * 100:{w}.1f}%"
                for o, w in zip(get_args(Outcome), widths, strict=True)
            ]
            lines.append(
                f"{row.task_type:<24} {row.tier:<4} {row.calls:>6} {' '.join(shares)} "
                f"{row.cost_nanos / NANOS_PER_USD:>10.6f}"
            )
        if not self.rows:
            lines.append("(no calls with a recorded outcome)")
        if self.attempts_without_outcome:
            lines.append(
                f"({self.attempts_without_outcome} attempts recorded before outcomes were kept "
                "are not counted)"
            )
        return "\n".join(lines)


def _months(start: dt.date, end: dt.date) -> list[str]:
    months, year, month = [], start.year, start.month
    while (year, month) <= (end.year, end.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def _calls(
    business_id: str | None, start: dt.date | None, end: dt.date | None
) -> tuple[list[list[dict[str, Any]]], int]:
    """The attempts of each logical call (sharing a `call_key` within a business), in order,
    and how many attempts carry no outcome. Equality queries only (business, month), which
    Firestore's single-field indexes serve; the days are filtered here."""
    equals = {"business_id": business_id} if business_id else {}
    if start is not None:
        last = end or dt.datetime.now(dt.UTC).date()
        records = [r for month in _months(start, last) for r in _records(**equals, month=month)]
    else:
        records = _records(**equals)
    low, high = (start.isoformat() if start else ""), (end.isoformat() if end else "9999-12-31")
    records = [r for r in records if low <= str(r.get("day", "")) <= high]
    calls: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    without = 0
    for record in records:
        if record.get("outcome") is None or not record.get("call_key"):
            without += 1
        else:
            calls[(record["business_id"], record["call_key"])].append(record)
    for attempts in calls.values():
        attempts.sort(key=lambda r: (r["created_at"], r["key"]))
    return [calls[key] for key in sorted(calls)], without


def router_report(
    business_id: str | None = None, start: dt.date | None = None, end: dt.date | None = None
) -> RouterReport:
    """Each call's outcome (first try, repaired, fell back, escalated, failed) by task type and
    the model tier it started on.

    A call is the attempts sharing a `call_key` (within a business): it ended as its answered
    attempt did; `escalated` if it was answered only after moving up a tier (its answers below
    failed their checks); failed if nothing answered. Its tier is that of its first attempt
    (where it started: a fallback stays within a tier). `start` and `end` are UTC days,
    inclusive, of the attempts' budget periods.
    """
    calls, without = _calls(business_id, start, end)
    rows: dict[tuple[str, ModelTier], tuple[Counter[Outcome], int]] = {}
    for attempts in calls:
        outcomes = [r["outcome"] for r in attempts]
        answered = [o for o in outcomes if o not in ("failed", "escalated")]
        group = (attempts[0]["task_type"], attempts[0]["model_tier"])
        counts, cost = rows.get(group, (Counter(), 0))
        if not answered:
            counts["failed"] += 1
        else:
            counts["escalated" if "escalated" in outcomes else answered[-1]] += 1
        rows[group] = (counts, cost + sum(int(r["charged_nanos"]) for r in attempts))
    return RouterReport(
        rows=[
            CallOutcomes(
                task_type=task,
                tier=tier,
                calls=sum(counts.values()),
                outcomes={outcome: counts[outcome] for outcome in get_args(Outcome)},
                cost_nanos=cost,
            )
            for (task, tier), (counts, cost) in sorted(
                rows.items(), key=lambda row: (row[0][0], TIERS.index(row[0][1]))
            )
        ],
        attempts_without_outcome=without,
    )


ROUTER_FEEDBACK_FORMAT = "raptorflow-router-feedback/1"


def router_feedback(
    business_id: str | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    prompts: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One line per logical call for the router's next training (tools/router_feedback.py).

    Each line: the format, the call's key, task type and attempts in order (tier and outcome,
    any outcome a later version records included); with `prompts` (call key -> the user turns'
    text, from a prompt log the deployment keeps: usage records never store prompts) also the
    prompt.
    """
    calls, _ = _calls(business_id, start, end)
    lines = []
    for attempts in calls:
        key = str(attempts[0]["call_key"])
        line: dict[str, Any] = {
            "format": ROUTER_FEEDBACK_FORMAT,
            "call_key": key,
            "task_type": attempts[0]["task_type"],
            "attempts": [{"tier": r["model_tier"], "outcome": r["outcome"]} for r in attempts],
        }
        if prompts and key in prompts:
            line["prompt"] = prompts[key]
        lines.append(line)
    return lines
