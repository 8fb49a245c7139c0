"""Gemini's thinking budgets: the explicit token allowance each reasoning effort becomes.

Kept apart from `common.llm.providers.gemini` (which loads the google-genai SDK) because the
router needs it for every cost bound, also where Gemini is never called. The table is in that
module's docstring.
"""

from __future__ import annotations

from common.llm.base import ReasoningEffort

_THINKING_BUDGET: dict[ReasoningEffort, int] = {
    "minimal": 0,
    "low": 1024,
    "medium": 4096,
    "high": 16384,
}
# Gemini 2.5 Pro cannot turn thinking off; 128 tokens is the smallest budget it takes.
_PRO_MIN_THINKING_BUDGET = 128
_DEFAULT_EFFORT: ReasoningEffort = "low"


def thinking_budget(model: str, effort: ReasoningEffort | None) -> int:
    """The thinking budget (tokens) sent for `effort` on `model` (table: the Gemini provider)."""
    budget = _THINKING_BUDGET[effort or _DEFAULT_EFFORT]
    if "pro" in model:
        budget = max(budget, _PRO_MIN_THINKING_BUDGET)
    return budget
