"""Lexical cues of a prompt (maths, code, proofs, constraints, ...), for the learned router.

The router's trainer (tools/train_router.py) measures every cue on every public source and keeps
a cue only where the data gives it the same direction on every source; no direction is chosen
by hand. Each cue is read from at most the first and last `WINDOW_CHARS` characters, so its cost
does not grow with the prompt: a few regular expressions, about 0.1 ms.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt

WINDOW_CHARS = 2_000

# Words that count towards a cue: a trailing `*` allows any ending; two words are a phrase.
_LEXICON: dict[str, tuple[str, ...]] = {
    "maths": (
        "equation*", "integral*", "derivative*", "probabilit*", "theorem*", "lemma*", "matri*",
        "polynomial*", "prime", "primes", "algebra*", "geometr*", "calculus", "modulo", "mod",
        "integer*", "fraction*", "vector*", "eigen*", "logarithm*", "sqrt", "divisible",
        "factorial", "triangle*", "radius",
    ),
    "code": (
        "python", "javascript", "typescript", "java", "rust", "golang", "sql", "bash", "regex*",
        "algorithm*", "compile*", "debug*", "bug", "bugs", "exception*", "api", "apis", "json",
        "html", "css", "script", "scripts", "code", "coding", "database*", "def", "array*",
        "recursi*",
    ),
    "proof or derivation": (
        "prove*", "proof*", "derive*", "derivation*", "justify", "rigorous*", "show that",
        "step by", "explain why", "demonstrate that",
    ),
    "computation": (
        "calculate*", "compute*", "solve*", "estimate*", "optimi*", "minimi*", "maximi*",
        "simulat*", "implement*", "how many", "how much", "find the", "find all",
    ),
    "constraints": (
        "must", "exactly", "without", "ensure*", "constraint*", "requirement*", "assume*",
        "don't", "at least", "at most", "no more", "only use", "do not", "given that",
    ),
    "text to transform": (
        "summar*", "rewrite*", "rephrase*", "paraphrase*", "translate*", "proofread*", "grammar",
        "extract*", "classify", "categori*", "convert*", "reformat*", "shorten*", "below",
        "correct the", "the following", "given text", "this text", "this paragraph",
        "this sentence",
    ),
}  # fmt: skip
_EXACT = {w: cue for cue, words in _LEXICON.items() for w in words if not w.endswith("*")}
_PREFIXES = tuple((w[:-1], cue) for cue, words in _LEXICON.items() for w in words if w[-1] == "*")
_PHRASE_STARTS = frozenset(w.split()[0] for w in _EXACT if " " in w)
_WORD = re.compile(r"[a-z0-9']+")
_MATHS_SYMBOLS = ("=", "^", "√", "∫", "∑", "π", "≤", "≥", "\\frac", "\\sum", "\\int")
_CODE_SYMBOLS = ("```", "{", "}", "()", "=>", "#include", "</", "::", "->", "!=", "c++", "c#")
# Arithmetic between numbers or brackets ("3 + 4", "(x)^2"), and powers or equalities ("^2", "= 7").
_EQUATIONS = (re.compile(r"[\d)] ?[-+*/^=<>] ?[\d(]"), re.compile(r"[\^=] ?[-\d(]"))
_LIST_ITEM = re.compile(r"(?m)^\s*(?:\d+[.)]|[-*•])\s")
_LOOKUP = re.compile(r"^(?:what|who|when|where|which)(?:'s|\s+(?:is|are|was|were|did|does|do))\b")
_LOOKUP_MAX_CHARS = 120
_DIGITS = str.maketrans("", "", "0123456789")


def lexical_window(text: str) -> str:
    """At most the first and last `WINDOW_CHARS` characters of `text`."""
    if len(text) <= 2 * WINDOW_CHARS:
        return text
    return text[:WINDOW_CHARS] + "\n" + text[-WINDOW_CHARS:]


def _count(text: str, symbols: tuple[str, ...]) -> int:
    return sum(text.count(symbol) for symbol in symbols)


@lru_cache(maxsize=65_536)
def _cue_of(word: str) -> str | None:
    cue = _EXACT.get(word)
    if cue is None:
        cue = next((name for prefix, name in _PREFIXES if word.startswith(prefix)), None)
    return cue


def _word_cues(lower: str) -> Counter[str]:
    """How many words and two-word phrases of `lower` belong to each cue of `_LEXICON`."""
    found: Counter[str] = Counter()
    words = _WORD.findall(lower)
    for i, word in enumerate(words):
        cue = _cue_of(word)
        if cue is not None:
            found[cue] += 1
        if word in _PHRASE_STARTS and i + 1 < len(words):
            phrase = _EXACT.get(f"{word} {words[i + 1]}")
            if phrase is not None:
                found[phrase] += 1
    return found


class _Reading:
    """One prompt's window, read once for all cues."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.window = lexical_window(text)
        self.lower = self.window.lower()
        self.size = max(len(self.window), 1)
        self._words: Counter[str] | None = None

    @property
    def words(self) -> Counter[str]:
        if self._words is None:
            self._words = _word_cues(self.lower)
        return self._words


def _digits(r: _Reading) -> float:
    return (len(r.window) - len(r.window.translate(_DIGITS))) / r.size


def _non_ascii(r: _Reading) -> float:
    return (len(r.window) - len(r.window.encode("ascii", "ignore"))) / r.size


def _lookup(r: _Reading) -> float:
    short = len(r.text) <= _LOOKUP_MAX_CHARS
    return float(short and _LOOKUP.match(r.lower.lstrip()) is not None)


# Counts are log(1 + n); shares are in [0, 1].
_CUES: dict[str, Callable[[_Reading], float]] = {
    "maths": lambda r: math.log1p(r.words["maths"] + _count(r.lower, _MATHS_SYMBOLS)),
    "equations": lambda r: math.log1p(sum(len(p.findall(r.lower)) for p in _EQUATIONS)),
    "code": lambda r: math.log1p(r.words["code"] + _count(r.lower, _CODE_SYMBOLS)),
    "proof or derivation": lambda r: math.log1p(r.words["proof or derivation"]),
    "computation": lambda r: math.log1p(r.words["computation"]),
    "constraints": lambda r: math.log1p(r.words["constraints"]),
    "list items": lambda r: math.log1p(len(_LIST_ITEM.findall(r.window))),
    "questions": lambda r: math.log1p(r.window.count("?")),
    "digits": _digits,
    "non-English text": _non_ascii,
    "text to transform": lambda r: math.log1p(r.words["text to transform"]),
    "quick look-up": _lookup,
}
CUE_NAMES: tuple[str, ...] = tuple(_CUES)


def features(text: str, names: Sequence[str] = CUE_NAMES) -> npt.NDArray[np.float64]:
    """The cues `names` of `text`, in that order."""
    reading = _Reading(text)
    return np.array([_CUES[name](reading) for name in names], dtype=np.float64)
