"""Platform controls: `platform/controls` holds the operator's kill switch (`paused`, `reason`)
and the platform-wide daily cap (`daily_cap_nanos`, all businesses together), with a `version`
every change increments.

Every process re-reads them at least every `budget_cache_seconds` (`common.budget.sources`), so a
pause, a lower cap or a higher one reaches every instance within that time; a block taken under
an older version stops granting once its instance has seen the new one (`common.budget.escrow`).
The operator's commands are in `common.budget.operator`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.cloud import firestore

from common.platform.store import db
from common.spend.ledger import BudgetDenied
from common.tenants.tiers import default_platform_cap_nanos


@dataclass(frozen=True)
class Controls:
    """The platform controls as stored (defaults where the document is missing)."""

    paused: bool
    reason: str
    cap_nanos: int
    version: int

    @classmethod
    def of(cls, data: dict[str, Any]) -> Controls:
        cap = data.get("daily_cap_nanos")
        return cls(
            paused=bool(data.get("paused", False)),
            reason=str(data.get("reason", "")),
            cap_nanos=int(cap) if cap is not None else default_platform_cap_nanos(),
            version=int(data.get("version", 0)),
        )


def controls_ref() -> firestore.DocumentReference:
    ref: firestore.DocumentReference = db().collection("platform").document("controls")
    return ref


def read_controls() -> Controls:
    return Controls.of(controls_ref().get().to_dict() or {})


def paused_refusal(controls: Controls) -> BudgetDenied:
    return BudgetDenied(
        "platform_paused", f"RaptorFlow is paused by an operator: {controls.reason}"
    )


def change(fields: dict[str, Any]) -> Controls:
    """Apply `fields` to the controls under the next version; returns the controls after."""

    @firestore.transactional
    def write(transaction: firestore.Transaction) -> Controls:
        snapshot = controls_ref().get(transaction=transaction)
        data = snapshot.to_dict() or {}
        version = int(data.get("version", 0)) + 1
        transaction.set(
            controls_ref(),
            {**fields, "version": version, "updated_at": firestore.SERVER_TIMESTAMP},
            merge=True,
        )
        return Controls.of({**data, **fields, "version": version})

    result: Controls = write(db().transaction())
    return result
