"""The product's own outcomes as router training data (`make train-router FEEDBACK=PATH`).

A feedback file is JSON Lines, one logical model call a line, as `raptorflow router-feedback`
writes it (format `raptorflow-router-feedback/1`):

    {"format": "raptorflow-router-feedback/1", "call_key": "run-1:research:facts",
     "task_type": "research_facts", "attempts": [{"tier": "mini", "outcome": "escalated"},
     {"tier": "full", "outcome": "first_try"}], "prompt": "..."}

`attempts` are the call's physical attempts in order, each with its model tier and outcome
(`common.llm.base.Outcome`, and any outcome a later version adds). `prompt` is the user turns'
text: usage records never store it, so a deployment that wants to retrain joins it from a prompt
log of its own (`--prompts`); a line without one cannot train a prompt router and is skipped.

What a call says about the gap between a strong and a weak model (`label`):

- it started on a weak tier (nano or mini) and a weak-tier attempt answered (first try, or
  repaired): the weak model sufficed, gain 0 (0.2 if it needed a repair);
- it started on a weak tier, escalated, and a stronger tier answered: the strong model was
  needed, gain 1;
- it started on a weak tier and nothing answered, even after escalating: both failed, gain 0
  (a prompt that defeats every model is no reason to pay for the strongest);
- anything else (started on the full tier, fell back between providers, failed without an
  escalation, an outcome this code does not know): no label, counted and skipped.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tools.train_router import Prompt

FORMAT = "raptorflow-router-feedback/1"
WEAK_TIERS = frozenset({"nano", "mini"})
ANSWERED = frozenset({"first_try", "repaired", "fell_back"})
REPAIR_GAIN = 0.2  # the weak model answered after one repair: adequate, not free


@dataclass
class Tally:
    """What a feedback file held: calls used, and calls skipped by reason."""

    used: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        """One line for the trainer's output."""
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
        return f"product feedback: {self.used} calls used" + (
            f"; skipped: {reasons}" if reasons else ""
        )


def label(attempts: list[dict[str, Any]]) -> tuple[float, float] | str:
    """(strong quality, weak quality) for one call's attempts, or why it has no label."""
    if not attempts:
        return "no attempts"
    tiers = [str(a.get("tier")) for a in attempts]
    outcomes = [str(a.get("outcome")) for a in attempts]
    known = ANSWERED | {"failed", "escalated"}
    if any(o not in known for o in outcomes):
        return "unknown outcome"
    if tiers[0] not in WEAK_TIERS:
        return "started on the full tier"
    weak = [o for t, o in zip(tiers, outcomes, strict=True) if t in WEAK_TIERS]
    strong = [o for t, o in zip(tiers, outcomes, strict=True) if t not in WEAK_TIERS]
    if "first_try" in weak or "fell_back" in weak:
        return (1.0, 1.0)
    if "repaired" in weak:
        return (1.0, 1.0 - REPAIR_GAIN)
    if strong:
        return (1.0, 0.0) if any(o in ANSWERED for o in strong) else (0.0, 0.0)
    return "failed without escalating"


def prompts(path: Path, tally: Tally | None = None) -> list[Prompt]:
    """The labelled calls of a feedback file as training prompts (source "product").

    Raises:
        ValueError: a line is not JSON or not of this format (naming the line).
    """
    from tools.train_router import Prompt

    tally = tally if tally is not None else Tally()
    out = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc})") from exc
            if not isinstance(item, dict) or item.get("format") != FORMAT:
                raise ValueError(f"{path}:{number}: format must be {FORMAT!r}")
            if not str(item.get("prompt") or "").strip():
                tally.skipped["without a prompt"] += 1
                continue
            found = label(list(item.get("attempts") or []))
            if isinstance(found, str):
                tally.skipped[found] += 1
                continue
            tally.used += 1
            strong, weak = found
            out.append(
                Prompt(
                    source="product",
                    group="product",
                    prompt_id=f"product:{item.get('call_key') or number}",
                    text=str(item["prompt"]),
                    quality={"strong": strong, "weak": weak},
                )
            )
    return out
