"""The automatic complexity classifier, for calls whose task type has no default.

It scores four kinds of cue, each 0-2 points: length, structure (lists, sections, tables, code),
reasoning words (analyse, compare, trade-off, ...) and constraint words (must, at least, exactly,
...). Total 0-1 is simple, 2-4 balanced, 5+ complex. It reads the text with `str.count` and `in`
only (no tokenizer, no regular expressions), and for long prompts only the first 12k and last 4k
characters (structure counted there is scaled up to the whole length), so its cost stays flat:
well under a millisecond for a 10k-token prompt (`bench/router.py` measures it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from common.llm.base import Complexity, Message

# About 4 characters per token for English: enough for a length cue, far cheaper than tokenizing.
CHARS_PER_TOKEN = 4
_LONG_TOKENS = 1_500
_VERY_LONG_TOKENS = 6_000
_HEAD_CHARS = 12_000
_TAIL_CHARS = 4_000

_STRUCTURE_MARKERS = ("\n- ", "\n* ", "\n• ", "\n#", "\n|", "```", "\n1.", "\n2.", "\n3.")
_REASONING_CUES = (
    "analy",
    "compare",
    "contrast",
    "evaluate",
    "trade-off",
    "tradeoff",
    "prioriti",
    "justify",
    "reason",
    "strateg",
    "why ",
    "implication",
    "step by step",
    "hypothes",
    "forecast",
    "project ",
    "derive",
    "critique",
    "assess",
    "optimi",
)
_CONSTRAINT_CUES = (
    "must",
    "should",
    "at least",
    "at most",
    "no more than",
    "exactly",
    "without",
    "only ",
    "each ",
    "every ",
    "ensure",
    "require",
    "do not",
    "don't",
    "within",
)


@dataclass(frozen=True)
class Classification:
    complexity: Complexity
    score: int
    reason: str


def _points(value: int, one: int, two: int) -> int:
    return 2 if value >= two else 1 if value >= one else 0


def classify(messages: Sequence[Message]) -> Classification:
    """Classify the prompt in `messages` as simple, balanced or complex, saying why."""
    text = "\n".join(message["content"] for message in messages)
    approx_tokens = len(text) // CHARS_PER_TOKEN
    # Instructions sit at the start or the end of a prompt; the middle of a long one is pasted
    # material. Reading a fixed window keeps the cost flat however long the prompt is.
    if len(text) > _HEAD_CHARS + _TAIL_CHARS:
        window = (text[:_HEAD_CHARS] + "\n" + text[-_TAIL_CHARS:]).lower()
        scale = len(text) / len(window)
    else:
        window, scale = text.lower(), 1.0
    structure = round(sum(window.count(marker) for marker in _STRUCTURE_MARKERS) * scale)
    reasoning = [cue.strip() for cue in _REASONING_CUES if cue in window]
    constraints = [cue.strip() for cue in _CONSTRAINT_CUES if cue in window]

    length_points = _points(approx_tokens, _LONG_TOKENS, _VERY_LONG_TOKENS)
    structure_points = _points(structure, 2, 8)
    reasoning_points = _points(len(reasoning), 1, 3)
    constraint_points = _points(len(constraints), 2, 4)
    score = length_points + structure_points + reasoning_points + constraint_points
    complexity: Complexity = "simple" if score <= 1 else "balanced" if score <= 4 else "complex"
    reason = (
        f"classifier score {score} (length ~{approx_tokens} tokens +{length_points}; "
        f"{structure} structure markers +{structure_points}; "
        f"reasoning cues {reasoning[:5]} +{reasoning_points}; "
        f"constraint cues {constraints[:5]} +{constraint_points})"
    )
    return Classification(complexity=complexity, score=score, reason=reason)
