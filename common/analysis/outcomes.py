"""How sub-tasks' first answers fared on each tier lately, and what their calls cost: the pass
rates the cascade learns its starting tiers from (`common.llm.cascade.start_tier`), and the cost
per call of each task type a run's expected cost is made of (`common.analysis.admission`).

One query reads the newest `router_outcomes_limit` attempts of the usage records (every
business's: how well a model does a kind of task does not depend on who asks), and what it finds
is shared: the process that made it publishes the pass rates and costs in one document
(`router_outcomes/recent`, written only when the one there is older than
`router_outcomes_seconds`), and every other instance reads that document instead of the records,
keeping it until it is that old. So the platform queries the records about once per
`router_outcomes_seconds`, however many instances run (each of them reads one document then,
not thousands: a cold instance's first learned call does not wait on the query), and what an
instance uses is never older than `router_outcomes_seconds`. Each time
a call reached a tier (its start, or an escalation) its first attempt there is one first try:
passed if it was a `first_try`, failed if its answer was invalid or failed its checks; an
attempt that failed on the provider's side (an outage, a rate limit) says nothing of the model.
A call's cost is every attempt it was charged for: its asks again, escalations and fallbacks.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from google.api_core import exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from common.budget.blocks import USAGE, USAGE_SHARDS
from common.llm.cascade import PassRate, PassRates
from common.platform import log
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
OUTCOMES = "router_outcomes"
# How long an instance routes without outcomes when they cannot be read (their index is missing
# or building), before it tries again.
UNAVAILABLE_SECONDS = 60.0
logger = logging.getLogger(__name__)
# False where the caller writes nothing (a budget check is a question): it reads, never shares.
_sharing: ContextVar[bool] = ContextVar("outcomes_sharing", default=True)
# An answer that was no good (the model's fault, unlike an outage).
_FAILED_ANSWER = frozenset({"check_failed", "invalid_output"})
_CHARGED = frozenset({"settled", "settled_late", "abandoned"})


class _Cache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rates: PassRates | None = None
        self.costs: dict[str, list[int]] | None = None
        self.fresh_until = -float("inf")  # monotonic
        self.from_records = False  # the next read skips the shared document (`forget`)


@per_settings
def _cache(settings: Settings) -> _Cache:
    return _Cache()


def _load(cache: _Cache, settings: Settings) -> tuple[PassRates, dict[str, list[int]]]:
    """The pass rates and costs, at most `router_outcomes_seconds` old (holding the lock): kept,
    else the shared document if it is that fresh, else from the records (then shared)."""
    now = time.monotonic()
    if cache.rates is not None and cache.costs is not None and now < cache.fresh_until:
        return cache.rates, cache.costs
    seconds, limit = settings.router_outcomes_seconds, settings.router_outcomes_limit
    shared = None if cache.from_records else _ref().get()
    usable = _usable(shared, limit, seconds)
    if usable is not None:
        cache.rates, cache.costs, age = usable
        cache.fresh_until = now + seconds - max(age, 0.0)
        return cache.rates, cache.costs
    try:
        records = _recent(limit)
    except exceptions.FailedPrecondition as error:
        # The query's index is missing or still building (a deployment that just added it; the
        # emulator never says so): route as with no outcomes yet, and look again soon.
        logger.warning(
            "router outcomes unavailable; routing without them",
            extra=log.fields(error=str(error)[:200]),
        )
        cache.rates, cache.costs = {}, {}
        cache.fresh_until = now + min(seconds, UNAVAILABLE_SECONDS)
        return cache.rates, cache.costs
    cache.rates, cache.costs = rates_of(records), costs_of(records)
    cache.fresh_until, cache.from_records = now + seconds, False
    if _sharing.get():
        _share(shared, cache.rates, cache.costs, limit)
    return cache.rates, cache.costs


@contextlib.contextmanager
def read_only() -> Iterator[None]:
    """Within it, outcomes read from the records are kept in this process but not shared (for
    a caller that writes nothing)."""
    token = _sharing.set(False)
    try:
        yield
    finally:
        _sharing.reset(token)


def _ref() -> firestore.DocumentReference:
    return db().collection(OUTCOMES).document("recent")


def _share(
    shared: firestore.DocumentSnapshot[Any] | None,
    rates: PassRates,
    costs: dict[str, list[int]],
    limit: int,
) -> None:
    """Publish what the records gave. Over the version `shared` read, only if it is still that
    one (of the instances that found it stale, one writes); with no version read (none there,
    or `forget` skipped it), whatever is there: a reading just made is the newest. Never fails
    its caller: the others then read the records themselves."""
    document = {
        "computed_at": firestore.SERVER_TIMESTAMP,
        "limit": limit,
        "rates": [
            {"task_type": task_type, "tier": tier, "passed": rate.passed, "tried": rate.tried}
            for (task_type, tier), rate in sorted(rates.items())
        ],
        "costs": [
            {"task_type": task_type, "nanos": found} for task_type, found in sorted(costs.items())
        ],
    }
    try:
        if shared is not None and shared.exists:
            _ref().update(document, option=db().write_option(last_update_time=shared.update_time))
        else:
            _ref().set(document)
    except exceptions.FailedPrecondition:
        pass  # another instance published at the same time
    except exceptions.GoogleAPICallError as error:
        logger.warning("router outcomes not shared", extra=log.fields(error=str(error)[:200]))


def _usable(
    shared: firestore.DocumentSnapshot[Any] | None, limit: int, seconds: float
) -> tuple[PassRates, dict[str, list[int]], float] | None:
    """What the shared document holds and its age, if it read as many records as this process
    would and is at most `seconds` old; None otherwise, or if it is not what `_share` writes
    (then the records are read and it is written again)."""
    if shared is None or not shared.exists:
        return None
    document = shared.to_dict() or {}
    try:
        if document["limit"] != limit:
            return None
        age = (shared.read_time - document["computed_at"]).total_seconds()
        if age > seconds:
            return None
        return (*_decoded(document), age)
    except (KeyError, TypeError, ValueError, AttributeError):
        logger.warning("router outcomes: the shared document is malformed; reading the records")
        return None


def _decoded(document: dict[str, Any]) -> tuple[PassRates, dict[str, list[int]]]:
    rates: PassRates = {
        (str(row["task_type"]), row["tier"]): PassRate(int(row["passed"]), int(row["tried"]))
        for row in document.get("rates") or []
    }
    costs = {
        str(row["task_type"]): [int(n) for n in row["nanos"]] for row in document.get("costs") or []
    }
    return rates, costs


def pass_rates() -> PassRates:
    """The recent first-try pass rates by (task type, tier), at most `router_outcomes_seconds`
    old."""
    settings = get_settings()
    cache = _cache(settings)
    with cache.lock:
        return _load(cache, settings)[0]


def call_cost(task_type: str) -> int | None:
    """What one call of `task_type` cost lately, at the `run_estimate_percentile` (every attempt
    it was charged for); None until `run_estimate_min_calls` calls of it were recorded."""
    settings = get_settings()
    cache = _cache(settings)
    with cache.lock:
        found = _load(cache, settings)[1].get(task_type, [])
    if len(found) < settings.run_estimate_min_calls:
        return None
    return percentile(found, settings.run_estimate_percentile)


def forget() -> None:
    """Read the outcomes again from the records at the next call, and share them (benchmarks
    and tests that just made some)."""
    cache = _cache()
    with cache.lock:
        cache.rates = cache.costs = None
        cache.from_records = True


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
    # Every shard at once: Firestore merges the shards' ranges of (shard, created_at) newest
    # first (`common.budget.blocks.USAGE_SHARDS`).
    query = (
        db()
        .collection(USAGE)
        .where(filter=FieldFilter("shard", "in", list(range(USAGE_SHARDS))))
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
