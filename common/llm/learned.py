"""The learned complexity router: a prompt's cues of difficulty, and the model that scores them.

A prompt becomes a short vector of lexical cues (`CUES`), read from at most its first and last
`LEXICAL_WINDOW_CHARS` characters, so the cost does not grow with the prompt: a few regular
expressions, about 0.1 ms. Each cue has a direction fixed before training (`Cue.sign`): maths,
code, proofs, computations, constraints and several questions can only raise the need for a
strong model; length beyond a couple of sentences, text to transform and quick look-ups can only
lower it. The two judges of the training data disagree on almost everything else (decision
003), so a cue that the data would turn the other way gets no weight rather than the wrong one.

A ridge regression of the prompt's mean quality gap (strong minus weak) over those cues, fitted
with the signs as constraints, then Platt scaling, gives the calibrated probability that the
strong model is needed. Its weights, the cues' means, the cut-offs per quality target and the
held-out metrics are in `router_model.json`, written by `tools/train_router.py`
(`make train-router`) from the vendored Apache-2.0 data in `data/router-training/`. Serving needs
NumPy only: no embedding model, no training library.

Small talk (a greeting or thanks, nothing asked: `is_small_talk`) never reaches the model: the
data holds no such prompt, and no model is needed above nano to answer it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from common.llm.base import Message

ARTEFACT = Path(__file__).with_name("router_model.json")
FORMAT = "raptorflow-router-model/2"
LEXICAL_WINDOW_CHARS = 2_000


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
# Characters from which a prompt counts as long (about 50 tokens: a couple of sentences, beyond
# which it starts to carry material to work from rather than only a request).
_LONG_FROM_CHARS = 200
_DIGITS = str.maketrans("", "", "0123456789")

_SMALL_TALK = frozenset((
    "hi", "hello", "hey", "hiya", "yo", "thanks", "thank", "you", "so", "much", "very", "good",
    "great", "nice", "cool", "ok", "okay", "morning", "afternoon", "evening", "night", "bye",
    "goodbye", "cheers", "lol", "haha", "yes", "no", "sure", "fine", "how", "are", "what's",
    "whats", "up", "doing", "have", "a", "day", "there", "all", "the", "best", "see", "later",
    "again", "awesome", "perfect", "got", "it", "appreciate", "wonderful",
))  # fmt: skip
_SMALL_TALK_MAX_WORDS = 8
_SMALL_TALK_MAX_CHARS = 120


@dataclass(frozen=True)
class Cue:
    """One lexical feature. `sign`: +1 may only raise the score, -1 only lower it, 0 either."""

    name: str
    sign: int


CUES: tuple[Cue, ...] = (
    Cue("long prompt", -1),
    Cue("maths", +1),
    Cue("equations", +1),
    Cue("code", +1),
    Cue("proof or derivation", +1),
    Cue("computation", +1),
    Cue("constraints", +1),
    Cue("list items", +1),
    Cue("questions", +1),
    Cue("digits", +1),
    Cue("non-English text", +1),
    Cue("text to transform", -1),
    Cue("quick look-up", -1),
)
CUE_NAMES: tuple[str, ...] = tuple(cue.name for cue in CUES)


class RouterModelError(RuntimeError):
    """The router's artefact is missing, altered, or does not match this code's features."""


def prompt_text(messages: Sequence[Message]) -> str:
    """The text the router reads: the user turns (the request), or every turn if none is."""
    user = [message["content"] for message in messages if message["role"] == "user"]
    return "\n".join(user or [message["content"] for message in messages])


def lexical_window(text: str) -> str:
    """At most the first and last `LEXICAL_WINDOW_CHARS` characters of `text`."""
    if len(text) <= 2 * LEXICAL_WINDOW_CHARS:
        return text
    return text[:LEXICAL_WINDOW_CHARS] + "\n" + text[-LEXICAL_WINDOW_CHARS:]


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


def features(text: str) -> npt.NDArray[np.float64]:
    """The `CUES` of `text`, in that order; counts are log(1 + n), shares are in [0, 1].

    "long prompt" is log(1 + characters) above that of 200 characters, 0 below: in both sources
    of the data long prompts (pasted material, long specifications) needed the strong model
    less, but nothing says that a short request needs it more ("Name a fruit.").
    """
    window = lexical_window(text)
    lower = window.lower()
    size = max(len(window), 1)
    words = _word_cues(lower)
    digits = len(window) - len(window.translate(_DIGITS))
    non_ascii = len(window) - len(window.encode("ascii", "ignore"))
    lookup = len(text) <= _LOOKUP_MAX_CHARS and _LOOKUP.match(lower.lstrip()) is not None
    return np.array(
        [
            max(0.0, math.log1p(len(text)) - math.log1p(_LONG_FROM_CHARS)),
            math.log1p(words["maths"] + _count(lower, _MATHS_SYMBOLS)),
            math.log1p(sum(len(pattern.findall(lower)) for pattern in _EQUATIONS)),
            math.log1p(words["code"] + _count(lower, _CODE_SYMBOLS)),
            math.log1p(words["proof or derivation"]),
            math.log1p(words["computation"]),
            math.log1p(words["constraints"]),
            math.log1p(len(_LIST_ITEM.findall(window))),
            math.log1p(window.count("?")),
            digits / size,
            non_ascii / size,
            math.log1p(words["text to transform"]),
            float(lookup),
        ]
    )


def is_small_talk(text: str) -> bool:
    """A greeting, thanks or acknowledgement with nothing asked ("hi, how are you?", "thanks!")."""
    if len(text) > _SMALL_TALK_MAX_CHARS:
        return False  # also keeps the check's cost flat
    words = re.findall(r"[a-z']+", text.lower())
    if len(words) > _SMALL_TALK_MAX_WORDS or re.search(r"\d", text):
        return False
    return all(word in _SMALL_TALK for word in words)


@dataclass(frozen=True)
class Thresholds:
    """Score cut-offs for one quality target: below `nano` is nano, from `full` up is full."""

    quality_target: float
    nano: float
    full: float


@dataclass(frozen=True)
class Scored:
    """A prompt's calibrated probability that the strong model is needed, and why."""

    probability: float
    # Cue -> log-odds points against a plain short request, largest |value| first; nonzero only.
    contributions: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class RouterModel:
    """The trained model of `router_model.json` (see `load`)."""

    version: int
    mean: npt.NDArray[np.float64]
    coef: npt.NDArray[np.float64]  # per raw cue: the standardised weight over its spread
    intercept: float
    calibration: tuple[float, float]  # Platt: p = sigmoid(a * predicted gap + b)
    thresholds: tuple[Thresholds, ...]  # by quality target, ascending
    data_sha256: str

    def score(self, cues: npt.NDArray[np.float64]) -> Scored:
        """The calibrated probability for one cue vector, with each cue's part in it.

        A cue's part is measured from a plain short request (every cue 0), so only the cues
        the prompt has are named: "digits +0.20" means its digits added 0.20 to the log-odds.
        """
        parts = self.coef * cues
        a, b = self.calibration
        z = a * (float(parts.sum() - self.coef @ self.mean) + self.intercept) + b
        probability = 1.0 / (1.0 + math.exp(-z))
        named = [
            (name, float(part) * a) for name, part in zip(CUE_NAMES, parts, strict=True) if part
        ]
        named.sort(key=lambda item: (-abs(item[1]), item[0]))
        return Scored(probability=probability, contributions=tuple(named))

    def thresholds_for(self, quality_target: float) -> Thresholds:
        """The cut-offs of the smallest tabulated target at or above `quality_target`."""
        for entry in self.thresholds:
            if entry.quality_target >= quality_target - 1e-9:
                return entry
        return self.thresholds[-1]


def canonical_digest(model: dict[str, Any]) -> str:
    """sha256 of the artefact's `model` section as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(model, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def cue_table() -> list[dict[str, Any]]:
    """The cues as the artefact records them (name and sign), to check it was made for them."""
    return [{"name": cue.name, "sign": cue.sign} for cue in CUES]


def load(path: Path = ARTEFACT) -> RouterModel:
    """Read and check an artefact: its format, its own digest, and that its cues are ours.

    Raises:
        RouterModelError: the file is missing, altered, or made for other cues.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RouterModelError(f"router model {path} cannot be read: {exc}") from exc
    if document.get("format") != FORMAT:
        raise RouterModelError(
            f"router model {path} has format {document.get('format')!r}, this code reads {FORMAT!r}"
        )
    model = document["model"]
    digest = canonical_digest(model)
    if digest != document.get("model_sha256"):
        raise RouterModelError(
            f"router model {path}: its model section has sha256 {digest}, the file records "
            f"{document.get('model_sha256')}: the weights were altered (retrain: make train-router)"
        )
    found = document["features"]
    if found["cues"] != cue_table() or found["lexical_window_chars"] != LEXICAL_WINDOW_CHARS:
        raise RouterModelError(
            f"router model {path} was trained on other features "
            f"({[cue['name'] for cue in found['cues']]}): retrain it with make train-router"
        )
    mean = np.asarray(model["mean"], dtype=np.float64)
    coef = np.asarray(model["coef"], dtype=np.float64)
    if mean.shape != (len(CUES),) or coef.shape != (len(CUES),):
        raise RouterModelError(f"router model {path} has {coef.size} weights, expected {len(CUES)}")
    thresholds = tuple(
        Thresholds(quality_target=t["quality_target"], nano=t["nano"], full=t["full"])
        for t in document["thresholds"]
    )
    targets = [t.quality_target for t in thresholds]
    if not thresholds or targets != sorted(targets) or any(t.nano > t.full for t in thresholds):
        raise RouterModelError(f"router model {path} has inconsistent thresholds")
    return RouterModel(
        version=int(document["version"]),
        mean=mean,
        coef=coef,
        intercept=float(model["intercept"]),
        calibration=(float(model["calibration"]["a"]), float(model["calibration"]["b"])),
        thresholds=thresholds,
        data_sha256=str(document["training_data"]["sha256"]),
    )
