"""The operator kill switch: `platform/controls` = `{paused, reason}` refuses every new task."""

from __future__ import annotations

from typing import Any

from google.cloud import firestore

from common.budget import counters
from common.llm.base import BudgetDenied
from common.platform.store import db


def controls_ref() -> firestore.DocumentReference:
    ref: firestore.DocumentReference = db().collection("platform").document("controls")
    return ref


def paused(controls: dict[str, dict[str, Any]]) -> BudgetDenied | None:
    """The refusal while paused, given what `counters.prepare` read of the controls."""
    switch = controls.get(controls_ref().path, {})
    if switch.get("paused"):
        return BudgetDenied(
            "platform_paused", f"RaptorFlow is paused by an operator: {switch.get('reason', '')}"
        )
    return None


def set_paused(is_paused: bool, reason: str = "") -> None:
    """Pause or resume: while paused, every reservation and check is refused (every instance
    notices within `budget_cache_seconds`; this process at once)."""
    counters.forget(controls_ref())
    controls_ref().set(
        {"paused": is_paused, "reason": reason, "updated_at": firestore.SERVER_TIMESTAMP}
    )
