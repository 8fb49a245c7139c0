"""The automatic complexity classifier, for calls whose task type has no default.

`classify(messages)` scores the prompt with the learned router (`common.llm.learned`, trained by
`tools/train_router.py` on public per-prompt results of strong and weak models): the score is
the calibrated probability that the strong model is needed, from a length prior plus whatever
residual of the wording every public source agreed on. The artefact's cut-offs for the
configured `router_quality_target` (the share of the full model's quality to keep) map it to a
complexity and tier:

- score >= full cut-off: complex (full tier);
- score < nano cut-off: simple (nano tier), prompts on which a weak model kept the target;
- otherwise balanced (mini tier).

Small talk (a greeting or thanks, nothing asked) is simple with score 0, without the model.
The decision is deterministic and its cost flat in the prompt's length; its reason names the
score, the cut-offs and the parts that moved the score most. The model loads on the first call,
once per process (NumPy only). See docs/decisions/003-model-router.md for the data, the metrics
and the limits.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import common.llm.learned as learned
from common.llm.base import Complexity, Message
from common.platform.settings import get_settings
from common.spend.records import ModelTier

# The same mapping as router.COMPLEXITY_TIER (which imports this module, so it cannot be used here).
TIER: dict[Complexity, ModelTier] = {"simple": "nano", "balanced": "mini", "complex": "full"}
TOP_PARTS = 3


@dataclass(frozen=True)
class Classification:
    """The classifier's decision. `score`: P(strong model needed); higher needs a stronger model."""

    complexity: Complexity
    tier: ModelTier
    score: float
    reason: str


_lock = threading.Lock()
_loaded: tuple[Path, learned.RouterModel] | None = None


def _model() -> learned.RouterModel:
    global _loaded
    path = get_settings().router_model_path or learned.ARTEFACT
    with _lock:
        if _loaded is None or _loaded[0] != path:
            _loaded = (path, learned.load(path))
        return _loaded[1]


def complexity_for(score: float, cut: learned.Thresholds) -> Complexity:
    """The complexity a score falls in under one quality target's cut-offs."""
    if score >= cut.full:
        return "complex"
    return "simple" if score < cut.nano else "balanced"


def classify(messages: Sequence[Message]) -> Classification:
    """Classify the prompt in `messages` as simple, balanced or complex, saying why."""
    model = _model()
    text = learned.prompt_text(messages)
    cut = model.thresholds_for(get_settings().router_quality_target)
    if learned.is_small_talk(text):
        return Classification(
            complexity="simple",
            tier="nano",
            score=0.0,
            reason=(
                f"classifier: small talk (a greeting or thanks, nothing asked), score 0 "
                f"(router model v{model.version}; quality target {cut.quality_target:.2f})"
            ),
        )
    scored = model.score(text)
    complexity = complexity_for(scored.probability, cut)
    top = ", ".join(f"{name} {value:+.2f}" for name, value in scored.contributions[:TOP_PARTS])
    reason = (
        f"classifier score {scored.probability:.3f} = P(strong model needed) "
        f"(router model v{model.version}; quality target {cut.quality_target:.2f}: "
        f"nano below {cut.nano:.3f}, full from {cut.full:.3f}); "
        f"parts against an average prompt (log-odds): {top}"
    )
    return Classification(
        complexity=complexity, tier=TIER[complexity], score=scored.probability, reason=reason
    )
