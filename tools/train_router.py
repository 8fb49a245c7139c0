"""Train the complexity router's model, `common/llm/router_model.json`, bit for bit.

    make train-router            # .venv/bin/python -m tools.train_router [--data P] [--out P]

Data: `data/router-training/arena-bench-v1.jsonl` (Apache-2.0, see the README beside it). The
alpaca_eval part of the same public set is CC BY-NC 4.0: it is not vendored and never trained the
shipped weights; `bench/router.py --eval-data` uses it as an out-of-source test.

Procedure (`fit_router`), all NumPy, deterministic (fixed seed, coordinate descent in a fixed
order, no sampling):

1. Cues per prompt (`common.llm.learned.features`, the very code that serves); the target is the
   prompt's mean quality gap (strong minus weak) over its model pairs, weighted by its number of
   pairs: the score that ranks prompts by it is the one RouteLLM's APGR rewards.
2. Standardise; a ridge regression whose weights keep the sign each cue allows
   (`learned.Cue.sign`), with the penalty chosen from `L2_GRID` by the APGR of inner 5-fold
   cross-validation grouped by prompt.
3. Platt scaling (a, b) of those inner out-of-fold predictions against the rows'
   `strong_needed`, so the output is a probability.

The same procedure runs inside an outer 5-fold cross-validation grouped by prompt; its
out-of-fold probabilities are the held-out figures recorded in the artefact (APGR, CPT, Brier,
reliability) and the curve the thresholds per quality target come from (`thresholds`).
"""

from __future__ import annotations

import os

# Before NumPy loads OpenBLAS: one thread makes the solves deterministic whatever the machine, and
# on a 2-core machine shared with other jobs two threads only wait for each other (a 396 x 396
# solve took 7 ms on one thread, 340 ms on two, here).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from common.llm import learned
from tools import router_metrics

Array = npt.NDArray[np.float64]

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "router-training" / "arena-bench-v1.jsonl"
OUT = learned.ARTEFACT
VERSION = 2
FOLDS = 5
SEED = 15
L2_GRID = (0.1, 1.0, 10.0, 100.0, 1_000.0)
NEWTON_STEPS = 100
SWEEPS = 10_000
QUALITY_TARGETS = tuple(round(0.5 + 0.01 * i, 2) for i in range(51))


@dataclass(frozen=True)
class Row:
    """One (prompt, strong model, weak model) row of the training set."""

    source: str
    prompt_id: str
    prompt: str
    pair: str
    strong_quality: float
    weak_quality: float
    strong_needed: int


def load_rows(path: Path) -> list[Row]:
    """The rows of a pairs file (JSON Lines, the columns of data/router-training/README.md)."""
    rows = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            item = json.loads(line)
            rows.append(
                Row(
                    source=item["source"],
                    prompt_id=item["prompt_id"],
                    prompt=item["prompt"],
                    pair=item["pair"],
                    strong_quality=float(item["strong_quality"]),
                    weak_quality=float(item["weak_quality"]),
                    strong_needed=int(item["strong_needed"]),
                )
            )
    return rows


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Dataset:
    """Rows with one feature vector per distinct prompt."""

    rows: tuple[Row, ...]
    features: Array  # prompts x features
    row_prompt: npt.NDArray[np.intp]  # for each row, its prompt's index in `features`
    label: Array
    strong: Array
    weak: Array

    @classmethod
    def build(cls, rows: Sequence[Row]) -> Dataset:
        """Compute each distinct prompt's cues once (in order of first appearance)."""
        index: dict[str, int] = {}
        texts: list[str] = []
        for row in rows:
            if row.prompt_id not in index:
                index[row.prompt_id] = len(texts)
                texts.append(row.prompt)
        return cls(
            rows=tuple(rows),
            features=np.stack([learned.features(text) for text in texts]),
            row_prompt=np.array([index[row.prompt_id] for row in rows], dtype=np.intp),
            label=np.array([row.strong_needed for row in rows], dtype=np.float64),
            strong=np.array([row.strong_quality for row in rows]),
            weak=np.array([row.weak_quality for row in rows]),
        )

    def subset(self, prompts: npt.NDArray[np.intp]) -> Dataset:
        """The rows of the given prompts, renumbered."""
        keep = np.isin(self.row_prompt, prompts)
        renumber = np.full(len(self.features), -1, dtype=np.intp)
        renumber[prompts] = np.arange(len(prompts))
        return Dataset(
            rows=tuple(row for row, kept in zip(self.rows, keep, strict=True) if kept),
            features=self.features[prompts],
            row_prompt=renumber[self.row_prompt[keep]],
            label=self.label[keep],
            strong=self.strong[keep],
            weak=self.weak[keep],
        )

    def prompt_targets(self) -> tuple[Array, Array]:
        """Per prompt: its mean quality gap (strong minus weak) and its number of rows."""
        size = len(self.features)
        count = np.bincount(self.row_prompt, minlength=size).astype(np.float64)
        gap = np.bincount(self.row_prompt, weights=self.strong - self.weak, minlength=size)
        return gap / count, count

    def curve(self, prompt_scores: Array) -> router_metrics.Curve:
        """The PGR curve of routing by a score per prompt."""
        return router_metrics.pgr_curve(prompt_scores[self.row_prompt], self.strong, self.weak)


def prompt_folds(count: int, folds: int, seed: int) -> npt.NDArray[np.intp]:
    """A fold number per prompt: a seeded permutation dealt round-robin (grouped by prompt)."""
    fold = np.empty(count, dtype=np.intp)
    fold[np.random.default_rng(seed).permutation(count)] = np.arange(count) % folds
    return fold


def _sigmoid(z: Array) -> Array:
    out: Array = 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow for large |z|
    return out


def fit_logistic(x: Array, y: Array, weight: Array, l2: float) -> tuple[Array, float]:
    """Weighted logistic regression with an L2 penalty on the weights (not the intercept).

    Newton's method from zero (used for Platt scaling: one feature, 0/1 targets).
    """
    design = np.hstack([x, np.ones((len(x), 1))])
    penalty = np.full(design.shape[1], l2)
    penalty[-1] = 0.0
    beta = np.zeros(design.shape[1])
    for _ in range(NEWTON_STEPS):
        p = _sigmoid(design @ beta)
        gradient = design.T @ (weight * (p - y)) + penalty * beta
        hessian = (design * (weight * p * (1 - p))[:, None]).T @ design + np.diag(penalty)
        hessian[-1, -1] += 1e-9  # keeps the intercept's row solvable if every target is 0 or 1
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta[:-1], float(beta[-1])


def fit_signed_ridge(
    x: Array, y: Array, weight: Array, l2: float, signs: Array
) -> tuple[Array, float]:
    """Weighted ridge regression whose weights keep `signs` (+1 >= 0, -1 <= 0, 0 free).

    `x` must be centred on the weighted mean (so the intercept is the weighted mean of `y`).
    Cyclic coordinate descent from zero, clipping each weight to its allowed side: exact for
    this convex problem, and the same steps in the same order on every run.
    """
    intercept = float(np.average(y, weights=weight))
    residual = y - intercept
    beta = np.zeros(x.shape[1])
    curvature = (weight[:, None] * x * x).sum(axis=0)
    for _ in range(SWEEPS):
        largest = 0.0
        for j in range(x.shape[1]):
            old = beta[j]
            new = (float(x[:, j] @ (weight * residual)) + curvature[j] * old) / (curvature[j] + l2)
            new = max(new, 0.0) if signs[j] > 0 else min(new, 0.0) if signs[j] < 0 else new
            if new != old:
                residual -= x[:, j] * (new - old)
                beta[j] = new
                largest = max(largest, abs(new - old))
        if largest < 1e-12:
            break
    return beta, intercept


SIGNS = np.array([cue.sign for cue in learned.CUES], dtype=np.float64)


@dataclass(frozen=True)
class Fitted:
    """A trained router: standardisation, weights, Platt scaling, and the penalty chosen."""

    mean: Array
    scale: Array
    coef: Array  # on standardised cues
    intercept: float
    calibration: tuple[float, float]
    l2: float

    def predicted_gap(self, features: Array) -> Array:
        """The regression's predicted quality gap per row of `features` (uncalibrated)."""
        out: Array = ((features - self.mean) / self.scale) @ self.coef + self.intercept
        return out

    def probability(self, features: Array) -> Array:
        """Calibrated probability that the strong model is needed, per row of `features`."""
        a, b = self.calibration
        return _sigmoid(a * self.predicted_gap(features) + b)


def _fit_plain(data: Dataset, l2: float) -> tuple[Array, Array, Array, float]:
    y, weight = data.prompt_targets()
    mean = np.average(data.features, axis=0, weights=weight)
    scale = np.sqrt(np.average((data.features - mean) ** 2, axis=0, weights=weight))
    scale[scale == 0] = 1.0
    coef, intercept = fit_signed_ridge((data.features - mean) / scale, y, weight, l2, SIGNS)
    return mean, scale, coef, intercept


def _inner_predictions(data: Dataset, l2: float, fold: npt.NDArray[np.intp]) -> Array:
    predicted = np.empty(len(data.features))
    for k in range(FOLDS):
        train = np.nonzero(fold != k)[0]
        mean, scale, coef, intercept = _fit_plain(data.subset(train), l2)
        test = fold == k
        predicted[test] = ((data.features[test] - mean) / scale) @ coef + intercept
    return predicted


def fit_router(data: Dataset, seed: int = SEED) -> Fitted:
    """Choose the penalty by inner grouped CV (APGR), fit on all of `data`, calibrate (Platt)."""
    fold = prompt_folds(len(data.features), FOLDS, seed)
    best: tuple[float, float, Array] | None = None
    for l2 in L2_GRID:
        predicted = _inner_predictions(data, l2, fold)
        apgr = data.curve(predicted).apgr()
        if best is None or apgr > best[0] + 1e-12:
            best = (apgr, l2, predicted)
    assert best is not None
    _, l2, predicted = best
    rows = predicted[data.row_prompt][:, None]
    a, b = fit_logistic(rows, data.label, np.ones(len(data.label)), 0.0)
    mean, scale, coef, intercept = _fit_plain(data, l2)
    return Fitted(mean, scale, coef, intercept, (float(a[0]), b), l2)


def cross_validated(data: Dataset, seed: int = SEED) -> Array:
    """Out-of-fold calibrated probabilities per prompt (outer folds grouped by prompt)."""
    fold = prompt_folds(len(data.features), FOLDS, seed + 1)
    out = np.empty(len(data.features))
    for k in range(FOLDS):
        fitted = fit_router(data.subset(np.nonzero(fold != k)[0]), seed)
        out[fold == k] = fitted.probability(data.features[fold == k])
    return out


def thresholds(data: Dataset, probability: Array, target: float) -> tuple[float, float, float]:
    """(nano, full, PGR needed) cut-offs on held-out probabilities for one quality target.

    The target is a share of the full (strong) model's quality to keep: routed quality
    Q(c) >= target * Q_strong, which is PGR(c) >= (target * Q_strong - Q_weak) / (Q_strong -
    Q_weak). full: the fewest strong calls from which the PGR curve stays at or above that; the
    prompts scored at or above the last one routed strong go to the full model. nano: the
    largest set of lowest-scored prompts on which the weak model alone keeps `target` of the
    strong model's quality (mean over their rows); the prompts below the cut-off go to nano.
    """
    strong, weak = float(data.strong.mean()), float(data.weak.mean())
    needed = (target * strong - weak) / (strong - weak)
    curve = data.curve(probability)
    below = np.nonzero(curve.pgr < needed - 1e-12)[0]
    first = 0 if below.size == 0 else int(below[-1]) + 1
    # No strong call needed: a cut-off no probability reaches.
    full = float(curve.threshold[first]) if first else 1.0
    scores = probability[data.row_prompt]
    nano = 0.0
    # Candidate cut-offs: each score below the full cut-off, then the full cut-off itself (all
    # prompts not sent to full).
    for cut in np.append(np.unique(scores[scores < full]), full):
        chosen = scores < cut
        if chosen.any() and data.weak[chosen].mean() >= target * data.strong[chosen].mean():
            nano = float(cut)
    return nano, full, needed


def _round(value: float) -> float:
    # Six significant digits: far below the model's error, and stable text for the diff.
    return float(f"{value:.6g}")


def _rounded(values: Array) -> list[float]:
    return [_round(float(v)) for v in values]


def held_out_metrics(data: Dataset, probability: Array) -> dict[str, Any]:
    """APGR, CPT(50/80/95%), Brier (and the base rate's), ECE and reliability of held-out output."""
    curve = data.curve(probability)
    rows = probability[data.row_prompt]
    base = np.full(len(rows), data.label.mean())
    return {
        "apgr": _round(curve.apgr()),
        "cpt_50": _round(curve.cpt(0.5)),
        "cpt_80": _round(curve.cpt(0.8)),
        "cpt_95": _round(curve.cpt(0.95)),
        "brier": _round(router_metrics.brier(rows, data.label)),
        "brier_base_rate": _round(router_metrics.brier(base, data.label)),
        "ece": _round(router_metrics.expected_calibration_error(rows, data.label)),
        "reliability": [
            {"predicted": _round(p), "observed": _round(o), "rows": n}
            for p, o, n in router_metrics.reliability(rows, data.label)
        ],
    }


def artefact(data: Dataset, data_path: Path) -> dict[str, Any]:
    """The whole artefact: trained model, thresholds per quality target, held-out metrics."""
    held_out = cross_validated(data)
    fitted = fit_router(data)
    # Fold the standardisation into the weights: serving computes coef . (x - mean) only.
    model = {
        "mean": _rounded(fitted.mean),
        "coef": _rounded(fitted.coef / fitted.scale),
        "intercept": _round(fitted.intercept),
        "calibration": {"a": _round(fitted.calibration[0]), "b": _round(fitted.calibration[1])},
    }
    table = []
    rows = held_out[data.row_prompt]
    for target in QUALITY_TARGETS:
        nano, full, needed = thresholds(data, held_out, target)
        table.append(
            {
                "quality_target": target,
                "nano": _round(nano),
                "full": _round(full),
                "held_out_pgr_needed": _round(needed),
                "held_out_full_share": _round(float(np.mean(rows >= full))),
                "held_out_nano_share": _round(float(np.mean(rows < nano))),
            }
        )
    try:
        shown_path = data_path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        shown_path = data_path.name
    return {
        "format": learned.FORMAT,
        "version": VERSION,
        "description": (
            "P(strong model needed) for a prompt: a ridge regression of the quality gap over "
            "sign-constrained lexical cues, then Platt scaling (common/llm/learned.py)"
        ),
        "training_data": {
            "path": shown_path,
            "sha256": file_sha256(data_path),
            "rows": len(data.rows),
            "prompts": len(data.features),
            "sources": sorted({row.source for row in data.rows}),
            "licence": "Apache-2.0 (lmarena/arena-hard-auto); see data/router-training/README.md",
        },
        "trainer": {
            "script": "tools/train_router.py",
            "seed": SEED,
            "folds": FOLDS,
            "l2_grid": list(L2_GRID),
            "l2": fitted.l2,
        },
        "features": {
            "cues": learned.cue_table(),
            "lexical_window_chars": learned.LEXICAL_WINDOW_CHARS,
        },
        "model": model,
        "model_sha256": learned.canonical_digest(model),
        "thresholds": table,
        "held_out": {
            "method": f"{FOLDS}-fold cross-validation grouped by prompt (outer), whole procedure",
            **held_out_metrics(data, held_out),
        },
    }


def write(document: dict[str, Any], path: Path) -> None:
    """The artefact as stable JSON text (two-space indent, one number per line)."""
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def train(data_path: Path = DATA, out: Path = OUT) -> dict[str, Any]:
    """Train from `data_path` and write the artefact to `out`; returns it."""
    data = Dataset.build(load_rows(data_path))
    document = artefact(data, data_path)
    write(document, out)
    return document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    document = train(args.data, args.out)
    held = document["held_out"]
    print(
        f"wrote {args.out} (version {document['version']}, "
        f"{args.out.stat().st_size:,} bytes, model sha256 {document['model_sha256'][:12]}): "
        f"held-out APGR {held['apgr']}, CPT(95%) {held['cpt_95']}, Brier {held['brier']} "
        f"(base rate {held['brier_base_rate']}), ECE {held['ece']}, l2 {document['trainer']['l2']}"
    )


if __name__ == "__main__":
    main()
