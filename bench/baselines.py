"""Baseline routers for bench/router.py: the keyword/length heuristic this project used before
the learned router (issue 15), kept verbatim in behaviour so the comparison stays reproducible.

`old_score(text)` is that classifier's 0-8 score (0-1 simple, 2-4 balanced, 5+ complex): four
kinds of cue worth 0-2 points each, length (~tokens as characters / 4: 1,500 and 6,000),
structure markers, reasoning words and constraint words, read from the first 12k and last 4k
characters of a long prompt.
"""

from __future__ import annotations

_CHARS_PER_TOKEN = 4
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


def _points(value: int, one: int, two: int) -> int:
    return 2 if value >= two else 1 if value >= one else 0


def old_score(text: str) -> int:
    """The old classifier's score for a prompt's text (higher: a stronger model)."""
    approx_tokens = len(text) // _CHARS_PER_TOKEN
    if len(text) > _HEAD_CHARS + _TAIL_CHARS:
        window = (text[:_HEAD_CHARS] + "\n" + text[-_TAIL_CHARS:]).lower()
        scale = len(text) / len(window)
    else:
        window, scale = text.lower(), 1.0
    structure = round(sum(window.count(marker) for marker in _STRUCTURE_MARKERS) * scale)
    reasoning = [cue for cue in _REASONING_CUES if cue in window]
    constraints = [cue for cue in _CONSTRAINT_CUES if cue in window]
    return (
        _points(approx_tokens, _LONG_TOKENS, _VERY_LONG_TOKENS)
        + _points(structure, 2, 8)
        + _points(len(reasoning), 1, 3)
        + _points(len(constraints), 2, 4)
    )
