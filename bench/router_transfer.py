"""Does anything beyond length carry from one source to another? The second search of issue 21.

Decision 003 ("what was tried") reports these figures. Every score is a length prior (o200k_base
tokens, the within-source slope of `tools/train_router.py`) plus a residual, and every figure is
an APGR with the source left out, as `bench/router.py` measures it.

1. Local residuals over the window's static MiniLM embedding (the mean of its word pieces' rows,
   centred on the training prompts' mean; cosine similarity): k nearest neighbours' residuals;
   the same, used only where the prompt is as close to the training prompts as the typical
   training prompt is to the others (the closeness gate: a mixture that falls back to length
   where the training data has nothing near); a Gaussian kernel over every training prompt with
   a prior of zero (far prompts get nothing); and a per-prompt consensus of per-source ridge
   regressions (a residual only where every training source's model agrees on its sign, at the
   smallest size). For each family: its grid with each source left out, then the nested figure
   (settings chosen by leave-one-source-out on the other sources, "off" included), as
   `bench/router.py` scores the shipped procedure, by two rules: the best mean (the trainer's)
   and "no harm" (only settings at least as good as length only on every other source). The
   gated neighbours again with the window cut three other ways, to see whether the nested
   verdict survives a change nobody tuned, and whether, trained on all four sources, the gate
   would open for ten marketing requests.
2. Transfer: a ridge residual (embedding + cues) fitted on one source, applied to each other
   one; on the diagonal, 5-fold cross-validation within the source.
3. Model pairs: on MMLU-Pro's three origins, the correlation between the two families' gains
   (Gemini 1.5 Pro over Flash, Llama 3.1 70B over 8B) on the same questions; each family's rows
   routed by length and by the other family's actual gain; and a 5-fold ridge fitted on one
   family's gains, applied to each; on arena-bench-v1, the same for two halves of its 14 pairs
   with no model in common. With `--theoremqa GIT_DIR` (a clone of wenhuchen/TheoremQA,
   MIT; nothing downloaded), a third family on TheoremQA's questions: the per-question results
   of GPT-4 and ChatGPT (and Claude) answering them without options, published there.
4. Training targets: the shipped trainer's nested figure (its grid, its agreement rule) when
   it learns another target than the mean gain: wins only (the strong model right and the weak
   one wrong, losses ignored), the gain's rank within its source, or one MMLU-Pro family's gain.

    .venv/bin/python -m bench.router_transfer [--theoremqa GIT_DIR]   # about two minutes
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see tools/train_router.py

import argparse
import json
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from common.llm import learned
from tools import router_metrics, train_router
from tools.train_router import Corpus, Settings, Trainer

Array = npt.NDArray[np.float64]
Index = npt.NDArray[np.intp]
Method = Callable[[Sequence[str], str, tuple[float, ...]], Array]

SHRINK = 10.0  # prior weight of a zero residual, in units of (similarity-weighted) neighbours
FOLDS = 5


def _unit(rows: Array) -> Array:
    centred = rows - rows.mean(axis=0)
    out: Array = centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)
    return out


@dataclass
class Sources:
    """The corpus split by source, with the standardised targets and the cosine similarities."""

    corpus: Corpus
    trainer: Trainer
    index: dict[str, Index]
    target: Array  # per prompt: the strong model's mean gain, standardised within its source
    length: Array  # per prompt: log(1 + tokens)
    features: Array  # per prompt: standardised embedding and cues (the trainer's columns)
    similarity: npt.NDArray[np.float32]

    @classmethod
    def build(cls, corpus: Corpus, embedding: Array | None = None) -> Sources:
        """Split `corpus`; `embedding` replaces the window's static embedding for similarity."""
        index = {g: np.nonzero(corpus.group == g)[0] for g in corpus.groups}
        gap = corpus.gap()
        target = np.zeros(len(gap))
        for rows in index.values():
            target[rows] = (gap[rows] - gap[rows].mean()) / (gap[rows].std() or 1.0)
        if embedding is None:
            embedding = corpus.residual[:, : train_router.EMBEDDING]
        unit = _unit(embedding)
        return cls(
            corpus=corpus,
            trainer=Trainer(corpus),
            index=index,
            target=target,
            length=corpus.lengths["tokens"],
            features=corpus.residual,
            similarity=(unit @ unit.T).astype(np.float32),
        )

    @property
    def groups(self) -> list[str]:
        """The sources, sorted."""
        return self.corpus.groups

    def apgr(self, score: Array, group: str) -> float:
        """APGR of one source's rows under a score per prompt."""
        return self.corpus.curve(score, self.index[group]).apgr()

    def slope(self, groups: Sequence[str]) -> float:
        """The trainer's within-source length slope on `groups`."""
        return self.trainer.fit(groups, Settings("tokens", 1.0, 0.0)).slope

    def residual(self, groups: Sequence[str], slope: float) -> Array:
        """What the length prior leaves of the target, on `groups`' prompts (NaN elsewhere)."""
        out = np.full(len(self.length), np.nan)
        for g in groups:
            rows = self.index[g]
            out[rows] = self.target[rows] - slope * (self.length[rows] - self.length[rows].mean())
        return out

    def pool(self, groups: Sequence[str]) -> Index:
        """The prompts of `groups`, in order."""
        return np.concatenate([self.index[g] for g in groups])

    def score(self, groups: Sequence[str], held: str, residual: Array, weight: float) -> Array:
        """Length prior (fitted on `groups`) plus `weight` times a residual, on `held`'s rows."""
        rows = self.index[held]
        out = np.full(len(self.length), np.nan)
        out[rows] = self.slope(groups) * self.length[rows] + weight * residual
        return out


class Local:
    """The local and consensus residuals of section 1 (each a `Method`)."""

    def __init__(self, sources: Sources) -> None:
        self.s = sources
        self._closeness = cache(self._training_closeness)

    def _neighbours(
        self, groups: Sequence[str], held: str, k: int
    ) -> tuple[Index, Index, npt.NDArray[np.float32]]:
        pool = self.s.pool(groups)
        similarity = self.s.similarity[np.ix_(self.s.index[held], pool)]
        top = np.argpartition(-similarity, k, axis=1)[:, :k]
        return pool, top, np.take_along_axis(similarity, top, axis=1)

    def _training_closeness(self, groups: tuple[str, ...], k: int) -> npt.NDArray[np.float32]:
        """Each training prompt's mean similarity to its k nearest other training prompts."""
        pool = self.s.pool(groups)
        similarity = self.s.similarity[np.ix_(pool, pool)].copy()
        np.fill_diagonal(similarity, -1.0)
        top = np.argpartition(-similarity, k, axis=1)[:, :k]
        out: npt.NDArray[np.float32] = np.take_along_axis(similarity, top, axis=1).mean(axis=1)
        return out

    def neighbours(self, groups: Sequence[str], held: str, hp: tuple[float, ...]) -> Array:
        """k nearest neighbours' residuals, shrunk to 0; gated by closeness if a quantile is
        given (hp: k, weight, gate quantile or -1 for none)."""
        k, weight, quantile = int(hp[0]), hp[1], hp[2]
        slope = self.s.slope(groups)
        known = self.s.residual(groups, slope)
        pool, top, similarity = self._neighbours(groups, held, k)
        weights = np.maximum(similarity, 0.0).astype(np.float64)
        guess = (weights * known[pool][top]).sum(axis=1) / (weights.sum(axis=1) + SHRINK)
        if quantile >= 0:
            closeness = self._closeness(tuple(groups), k)
            guess *= similarity.mean(axis=1) >= np.quantile(closeness, quantile)
        return self.s.score(groups, held, guess, weight)

    def kernel(self, groups: Sequence[str], held: str, hp: tuple[float, ...]) -> Array:
        """A Gaussian kernel over every training prompt with a zero prior (hp: width, prior,
        weight): a prompt far from all of them gets no residual."""
        width, prior, weight = hp
        slope = self.s.slope(groups)
        pool = self.s.pool(groups)
        similarity = self.s.similarity[np.ix_(self.s.index[held], pool)].astype(np.float64)
        kernel = np.exp((similarity - 1.0) / width)
        guess = kernel @ self.s.residual(groups, slope)[pool] / (kernel.sum(axis=1) + prior)
        return self.s.score(groups, held, guess, weight)

    def consensus(self, groups: Sequence[str], held: str, hp: tuple[float, ...]) -> Array:
        """Per-source ridge residuals; where all agree on a prompt's sign, the smallest (hp:
        penalty per prompt, weight)."""
        penalty, weight = hp
        slope = self.s.slope(groups)
        known = self.s.residual(groups, slope)
        x = self.s.features
        held_x = x[self.s.index[held]] - x[self.s.index[held]].mean(axis=0)
        guesses = np.array([held_x @ _ridge(x, known, self.s.index[g], penalty) for g in groups])
        agree = (np.sign(guesses) == np.sign(guesses[0])).all(axis=0)
        guess = np.where(agree, np.sign(guesses[0]) * np.abs(guesses).min(axis=0), 0.0)
        return self.s.score(groups, held, guess, weight)


def _ridge(x: Array, y: Array, rows: Index, penalty: float) -> Array:
    """Ridge weights of y over x's columns on `rows` (both centred), penalty per prompt."""
    centred = x[rows] - x[rows].mean(axis=0)
    target = y[rows] - y[rows].mean()
    gram = centred.T @ centred + penalty * len(rows) * np.eye(x.shape[1])
    out: Array = np.linalg.solve(gram, centred.T @ target)
    return out


def leave_one_out(sources: Sources, method: Method, hp: tuple[float, ...]) -> dict[str, float]:
    """Each source's APGR under `method` fitted on the other sources."""
    groups = sources.groups
    return {
        g: sources.apgr(method([o for o in groups if o != g], g, hp), g) for g in groups
    }  # fmt: skip


Choice = dict[str, tuple[float, ...]]
RULES = ("best mean", "no harm")


def nested(
    sources: Sources, method: Method, grid: Sequence[tuple[float, ...]], off: tuple[float, ...]
) -> dict[str, tuple[dict[str, float], Choice]]:
    """Each source's APGR with settings chosen by leave-one-source-out on the others, by two
    rules: the best mean over the other sources (the trainer's), and "no harm": the best mean
    among the settings at least as good as `off` (length only) on every other source."""
    out: dict[str, tuple[dict[str, float], Choice]] = {rule: ({}, {}) for rule in RULES}
    for held in sources.groups:
        others = [g for g in sources.groups if g != held]
        inner: dict[tuple[float, ...], Array] = {}
        for hp in (off, *grid):
            inner[hp] = np.array(
                [sources.apgr(method([g for g in others if g != h], h, hp), h) for h in others]
            )
        floor = inner[off] - 1e-12
        picks = {
            "best mean": max(inner, key=lambda hp: (round(float(inner[hp].mean()), 9), hp == off)),
            "no harm": max(
                (hp for hp in inner if (inner[hp] >= floor).all()),
                key=lambda hp: (round(float(inner[hp].mean()), 9), hp == off),
            ),
        }
        for rule, hp in picks.items():
            out[rule][1][held] = hp
            out[rule][0][held] = sources.apgr(method(others, held, hp), held)
    return out


def _row(name: str, apgr: dict[str, float], base: dict[str, float]) -> str:
    cells = " ".join(f"{apgr[g]:.3f} ({apgr[g] - base[g]:+.3f})" for g in base)
    mean = float(np.mean(list(apgr.values())))
    return f"  {name:<44} {cells}  {mean:.3f} ({mean - float(np.mean(list(base.values()))):+.4f})"


FAMILIES: tuple[tuple[str, str, tuple[tuple[float, ...], ...], tuple[float, ...]], ...] = (
    (
        "neighbours, k / weight",
        "neighbours",
        tuple((k, w, -1.0) for k in (10, 50, 200) for w in (0.25, 1.0)),
        (10, 0.0, -1.0),
    ),
    (
        "gated neighbours, k / weight / gate",
        "neighbours",
        tuple((k, w, q) for k in (50, 100, 200) for w in (0.5, 1.0) for q in (0.25, 0.5)),
        (50, 0.0, 0.5),
    ),
    (
        "kernel, width / prior / weight",
        "kernel",
        tuple((t, p, w) for t in (0.02, 0.05, 0.1) for p in (1.0, 10.0) for w in (0.5, 1.0)),
        (0.05, 1.0, 0.0),
    ),
    (
        "consensus ridge, penalty / weight",
        "consensus",
        tuple((p, w) for p in (0.1, 1.0, 10.0) for w in (0.5, 1.0)),
        (1.0, 0.0),
    ),
)


def local_residuals(sources: Sources) -> None:
    """Section 1: each family's grid with each source left out, then its nested figure."""
    local = Local(sources)
    base = {g: sources.apgr(sources.length, g) for g in sources.groups}
    heads = " ".join(f"{g[-14:]:>15}" for g in sources.groups)
    print(
        "1. Local residuals, each source left out: APGR (change over length only)\n"
        f"  {'':<44} {heads}  mean"
    )
    print(_row("length only (tokens)", base, base))
    for title, name, grid, off in FAMILIES:
        method: Method = getattr(local, name)
        print(f"  {title}:")
        for hp in grid:
            print(
                _row(
                    "  " + " / ".join(f"{v:g}" for v in hp),
                    leave_one_out(sources, method, hp),
                    base,
                ),
                flush=True,
            )
        for rule, (apgr, chosen) in nested(sources, method, grid, off).items():
            print(_row(f"  NESTED, {rule}", apgr, base))
            print(
                "      chosen: "
                + "; ".join(f"{g}: {' / '.join(f'{v:g}' for v in hp)}" for g, hp in chosen.items())
            )


# Requests of the kind an unlisted marketing task sends, written for this check.
MARKETING_REQUESTS = (
    "Write three subject lines for our spring sale email to returning customers of a kayak rental"
    " shop.",
    "Summarise our positioning against the two local competitors in one paragraph for the sales"
    " team.",
    "Draft a LinkedIn post announcing our new B2B invoicing feature for small accounting firms.",
    "Which customer segment should we target first for a premium dog food subscription, and why?",
    "Suggest a content calendar for October for a boutique hotel in Lisbon: 8 Instagram posts"
    " with themes.",
    "Rewrite this tagline so it sounds less corporate: 'Delivering synergistic value to"
    " stakeholders.'",
    "Give me five blog post ideas about sustainable packaging for an online tea retailer.",
    "How should a bakery with a $500 monthly budget split it between Google Ads and Instagram?",
    "Create an ideal customer profile for a SaaS tool that schedules shifts for restaurants.",
    "What KPIs should we track for a referral programme launched by a dental clinic?",
)


def marketing_gate(sources: Sources, table: Array, k: int = 100) -> None:
    """Section 1, continued: trained on all four sources, would the closeness gate open for
    marketing requests (where production would use it)?"""
    embedded = sources.corpus.residual[:, : train_router.EMBEDDING]
    centre = embedded.mean(axis=0)
    unit = _unit(embedded)
    scale = sources.corpus.scale[: train_router.EMBEDDING]
    closeness = Local(sources)._closeness(tuple(sources.groups), k)
    near = []
    for request in MARKETING_REQUESTS:
        vector = table[learned.word_pieces(request)].mean(axis=0) / scale - centre
        similarity = unit @ (vector / np.linalg.norm(vector))
        near.append(float(np.sort(similarity)[-k:].mean()))
    cells = []
    for quantile in (0.25, 0.5):
        gate = float(np.quantile(closeness, quantile))
        cells.append(f"{gate:.3f} ({quantile:.0%}): {sum(n >= gate for n in near)}")
    print(
        f"  {len(near)} marketing requests, mean similarity to their {k} nearest training prompts"
        f" {min(near):.3f}-{max(near):.3f}; requests that open the gate at {', '.join(cells)}"
    )


WINDOWS = ((700, 300), (300, 200), (500, 0))


def _window_embedding(corpus: Corpus, table: Array, head: int, tail: int) -> Array:
    tokenizer = learned._word_pieces()

    def cut(text: str) -> str:
        if len(text) <= head + tail:
            return text
        return text[:head] + ("\n" + text[-tail:] if tail else "")

    rows = []
    for prompt in corpus.prompts:
        ids = tokenizer.encode(cut(prompt.text), add_special_tokens=False).ids
        rows.append(table[ids or [learned.UNKNOWN_PIECE]].mean(axis=0))
    # The trainer's scaling of the embedding columns (Corpus.build), so only the window differs.
    scale = corpus.scale[: train_router.EMBEDDING]
    out: Array = np.stack(rows) / scale
    return out


def other_windows(corpus: Corpus, table: Array) -> None:
    """Section 1, continued: the gated neighbours' nested figure with other windows."""
    _, name, grid, off = FAMILIES[1]
    print("  gated neighbours, NESTED, the window cut other ways (characters, head + tail):")
    for head, tail in WINDOWS:
        sources = Sources.build(corpus, _window_embedding(corpus, table, head, tail))
        base = {g: sources.apgr(sources.length, g) for g in sources.groups}
        for rule, (apgr, _) in nested(sources, getattr(Local(sources), name), grid, off).items():
            print(_row(f"  {head} + {tail}, {rule}", apgr, base), flush=True)


def transfer(sources: Sources) -> None:
    """Section 2: a ridge residual fitted on one source, applied to each (diagonal: 5-fold)."""
    slope = sources.slope(sources.groups)
    known = sources.residual(sources.groups, slope)
    x = sources.features
    base = {g: sources.apgr(sources.length, g) for g in sources.groups}
    for penalty in (1.0, 10.0):
        print(
            f"\n2. Transfer, ridge over embedding + cues, penalty {penalty:g}: APGR change over"
            " length only\n   on each source (columns) of the residual fitted on one (rows);"
            " [within the source, 5-fold]"
        )
        print(f"  {'fitted on':<22}" + "".join(f"{g[-14:]:>16}" for g in sources.groups))
        for fitted in sources.groups:
            cells = []
            for applied in sources.groups:
                rows = sources.index[applied]
                score = np.full(len(sources.length), np.nan)
                if fitted == applied:
                    fold = np.random.default_rng(0).permutation(np.arange(len(rows)) % FOLDS)
                    for f in range(FOLDS):
                        train, test = rows[fold != f], rows[fold == f]
                        coef = _ridge(x, known, train, penalty)
                        centre = x[train].mean(axis=0)
                        score[test] = slope * sources.length[test] + (x[test] - centre) @ coef
                else:
                    coef = _ridge(x, known, sources.index[fitted], penalty)
                    centred = x[rows] - x[rows].mean(axis=0)
                    score[rows] = slope * sources.length[rows] + centred @ coef
                change = sources.apgr(score, applied) - base[applied]
                cells.append(f"[{change:+.3f}]" if fitted == applied else f"{change:+.3f}")
            print(f"  {fitted:<22}" + "".join(f"{c:>16}" for c in cells))


def model_pairs(sources: Sources) -> None:
    """Section 3: the two MMLU-Pro families on the same questions."""
    prompts = sources.corpus.prompts
    pairs = train_router.PAIRS["mmlu-pro"]
    names = ("Gemini", "Llama")
    x = sources.features
    print(
        "\n3. Model pairs on MMLU-Pro (the same questions): APGR of each family's rows, routed by"
        " length,\n   by the other family's actual gain, and by a 5-fold ridge (penalty 10) fitted"
        " on each family's gains"
    )
    for group in sources.groups:
        rows = sources.index[group]
        if prompts[rows[0]].source != "mmlu-pro":
            continue
        strong = [np.array([prompts[i].quality[s] for i in rows]) for s, _ in pairs]
        weak = [np.array([prompts[i].quality[w] for i in rows]) for _, w in pairs]
        gains = [s - w for s, w in zip(strong, weak, strict=True)]

        def apgr(score: Array, family: int) -> float:
            curve = router_metrics.pgr_curve(score, strong[family], weak[family])  # noqa: B023
            return curve.apgr()

        fitted = []
        fold = np.random.default_rng(0).permutation(np.arange(len(rows)) % FOLDS)
        for gain in gains:
            target = np.zeros(len(sources.length))
            target[rows] = (gain - gain.mean()) / gain.std()
            design = np.column_stack([sources.length, x])
            score = np.zeros(len(rows))
            for f in range(FOLDS):
                train, test = rows[fold != f], rows[fold == f]
                centred = design[train] - design[train].mean(axis=0)
                penalty = 10.0 * len(train) * np.diag([0.0] + [1.0] * x.shape[1])
                coef = np.linalg.solve(centred.T @ centred + penalty, centred.T @ target[train])
                score[fold == f] = (design[test] - design[train].mean(axis=0)) @ coef
            fitted.append(score)
        correlation = float(np.corrcoef(gains[0], gains[1])[0, 1])
        print(
            f"  {group} ({len(rows)} questions): correlation of the two families' gains"
            f" {correlation:+.3f}"
        )
        for family, name in enumerate(names):
            other = 1 - family
            print(
                f"    {name} rows: length {apgr(sources.length[rows], family):.3f}, the other's"
                f" gain {apgr(gains[other], family):.3f}, ridge fitted on {names[family]}"
                f" {apgr(fitted[family], family):.3f}, on {names[other]}"
                f" {apgr(fitted[other], family):.3f}"
            )


# arena-bench-v1's 14 pairs in two halves with no model in common.
ARENA_HALVES = (
    (
        "gpt-4-1106-preview",
        ("gpt-3.5-turbo", "claude-2", "claude-1", "mistralai/Mixtral-8x7B-Instruct-v0.1"),
    ),
    ("gpt-4-0314", ("gpt-3.5-turbo-1106", "claude-2.1", "claude-instant-1")),
)


def arena_halves(sources: Sources) -> None:
    """Section 3, continued: on arena-bench-v1, does one half of the pairs predict the other?"""
    prompts = sources.corpus.prompts
    size = len(sources.length)
    halves: list[tuple[Array, Array, Index]] = []
    for strong_model, weak_models in ARENA_HALVES:
        rows = [
            (i, prompts[i].quality[strong_model], prompts[i].quality[weak_model])
            for i in sources.index["arena-bench-v1"]
            for weak_model in weak_models
            if strong_model in prompts[i].quality and weak_model in prompts[i].quality
        ]
        halves.append(
            (
                np.array([r[1] for r in rows]),
                np.array([r[2] for r in rows]),
                np.array([r[0] for r in rows], dtype=np.intp),
            )
        )
    gains, counts = [], []
    for strong, weak, owner in halves:
        count = np.bincount(owner, minlength=size)
        total = np.bincount(owner, weights=strong - weak, minlength=size)
        gains.append(np.divide(total, count, out=np.zeros(size), where=count > 0))
        counts.append(count)
    both = (counts[0] > 0) & (counts[1] > 0)
    correlation = float(np.corrcoef(gains[0][both], gains[1][both])[0, 1])
    print(
        f"  arena-bench-v1, two halves of its pairs: correlation of their gains {correlation:+.3f}"
    )
    for half, (strong, weak, owner) in enumerate(halves):
        by_length = router_metrics.pgr_curve(sources.length[owner], strong, weak).apgr()
        by_other = router_metrics.pgr_curve(gains[1 - half][owner], strong, weak).apgr()
        print(
            f"    half {half + 1} ({ARENA_HALVES[half][0]}): length {by_length:.3f},"
            f" the other half's gain {by_other:.3f}"
        )


# wenhuchen/TheoremQA at the commit that holds the scored outputs (`correct` per question).
THEOREMQA_COMMIT = "58e735f3316d7c4a1261f30231133f0f40f71326"
THEOREMQA_OUTPUTS = {
    "GPT-4": "outputs/GPT4_s0_e-1_06_15_22_38.jsonl.corrected",
    "ChatGPT": "outputs/ChatGPT_s0_e-1_05_13_10_25.jsonl.corrected",
    "Claude Instant": "outputs/anthropic_instant-v1_s0_e-1_05_27_09_42.jsonl.corrected",
}


def _spaced(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def third_family(sources: Sources, clone: Path) -> None:
    """Section 3, continued: GPT-4 over ChatGPT (and Claude Instant) on TheoremQA's questions."""

    def show(path: str) -> bytes:
        command = ["git", "-C", str(clone), "show", f"{THEOREMQA_COMMIT}:{path}"]
        return subprocess.run(command, capture_output=True, check=True).stdout

    correct = {
        name: {item["id"]: float(bool(item["correct"])) for item in json.loads(show(path))}
        for name, path in THEOREMQA_OUTPUTS.items()
    }
    by_text = {_spaced(q["Question"]): q["id"] for q in json.loads(show("theoremqa_test.json"))}
    prompts = sources.corpus.prompts
    rows = sources.index["mmlu-pro/theoremQA"]

    def question(i: int) -> str:
        return prompts[i].text.split("\n\nOptions:")[0]

    found = [(i, by_text[_spaced(question(i))]) for i in rows if _spaced(question(i)) in by_text]
    mine = np.array([i for i, _ in found])
    theirs = [q for _, q in found]
    gains = {
        "Gemini": np.array([prompts[i].quality["gemini-1.5-pro-002"] for i in mine])
        - np.array([prompts[i].quality["gemini-1.5-flash-002"] for i in mine]),
        "Llama": np.array([prompts[i].quality["Meta-Llama-3_1-70B-Instruct"] for i in mine])
        - np.array([prompts[i].quality["Meta-Llama-3_1-8B-Instruct"] for i in mine]),
    }
    strong = np.array([correct["GPT-4"][q] for q in theirs])
    # The length of what these models were asked: the question without MMLU-Pro's options.
    length = np.array([learned.log_length(question(i), "tokens") for i in mine])
    print(f"  TheoremQA without options ({len(mine)} of {len(rows)} questions matched):")
    for weak_name in ("ChatGPT", "Claude Instant"):
        weak = np.array([correct[weak_name][q] for q in theirs])
        gain = strong - weak
        cells = ", ".join(
            f"{name} {float(np.corrcoef(gain, other)[0, 1]):+.3f}" for name, other in gains.items()
        )
        apgr = router_metrics.pgr_curve(length, strong, weak).apgr()
        print(
            f"    GPT-4 over {weak_name}: length {apgr:.3f}; correlation of its gains with {cells}"
        )


def targets(sources: Sources) -> None:
    """Section 4: the shipped trainer, nested, learning other targets."""
    corpus = sources.corpus
    prompts = corpus.prompts

    def mean_over_pairs(fn: Callable[[float, float], float], family: str = "") -> Array:
        out = np.zeros(len(prompts))
        for i, p in enumerate(prompts):
            values = [
                fn(p.quality[s], p.quality[w])
                for s, w in train_router.PAIRS[p.source]
                if s in p.quality and w in p.quality and s.lower().startswith(family)
            ]
            if not values:  # arena-bench-v1 under a family's name: all its pairs
                values = [
                    fn(p.quality[s], p.quality[w])
                    for s, w in train_router.PAIRS[p.source]
                    if s in p.quality and w in p.quality
                ]
            out[i] = float(np.mean(values)) if values else 0.0  # no rows: never scored
        return out

    gap = corpus.gap()
    rank = np.zeros(len(prompts))
    for rows in sources.index.values():
        # Average ranks: most exam questions tie (a gain of -1, -0.5, 0, 0.5 or 1).
        _, inverse, counts = np.unique(gap[rows], return_inverse=True, return_counts=True)
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank[rows] = (first + (counts - 1) / 2)[inverse]
    variants = {
        "mean gain (shipped)": gap,
        "wins only": mean_over_pairs(lambda s, w: float(s > w + 1e-9)),
        "rank of the gain in its source": rank,
        "Gemini's gain on MMLU-Pro": mean_over_pairs(lambda s, w: s - w, "gemini"),
        "Llama's gain on MMLU-Pro": mean_over_pairs(lambda s, w: s - w, "meta"),
    }
    base = {g: sources.apgr(sources.length, g) for g in sources.groups}
    print("\n4. Training targets: the trainer's nested figure (its grid and agreement rule)")
    for name, target in variants.items():
        trainer = Trainer(corpus, target)
        score, chosen = trainer.nested()
        apgr = trainer.per_source_apgr(sources.groups, score)
        print(_row(name, apgr, base), flush=True)
        print(
            "      chosen: "
            + "; ".join(f"{g}: {s.length} {s.penalty:g} {s.weight:g}" for g, s in chosen.items())
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--theoremqa", type=Path, help="a clone of wenhuchen/TheoremQA")
    args = parser.parse_args()
    started = time.perf_counter()
    table = train_router.static_embeddings()
    corpus = train_router.build_corpus(table)
    sources = Sources.build(corpus)
    print(f"Features in {time.perf_counter() - started:.0f} s; {len(corpus.prompts)} prompts\n")
    local_residuals(sources)
    marketing_gate(sources, table)
    other_windows(corpus, table)
    transfer(sources)
    model_pairs(sources)
    arena_halves(sources)
    if args.theoremqa is not None:
        third_family(sources, args.theoremqa)
    targets(sources)


if __name__ == "__main__":
    main()
