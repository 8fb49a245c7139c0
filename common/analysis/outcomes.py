"""How sub-tasks' first answers fared on each tier lately, and what their calls cost: the pass
rates the cascade learns its starting tiers from (`common.llm.cascade.start_tier`), and the cost
per call of each task type a run's expected cost is made of (`common.analysis.admission`).

One query reads the newest `router_outcomes_limit` attempts of the usage records (every
business's: how well a model does a kind of task does not depend on who asks) and the process
keeps what it found for `router_outcomes_seconds`, so a phase never queries per call. Each time
a call reached a tier (its start, or an escalation) its first attempt there is one first try:
passed if it was a `first_try`, failed if its answer was invalid or failed its checks; an
attempt that failed on the provider's side (an outage, a rate limit) says nothing of the model.
A call's cost is every attempt it was charged for: its asks again, escalations and fallbacks.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from typing import Any

from google.cloud import firestore

from common.budget.blocks import USAGE
from common.llm.cascade import PassRate, PassRates
from common.platform.process import per_settings
from common.platform.settings import Settings, get_settings
from common.platform.store import db
from common.spend.records import ModelTier

_FIELDS = [
    "business_id",
    "call_key",
    "task_type",
    "model_tier",
    "outcome",
    "error_code",
    "state",
    "created_at",
    "key",
    "charged_nanos",
]
# An answer that was no good (the model's fault, unlike an outage).
_FAILED_ANSWER = frozenset({"check_failed", "invalid_output"})
_CHARGED = frozenset({"settled", "settled_late", "abandoned"})


class _Cache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: list[dict[str, Any]] | None = None
        self.rates: PassRates | None = None
        self.costs: dict[str, list[int]] | None = None
        self.read_at = -float("inf")


@per_settings
def _cache(settings: Settings) -> _Cache:
    return _Cache()


def _records(cache: _Cache, settings: Settings) -> list[dict[str, Any]]:
    """The newest usage records, at most `router_outcomes_seconds` old (holding the lock)."""
    stale = time.monotonic() - cache.read_at > settings.router_outcomes_seconds
    if cache.records is None or stale:
        cache.records = _recent(settings.router_outcomes_limit)
        cache.rates = cache.costs = None
        cache.read_at = time.monotonic()
    return cache.records


def pass_rates() -> PassRates:
    """The recent first-try pass rates by (task type, tier), at most `router_outcomes_seconds`
    old (one query when older)."""
    settings = get_settings()
    cache = _cache(settings)
    with cache.lock:
        records = _records(cache, settings)
        if cache.rates is None:
            cache.rates = rates_of(records)
        return cache.rates


def call_cost(task_type: str) -> int | None:
    """What one call of `task_type` cost lately, at the `run_estimate_percentile` (every attempt
    it was charged for); None until `run_estimate_min_calls` calls of it were recorded."""
    settings = get_settings()
    cache = _cache(settings)
    with cache.lock:
        records = _records(cache, settings)
        if cache.costs is None:
            cache.costs = costs_of(records)
        found = cache.costs.get(task_type, [])
    if len(found) < settings.run_estimate_min_calls:
        return None
    return percentile(found, settings.run_estimate_percentile)


def forget() -> None:
    """Read the outcomes again at the next call (benchmarks and tests that just made some)."""
    cache = _cache()
    with cache.lock:
        cache.records = cache.rates = cache.costs = None


def percentile(ordered: list[int], q: float) -> int:
    """The `q`th percentile of `ordered` (sorted), the nearest rank above."""
    return ordered[min(len(ordered) - 1, max(math.ceil(q / 100 * len(ordered)) - 1, 0))]


def costs_of(records: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Each task type's costs per call (the attempts of one call summed), sorted, from usage
    records."""
    calls: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record.get("state") in _CHARGED and record.get("call_key") and record.get("task_type"):
            calls[(str(record.get("business_id")), str(record["call_key"]))].append(record)
    found: dict[str, list[int]] = defaultdict(list)
    for attempts in calls.values():
        task_type = str(attempts[0]["task_type"])
        found[task_type].append(sum(int(r.get("charged_nanos") or 0) for r in attempts))
    return {task_type: sorted(costs) for task_type, costs in found.items()}


def _recent(limit: int) -> list[dict[str, Any]]:
    query = (
        db()
        .collection(USAGE)
        .order_by("created_at", direction=firestore.Query.DESCENDING)
        .limit(limit)
        .select(_FIELDS)
    )
    return [snapshot.to_dict() or {} for snapshot in query.stream()]


def rates_of(records: list[dict[str, Any]]) -> PassRates:
    """First-try pass rates from usage records (any order; see the module docstring)."""
    calls: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if (
            record.get("state") in _CHARGED
            and record.get("outcome")
            and record.get("call_key")
            and record.get("created_at") is not None
        ):
            calls[(str(record.get("business_id")), str(record["call_key"]))].append(record)
    passed: dict[tuple[str, ModelTier], int] = defaultdict(int)
    tried: dict[tuple[str, ModelTier], int] = defaultdict(int)
    for attempts in calls.values():
        attempts.sort(key=lambda r: (r["created_at"], str(r.get("key"))))
        tier = None
        for record in attempts:
            if record.get("model_tier") == tier:
                continue  # only the first attempt on each tier is a first try
            tier = record.get("model_tier")
            if tier not in ("nano", "mini", "full"):
                continue
            group: tuple[str, ModelTier] = (str(record.get("task_type")), tier)
            if record["outcome"] == "first_try":
                passed[group] += 1
                tried[group] += 1
            elif record["outcome"] == "escalated" or record.get("error_code") in _FAILED_ANSWER:
                tried[group] += 1
    return {group: PassRate(passed[group], count) for group, count in tried.items()}
