"""The learned router (v3): its features, its artefact and loader, its training data, the
product feedback it can learn from, and that training reproduces the shipped artefact."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.llm import cues, learned
from common.llm.base import Message
from common.llm.complexity import classify
from common.platform.settings import get_settings
from tools import router_feedback, router_metrics, train_router

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "data" / "router-training"


def _cues(text: str) -> dict[str, float]:
    return dict(zip(cues.CUE_NAMES, cues.features(text).tolist(), strict=True))


def test_cues_read_maths_code_proofs_computations_and_constraints() -> None:
    maths = _cues("Find the degree of Q(sqrt(2)+sqrt(3)) over Q")
    assert maths["maths"] == pytest.approx(math.log1p(2))  # sqrt, sqrt
    assert maths["equations"] == 0  # ")+sqrt" is between a bracket and a word
    assert maths["digits"] == pytest.approx(2 / 44)
    assert maths["computation"] == pytest.approx(math.log1p(1))  # "find the"
    code = _cues("```python\ndef area(r):\n    return 3.14 * r ** 2\n```\nWhy is this slow?")
    assert code["code"] == pytest.approx(math.log1p(4))  # ``` twice, python, def
    assert code["questions"] == pytest.approx(math.log1p(1))
    proof = _cues("Prove, step by step, that x^2 = 4 has exactly two roots; do not assume x > 0.")
    assert proof["proof or derivation"] == pytest.approx(math.log1p(2))  # prove, "step by"
    assert proof["constraints"] == pytest.approx(math.log1p(3))  # exactly, "do not", assume
    # Whole words only: "description" holds "script", "improved" "prove", "mustard" "must".
    prose = _cues("A description of the improved mustard recipe, in a cozy tone.")
    assert prose["code"] == prose["proof or derivation"] == prose["constraints"] == 0
    assert _cues("What is the capital of France?")["quick look-up"] == 1
    assert _cues("Écris un poème")["non-English text"] == pytest.approx(2 / 14)


def test_the_router_reads_a_fixed_window_of_the_user_turns() -> None:
    messages = [
        Message(role="system", content="You are a senior marketing strategist."),
        Message(role="user", content="Prove it."),
    ]
    assert learned.prompt_text(messages) == "Prove it."
    assert learned.prompt_text([Message(role="system", content="Only this.")]) == "Only this."
    text = "a" * 3_000 + "b" * 3_000
    assert learned.window(text) == "a" * learned.HEAD_CHARS + "\n" + "b" * learned.TAIL_CHARS
    assert learned.window("short prompt") == "short prompt"


def test_length_in_tokens_is_estimated_from_the_window_and_grows_with_the_prompt() -> None:
    from common.llm.tokens import count_tokens

    short = "Summarise our Q3 results for the board."
    assert learned.log_length(short, "tokens") == pytest.approx(math.log1p(count_tokens(short)))
    assert learned.log_length(short, "chars") == pytest.approx(math.log1p(len(short)))
    long = "Store 12 sold 40 units of SKU 881 on Tuesday.\n" * 2_000
    estimate = math.expm1(learned.log_length(long, "tokens"))
    assert estimate == pytest.approx(count_tokens(long), rel=0.05)  # within 5% of the count


@pytest.mark.parametrize(
    "text", ["hi, how are you?", "thanks!", "Thank you so much, have a great day!", "ok", ""]
)
def test_small_talk_is_recognised(text: str) -> None:
    assert learned.is_small_talk(text)


@pytest.mark.parametrize(
    "text",
    [
        "hi, can you prove that 17 is prime?",
        "Thanks! Now rewrite the tagline.",
        "How are the 3 campaigns doing?",
        "Hello, what is the capital of France?",
    ],
)
def test_a_request_is_not_small_talk(text: str) -> None:
    assert not learned.is_small_talk(text)


def test_the_shipped_artefact_names_its_data_and_its_held_out_figures() -> None:
    model = learned.load()
    document = json.loads(learned.ARTEFACT.read_text())
    assert model.version == document["version"] == 3
    files = document["training_data"]["files"]
    assert files == [
        "data/router-training/arena-bench-v1.jsonl",
        "data/router-training/mmlu-pro.jsonl",
    ]
    for file in files:  # the exact bytes it was trained on
        digest = hashlib.sha256((ROOT / file).read_bytes()).hexdigest()
        assert model.data_sha256[file] == digest
    assert set(document["training_data"]["sources"]) == {
        "arena-bench-v1", "mmlu-pro/scibench", "mmlu-pro/stemez", "mmlu-pro/theoremQA",
    }  # fmt: skip
    assert learned.ARTEFACT.stat().st_size < 64_000
    assert [t.quality_target for t in model.thresholds][0::10] == [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert model.thresholds_for(0.951).quality_target == 0.96  # the next stricter target
    held_out = document["held_out"]
    assert "leave-one-source-out" in held_out["method"]
    assert set(held_out["router"]) == {*document["training_data"]["sources"], "mean over sources"}
    assert model.calibration[0] > 0  # a larger score is a larger probability
    assert model.length_slope > 0  # the direction the data gave length, on every source


def test_no_cue_is_kept_whose_direction_the_sources_disagree_on() -> None:
    document = json.loads(learned.ARTEFACT.read_text())
    kept = {cue["name"] for cue in document["model"]["cues"]}
    for verdict in document["cue_signs"]:
        signs = set(verdict["signs"].values())
        if verdict["name"] in kept:
            assert len(signs) == 1 and 0 not in signs, verdict
        assert verdict["kept"] == (verdict["name"] in kept)
    # Digits raise the gain on exams and lower it on TheoremQA's maths problems: dropped.
    digits = next(v for v in document["cue_signs"] if v["name"] == "digits")
    assert not digits["kept"] and len(set(digits["signs"].values())) > 1


def _altered(tmp_path: Path, change: Any) -> Path:
    document = json.loads(learned.ARTEFACT.read_text())
    change(document)
    path = tmp_path / "router_model.json"
    path.write_text(json.dumps(document))
    return path


def test_an_altered_artefact_or_one_for_other_features_is_refused(tmp_path: Path) -> None:
    def nudge(document: dict[str, Any]) -> None:
        document["model"]["length"]["slope"] += 0.001

    def future(document: dict[str, Any]) -> None:
        document["format"] = "raptorflow-router-model/4"

    def wider(document: dict[str, Any]) -> None:
        document["features"]["head_chars"] = 4_000

    def with_table(document: dict[str, Any]) -> None:
        document["model"]["token_table_sha256"] = "0" * 64
        document["model_sha256"] = learned.canonical_digest(document["model"])

    with pytest.raises(learned.RouterModelError, match="the weights were altered"):
        learned.load(_altered(tmp_path, nudge))
    with pytest.raises(learned.RouterModelError, match="this code reads"):
        learned.load(_altered(tmp_path, future))
    with pytest.raises(learned.RouterModelError, match="trained on other features"):
        learned.load(_altered(tmp_path, wider))
    with pytest.raises(learned.RouterModelError, match=r"router_tokens\.npy"):
        learned.load(_altered(tmp_path, with_table))  # its table is missing
    (tmp_path / "router_tokens.npy").write_bytes(learned.table_bytes(np.zeros(30_522, "<f4")))
    with pytest.raises(learned.RouterModelError, match="does not match the model"):
        learned.load(tmp_path / "router_model.json")
    with pytest.raises(learned.RouterModelError, match="cannot be read"):
        learned.load(tmp_path / "absent.json")


def test_a_word_piece_table_adds_the_mean_of_the_windows_pieces(tmp_path: Path) -> None:
    # An artefact with a residual: one word piece ("proof") weighs 1, every other 0.
    table = np.zeros(learned.VOCABULARY, dtype="<f4")
    proof = learned.word_pieces("proof")
    assert len(proof) == 1
    table[proof[0]] = 1.0
    raw = learned.table_bytes(table)

    def residual(document: dict[str, Any]) -> None:
        document["model"]["token_table_sha256"] = hashlib.sha256(raw).hexdigest()
        document["model_sha256"] = learned.canonical_digest(document["model"])

    path = _altered(tmp_path, residual)
    (tmp_path / "router_tokens.npy").write_bytes(raw)
    model = learned.load(path)
    parts = model.parts("proof proof other words")  # 2 of 4 pieces
    assert parts["wording"] == pytest.approx(0.5)
    assert model.score("a proof").probability > learned.load().score("a proof").probability


def test_an_operator_can_point_the_router_at_another_artefact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def stricter(document: dict[str, Any]) -> None:
        for entry in document["thresholds"]:
            entry["nano"], entry["full"] = 0.0, 0.0  # everything to the full model

    monkeypatch.setenv("ROUTER_MODEL_PATH", str(_altered(tmp_path, stricter)))
    get_settings.cache_clear()
    try:
        assert classify([Message(role="user", content="Name a fruit.")]).tier == "full"
    finally:
        monkeypatch.delenv("ROUTER_MODEL_PATH")
        get_settings.cache_clear()


def test_the_training_data_holds_no_mmlu_question_and_every_models_ratings() -> None:
    exams = [json.loads(line) for line in (DATA / "mmlu-pro.jsonl").open()]
    assert len(exams) > 5_000
    assert {item["subset"] for item in exams} == {"stemez", "theoremQA", "scibench"}
    arena = [json.loads(line) for line in (DATA / "arena-bench-v1.jsonl").open()]
    assert len(arena) == 299
    models = set().union(*(item["quality"] for item in arena))
    assert len(models) == 16  # every model the repository's history rated
    for strong, weak in train_router.PAIRS["arena-bench-v1"]:
        assert {strong, weak} <= models


def test_a_prompt_both_models_fail_gains_nothing_however_hard_it_looks() -> None:
    # The guard: the target is the strong model's gain, so a prompt both fail counts as 0.
    prompts = [
        train_router.Prompt("mmlu-pro", "g", "both-fail", "x " * 400, {
            "gemini-1.5-pro-002": 0.0, "gemini-1.5-flash-002": 0.0,
        }),
        train_router.Prompt("mmlu-pro", "g", "gain", "Name it.", {
            "gemini-1.5-pro-002": 1.0, "gemini-1.5-flash-002": 0.0,
        }),
    ]  # fmt: skip
    corpus = train_router.Corpus.build(prompts, np.zeros((learned.VOCABULARY, 384)))
    assert corpus.gap().tolist() == [0.0, 1.0]
    assert router_feedback.label([{"tier": "mini", "outcome": "escalated"}, {
        "tier": "full", "outcome": "failed"}]) == (0.0, 0.0)  # fmt: skip


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [
        ([("mini", "first_try")], (1.0, 1.0)),
        ([("nano", "repaired")], (1.0, 0.8)),
        ([("mini", "escalated"), ("full", "first_try")], (1.0, 0.0)),
        ([("mini", "escalated"), ("full", "failed")], (0.0, 0.0)),
        ([("full", "first_try")], "started on the full tier"),
        ([("mini", "failed")], "failed without escalating"),
        ([("mini", "rerouted_by_a_future_version")], "unknown outcome"),
    ],
)
def test_product_outcomes_become_labels(attempts: list[tuple[str, str]], expected: Any) -> None:
    assert router_feedback.label([{"tier": t, "outcome": o} for t, o in attempts]) == expected


def test_a_feedback_file_is_read_skipping_what_carries_no_label(tmp_path: Path) -> None:
    lines: list[dict[str, Any]] = [
        {"attempts": [{"tier": "mini", "outcome": "first_try"}], "prompt": "Name a fruit."},
        {
            "attempts": [
                {"tier": "mini", "outcome": "escalated"},
                {"tier": "full", "outcome": "first_try"},
            ],
            "prompt": "Plan our launch.",
        },
        {"attempts": [{"tier": "mini", "outcome": "first_try"}]},  # no prompt
        {"attempts": [{"tier": "mini", "outcome": "teleported"}], "prompt": "Hm."},
    ]
    path = tmp_path / "feedback.jsonl"
    path.write_text(
        "".join(
            json.dumps({"format": router_feedback.FORMAT, "call_key": f"c{i}", **line}) + "\n"
            for i, line in enumerate(lines)
        )
    )
    tally = router_feedback.Tally()
    prompts = router_feedback.prompts(path, tally)
    assert [(p.text, p.quality) for p in prompts] == [
        ("Name a fruit.", {"strong": 1.0, "weak": 1.0}),
        ("Plan our launch.", {"strong": 1.0, "weak": 0.0}),
    ]
    assert tally.line() == (
        "product feedback: 2 calls used; skipped: 1 unknown outcome, 1 without a prompt"
    )
    path.write_text('{"call_key": "c0"}\n')
    with pytest.raises(ValueError, match=r"feedback.jsonl:1: format must be"):
        router_feedback.prompts(path)


def test_leaving_a_source_out_scores_it_with_a_model_that_never_saw_it() -> None:
    # Two toy sources where longer prompts gain more: each, held out, is ranked by length.
    prompts = [
        train_router.Prompt("mmlu-pro", group, f"{group}{i}", "word " * (1 + 5 * i), {
            "gemini-1.5-pro-002": 1.0, "gemini-1.5-flash-002": float(i < 3),
        })
        for group in ("a", "b") for i in range(6)
    ]  # fmt: skip
    corpus = train_router.Corpus.build(prompts, np.zeros((learned.VOCABULARY, 384)))
    trainer = train_router.Trainer(corpus)
    settings = train_router.Settings("chars", 1.0, 0.0)
    held_out = trainer.out_of_source(["a", "b"], settings)
    # The best possible order: the three prompts the weak model fails first.
    weak = (np.arange(6) < 3).astype(np.float64)
    oracle = router_metrics.pgr_curve(np.arange(6.0), np.ones(6), weak)
    for group in ("a", "b"):
        index = np.nonzero(corpus.group == group)[0]
        assert corpus.curve(held_out, index).apgr() == pytest.approx(oracle.apgr())  # 0.75


def test_the_trainer_learns_the_target_it_is_given() -> None:
    # The same toy sources; told that shorter prompts gain more, the slope turns negative and
    # each held-out source is ranked shortest first (the worst order for the real gains).
    prompts = [
        train_router.Prompt("mmlu-pro", group, f"{group}{i}", "word " * (1 + 5 * i), {
            "gemini-1.5-pro-002": 1.0, "gemini-1.5-flash-002": float(i < 3),
        })
        for group in ("a", "b") for i in range(6)
    ]  # fmt: skip
    corpus = train_router.Corpus.build(prompts, np.zeros((learned.VOCABULARY, 384)))
    settings = train_router.Settings("chars", 1.0, 0.0)
    default = train_router.Trainer(corpus).fit(["a", "b"], settings)
    given = train_router.Trainer(corpus, corpus.gap()).fit(["a", "b"], settings)
    reversed_ = train_router.Trainer(corpus, -corpus.gap())
    assert given.slope == default.slope > 0
    assert reversed_.fit(["a", "b"], settings).slope == pytest.approx(-default.slope)
    held_out = reversed_.out_of_source(["a", "b"], settings)
    weak = (np.arange(6) < 3).astype(np.float64)
    worst = router_metrics.pgr_curve(-np.arange(6.0), np.ones(6), weak)
    for group in ("a", "b"):
        index = np.nonzero(corpus.group == group)[0]
        assert corpus.curve(held_out, index).apgr() == pytest.approx(worst.apgr())  # 0.25


def _python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return result.stdout


def test_the_classifier_loads_only_when_needed_and_never_an_embedding_model() -> None:
    out = _python(
        "import sys\n"
        "from common.llm import Router\n"
        "from common.llm import complexity\n"
        "from common.llm.providers.offline import OfflineProvider\n"
        "router = Router({'openai': OfflineProvider()})\n"
        "router.route('strategy_analysis', [{'role': 'user', 'content': 'Plan it.'}])\n"
        "print(complexity._loaded is None, 'onnxruntime' in sys.modules)\n"
        "router.route('general', [{'role': 'user', 'content': 'Plan it.'}])\n"
        "print(complexity._loaded is None, 'onnxruntime' in sys.modules)\n"
        "print(repr(complexity.classify([{'role': 'user', 'content': 'Prove it.'}]).score))\n"
    )
    *loaded, score = out.split()
    assert loaded == ["True", "False", "False", "False"]
    # Another process, the same score to the last bit: the decision is deterministic.
    assert float(score) == classify([Message(role="user", content="Prove it.")]).score


def test_training_reproduces_the_shipped_artefact_bit_for_bit(tmp_path: Path) -> None:
    # What `make train-router` runs (seconds: features of ~5,500 prompts, a few hundred fits).
    out = tmp_path / "router_model.json"
    subprocess.run(
        [sys.executable, "-m", "tools.train_router", "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        capture_output=True,
        timeout=600,
        check=True,
    )
    assert out.read_bytes() == learned.ARTEFACT.read_bytes()
    table = learned.TOKEN_TABLE
    assert (tmp_path / table.name).exists() == table.exists()
    if table.exists():
        assert (tmp_path / table.name).read_bytes() == table.read_bytes()


def test_product_feedback_is_one_more_source_the_trainer_holds_out(tmp_path: Path) -> None:
    # Longer product requests escalated, short ones were answered on mini: held out, the
    # product's calls are ranked by what the public-like toy source taught, and vice versa.
    path = tmp_path / "feedback.jsonl"
    lines = []
    for i in range(8):
        escalated = i >= 4
        attempts = [{"tier": "mini", "outcome": "escalated" if escalated else "first_try"}]
        attempts += [{"tier": "full", "outcome": "first_try"}] if escalated else []
        prompt = "Plan the launch. " * (1 + 3 * i)
        lines.append({"format": router_feedback.FORMAT, "attempts": attempts, "prompt": prompt})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    toy = [
        train_router.Prompt("mmlu-pro", "toy", f"t{i}", "word " * (1 + 5 * i), {
            "gemini-1.5-pro-002": 1.0, "gemini-1.5-flash-002": float(i < 3),
        })
        for i in range(6)
    ]  # fmt: skip
    corpus = train_router.Corpus.build(
        toy + router_feedback.prompts(path), np.zeros((learned.VOCABULARY, 384))
    )
    assert corpus.groups == ["product", "toy"]
    trainer = train_router.Trainer(corpus)
    settings, grid = trainer.choose(corpus.groups)
    assert len(grid) == len(train_router.GRID)
    scores = trainer.out_of_source(corpus.groups, settings)
    assert trainer.per_source_apgr(["product"], scores)["product"] == pytest.approx(0.75)
