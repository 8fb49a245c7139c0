"""Baseline routers for bench/router.py: the keyword/length heuristic this project used before
the learned router (issue 15), kept verbatim in behaviour so the comparison stays reproducible;
the previous learned router (v2, issue 15) as it shipped; and a LiteLLM-style keyword heuristic.

`old_score(text)` is that classifier's 0-8 score (0-1 simple, 2-4 balanced, 5+ complex): four
kinds of cue worth 0-2 points each, length (~tokens as characters / 4: 1,500 and 6,000),
structure markers, reasoning words and constraint words, read from the first 12k and last 4k
characters of a long prompt.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from common.llm import cues

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


# --- The previous learned router (v2, issue 15), as it shipped ---------------------------------
# Its artefact is kept beside this file; its 13 cues are "long prompt" and the 12 of
# common.llm.cues (the same code, the same 2,000-character window), signs chosen by hand.

_V2_ARTEFACT = Path(__file__).with_name("router_v2_model.json")
_V2_LONG_FROM_CHARS = 200


@lru_cache(maxsize=1)
def _v2_model() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float, float, float]:
    document = json.loads(_V2_ARTEFACT.read_text(encoding="utf-8"))
    names = [cue["name"] for cue in document["features"]["cues"]]
    if names != ["long prompt", *cues.CUE_NAMES]:
        raise RuntimeError(f"{_V2_ARTEFACT.name} was made for other cues: {names}")
    model = document["model"]
    return (
        np.array(model["mean"]),
        np.array(model["coef"]),
        float(model["intercept"]),
        float(model["calibration"]["a"]),
        float(model["calibration"]["b"]),
    )


def previous_router_score(text: str) -> float:
    """The v2 router's P(strong model needed) for a prompt's text."""
    mean, coef, intercept, a, b = _v2_model()
    long = max(0.0, math.log1p(len(text)) - math.log1p(_V2_LONG_FROM_CHARS))
    values = np.concatenate([[long], cues.features(text)])
    z = a * (float(coef @ values - coef @ mean) + intercept) + b
    return 1.0 / (1.0 + math.exp(-z))


# --- A LiteLLM-style keyword heuristic -----------------------------------------------------------
# The shape of LiteLLM's rule-based complexity router (and Bifrost's): a weighted sum of code
# presence (0.30), reasoning markers (0.25), technical terms (0.25) and length (0.10), less
# simple-request markers (0.05), each dimension in [0, 1]. Keyword lists are ours.

_HEURISTIC_CODE = (
    "```", "def ", "function", "class ", "import ", "code", "python", "javascript", "sql",
    "debug", "error", "compile", "script", "api", "regex", "algorithm",
)  # fmt: skip
_HEURISTIC_REASONING = (
    "why", "explain", "analyze", "analyse", "compare", "prove", "derive", "step by step",
    "reason", "evaluate", "trade-off", "calculate", "solve", "justify", "plan",
)  # fmt: skip
_HEURISTIC_TECHNICAL = (
    "architecture", "distributed", "database", "kubernetes", "latency", "scalab", "protocol",
    "algorithm", "optimi", "theorem", "equation", "integral", "probability", "matrix",
    "statistic", "infrastructure", "concurren",
)  # fmt: skip
_HEURISTIC_SIMPLE = (
    "hi", "hello", "thanks", "thank you", "what is", "who is", "define", "translate",
    "yes", "no",
)  # fmt: skip


def _share(lower: str, words: tuple[str, ...], full: int) -> float:
    return min(1.0, sum(word in lower for word in words) / full)


def litellm_style_score(text: str) -> float:
    """A LiteLLM-style rule-based complexity score in [0, 1] (higher: a stronger model)."""
    lower = text[:_HEAD_CHARS].lower()
    return (
        0.30 * _share(lower, _HEURISTIC_CODE, 3)
        + 0.25 * _share(lower, _HEURISTIC_REASONING, 3)
        + 0.25 * _share(lower, _HEURISTIC_TECHNICAL, 3)
        + 0.10 * min(1.0, len(text) / _CHARS_PER_TOKEN / 1_000)
        - 0.05 * _share(lower, _HEURISTIC_SIMPLE, 2)
    )
