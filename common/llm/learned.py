"""The learned complexity router (v3): a length prior plus a learned residual from the wording.

A prompt's score is the predicted gain of the strong model over the weak one, in two parts:

- **length prior**: a slope times the log of the prompt's length (characters, or o200k_base
  tokens estimated from a fixed window; the trainer picks the measure). The one cue whose
  direction agreed on every public source: longer requests gained more from the strong model.
- **residual**: the mean, over the word pieces of a fixed window of the prompt (at most its first
  `HEAD_CHARS` and last `TAIL_CHARS` characters), of one learned weight per word piece of
  all-MiniLM-L6-v2's vocabulary (a linear model over the static, model2vec-style embedding of the
  window, folded into a table of 30,522 numbers), plus the lexical cues of `common.llm.cues`
  that the data kept. Each direction is learned per source and kept only where every source
  agrees (tools/train_router.py), so no sign is chosen by hand.

Platt scaling turns the score into P(strong model needed). The cost is flat in the prompt's
length: the window is tokenised once (MiniLM's WordPiece, and o200k_base when the length measure
is tokens), a table look-up, a mean and a dot product; no transformer pass, NumPy only.

Everything learned is in `router_model.json` (weights, cut-offs per quality target, held-out
figures) and `router_tokens.npy` (the word-piece table, float32), written by `make train-router`
from the vendored data in `data/router-training/`; the loader refuses files that do not match
each other or this code. Small talk (a greeting or thanks, nothing asked: `is_small_talk`) never
reaches the model: the data holds no such prompt, and no model above nano is needed for it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

import common.llm.cues as lexical
from common.llm.base import Message

ARTEFACT = Path(__file__).with_name("router_model.json")
TOKEN_TABLE = ARTEFACT.with_name("router_tokens.npy")
FORMAT = "raptorflow-router-model/3"
HEAD_CHARS = 1_000
TAIL_CHARS = 500
VOCABULARY = 30_522  # all-MiniLM-L6-v2's word pieces
UNKNOWN_PIECE = 100  # [UNK]: the piece of an empty window

LengthMeasure = Literal["chars", "tokens"]

_SMALL_TALK = frozenset((
    "hi", "hello", "hey", "hiya", "yo", "thanks", "thank", "you", "so", "much", "very", "good",
    "great", "nice", "cool", "ok", "okay", "morning", "afternoon", "evening", "night", "bye",
    "goodbye", "cheers", "lol", "haha", "yes", "no", "sure", "fine", "how", "are", "what's",
    "whats", "up", "doing", "have", "a", "day", "there", "all", "the", "best", "see", "later",
    "again", "awesome", "perfect", "got", "it", "appreciate", "wonderful",
))  # fmt: skip
_SMALL_TALK_MAX_WORDS = 8
_SMALL_TALK_MAX_CHARS = 120


class RouterModelError(RuntimeError):
    """The router's artefact is missing, altered, or does not match this code's features."""


def prompt_text(messages: Sequence[Message]) -> str:
    """The text the router reads: the user turns (the request), or every turn if none is."""
    user = [message["content"] for message in messages if message["role"] == "user"]
    return "\n".join(user or [message["content"] for message in messages])


def window(text: str) -> str:
    """At most the first `HEAD_CHARS` and the last `TAIL_CHARS` characters of `text`."""
    if len(text) <= HEAD_CHARS + TAIL_CHARS:
        return text
    return text[:HEAD_CHARS] + "\n" + text[-TAIL_CHARS:]


def is_small_talk(text: str) -> bool:
    """A greeting, thanks or acknowledgement with nothing asked ("hi, how are you?", "thanks!")."""
    if len(text) > _SMALL_TALK_MAX_CHARS:
        return False  # also keeps the check's cost flat
    words = re.findall(r"[a-z']+", text.lower())
    if len(words) > _SMALL_TALK_MAX_WORDS or re.search(r"\d", text):
        return False
    return all(word in _SMALL_TALK for word in words)


_tokenizer_lock = threading.Lock()
_tokenizer: Any = None


def _word_pieces() -> Any:
    """MiniLM's WordPiece tokenizer (the file `common.search.embeddings` ships and pins)."""
    global _tokenizer
    with _tokenizer_lock:
        if _tokenizer is None:
            from tokenizers import Tokenizer

            from common.search import embeddings

            data = embeddings.TOKENIZER.read_bytes()
            if hashlib.sha256(data).hexdigest() != embeddings.TOKENIZER_SHA256:
                raise RouterModelError(f"{embeddings.TOKENIZER} is not the pinned tokenizer")
            tokenizer = Tokenizer.from_str(data.decode("utf-8"))
            tokenizer.no_truncation()  # the window is the bound, not the tokenizer's 128
            tokenizer.no_padding()
            _tokenizer = tokenizer
        return _tokenizer


def word_pieces(text: str) -> list[int]:
    """The MiniLM word-piece ids of `text`'s window (no [CLS]/[SEP]); [UNK] if it has none."""
    ids: list[int] = _word_pieces().encode(window(text), add_special_tokens=False).ids
    return ids or [UNKNOWN_PIECE]


def log_length(text: str, measure: LengthMeasure) -> float:
    """log(1 + length) in characters, or in o200k_base tokens estimated from the window.

    Tokens are counted in the window and scaled by the share of the text it holds, so a
    100k-token prompt costs what a 400-token one does.
    """
    if measure == "chars" or not text:
        return math.log1p(len(text))
    from common.llm.tokens import count_tokens

    part = window(text)
    return math.log1p(count_tokens(part) * len(text) / len(part))


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
    # Part -> log-odds points it added against the training prompts' average, largest first.
    contributions: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class RouterModel:
    """The trained model of `router_model.json` and `router_tokens.npy` (see `load`)."""

    version: int
    length_measure: LengthMeasure
    length_slope: float
    length_mean: float
    table: npt.NDArray[np.float32] | None  # per word piece: its weight (None: no residual)
    wording_mean: float  # the training prompts' mean residual from the table
    cue_names: tuple[str, ...]  # the lexical cues the data kept (may be none)
    cue_weights: npt.NDArray[np.float64]
    cue_means: npt.NDArray[np.float64]
    calibration: tuple[float, float]  # Platt: p = sigmoid(a * score + b)
    thresholds: tuple[Thresholds, ...]  # by quality target, ascending
    data_sha256: dict[str, str]

    def parts(self, text: str) -> dict[str, float]:
        """Each part of the score for `text`, measured from the training prompts' average."""
        found = {
            "length": self.length_slope * (log_length(text, self.length_measure) - self.length_mean)
        }
        if self.table is not None:
            wording = float(self.table[word_pieces(text)].mean(dtype=np.float64))
            found["wording"] = wording - self.wording_mean
        if self.cue_names:
            values = lexical.features(text, self.cue_names)
            for name, weight, value, mean in zip(
                self.cue_names, self.cue_weights, values, self.cue_means, strict=True
            ):
                found[name] = float(weight * (value - mean))
        return found

    def score(self, text: str) -> Scored:
        """The calibrated probability for one prompt's text, with each part's share of it."""
        a, b = self.calibration
        parts = self.parts(text)
        z = a * (sum(parts.values()) + self.centre) + b
        probability = 1.0 / (1.0 + math.exp(-z))
        named = sorted(((name, value * a) for name, value in parts.items()), key=_largest)
        return Scored(probability=probability, contributions=tuple(named))

    @property
    def centre(self) -> float:
        """The score of the training prompts' average (the parts are measured from it)."""
        cues = float(self.cue_weights @ self.cue_means) if self.cue_names else 0.0
        return self.length_slope * self.length_mean + self.wording_mean + cues

    def thresholds_for(self, quality_target: float) -> Thresholds:
        """The cut-offs of the smallest tabulated target at or above `quality_target`."""
        for entry in self.thresholds:
            if entry.quality_target >= quality_target - 1e-9:
                return entry
        return self.thresholds[-1]


def _largest(item: tuple[str, float]) -> tuple[float, str]:
    return (-abs(item[1]), item[0])


def canonical_digest(model: dict[str, Any]) -> str:
    """sha256 of the artefact's `model` section as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(model, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def table_bytes(table: npt.NDArray[np.float32]) -> bytes:
    """The word-piece table as the bytes of a .npy file (little-endian float32, no pickle)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(table, dtype="<f4"), allow_pickle=False)
    return buffer.getvalue()


def features_table() -> dict[str, Any]:
    """What the artefact records of the features, to check it was made for this code."""
    return {
        "head_chars": HEAD_CHARS,
        "tail_chars": TAIL_CHARS,
        "word_pieces": "all-MiniLM-L6-v2 WordPiece (common/search/all-MiniLM-L6-v2.tokenizer.json)",
        "vocabulary": VOCABULARY,
        "cues": list(lexical.CUE_NAMES),
    }


def _table(path: Path, digest: str | None) -> npt.NDArray[np.float32] | None:
    """The word-piece table beside `path`, checked against the model's digest (None: none)."""
    if digest is None:
        return None
    file = path.with_name(TOKEN_TABLE.name)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise RouterModelError(f"router model {path}: {exc}") from exc
    if hashlib.sha256(raw).hexdigest() != digest:
        raise RouterModelError(
            f"router model {path}: {file.name} does not match the model (retrain: make "
            "train-router)"
        )
    table = np.load(io.BytesIO(raw), allow_pickle=False)
    if table.shape != (VOCABULARY,):
        raise RouterModelError(f"router model {path}: {file.name} has shape {table.shape}")
    return np.asarray(table, dtype=np.float32)


def load(path: Path = ARTEFACT) -> RouterModel:
    """Read and check an artefact and its word-piece table (beside it, `router_tokens.npy`).

    Raises:
        RouterModelError: a file is missing or altered, or they were made for other features.
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
    if document["features"] != features_table():
        raise RouterModelError(
            f"router model {path} was trained on other features: retrain it with make train-router"
        )
    table = _table(path, model["token_table_sha256"])
    kept = model["cues"]
    if any(c["name"] not in lexical.CUE_NAMES for c in kept):
        raise RouterModelError(f"router model {path} does not fit this code's features")
    thresholds = tuple(
        Thresholds(quality_target=t["quality_target"], nano=t["nano"], full=t["full"])
        for t in document["thresholds"]
    )
    targets = [t.quality_target for t in thresholds]
    if not thresholds or targets != sorted(targets) or any(t.nano > t.full for t in thresholds):
        raise RouterModelError(f"router model {path} has inconsistent thresholds")
    return RouterModel(
        version=int(document["version"]),
        length_measure=model["length"]["measure"],
        length_slope=float(model["length"]["slope"]),
        length_mean=float(model["length"]["mean"]),
        table=table,
        wording_mean=float(model["wording_mean"]),
        cue_names=tuple(c["name"] for c in kept),
        cue_weights=np.array([c["weight"] for c in kept], dtype=np.float64),
        cue_means=np.array([c["mean"] for c in kept], dtype=np.float64),
        calibration=(float(model["calibration"]["a"]), float(model["calibration"]["b"])),
        thresholds=thresholds,
        data_sha256={str(k): str(v) for k, v in document["training_data"]["sha256"].items()},
    )
