"""The learned router's cues, its artefact and loader, and that training reproduces it."""

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

from common.llm import learned
from common.llm.base import Message
from common.llm.complexity import classify
from common.platform.settings import get_settings

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "data" / "router-training" / "arena-bench-v1.jsonl"
CUE = {name: i for i, name in enumerate(learned.CUE_NAMES)}


def _cues(text: str) -> dict[str, float]:
    values = learned.features(text)
    return {name: float(values[i]) for name, i in CUE.items()}


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
    assert proof["equations"] == pytest.approx(math.log1p(3))  # "^2", "= 4", "2 = 4"
    assert proof["maths"] == pytest.approx(math.log1p(2))  # "^", "="


def test_cues_count_whole_words_not_wording_inside_other_words() -> None:
    # "description" holds "script", "improved" holds "prove", "mustard" holds "must".
    prose = _cues("A description of the improved mustard recipe, in a cozy tone.")
    assert prose["code"] == prose["proof or derivation"] == prose["constraints"] == 0


def test_cues_of_look_ups_transformations_lists_and_other_languages() -> None:
    assert _cues("What is the capital of France?")["quick look-up"] == 1
    assert (
        _cues("What is the capital of France? " + "Explain its history. " * 10)["quick look-up"]
        == 0
    )  # a long prompt is not a quick look-up
    assert _cues("Summarize the text below in two lines.")["text to transform"] == pytest.approx(
        math.log1p(2)
    )
    assert _cues("Plan:\n1. research\n2. draft\n- review")["list items"] == pytest.approx(
        math.log1p(3)
    )
    assert _cues("Écris un poème")["non-English text"] == pytest.approx(2 / 14)


def test_only_length_beyond_a_couple_of_sentences_counts() -> None:
    assert _cues("Name a fruit.")["long prompt"] == 0
    assert _cues("x" * 200)["long prompt"] == 0
    assert _cues("x" * 2000)["long prompt"] == pytest.approx(math.log1p(2000) - math.log1p(200))


def test_cost_stays_flat_only_the_start_and_end_of_a_long_prompt_are_read() -> None:
    head = "Please summarise the notes below.\n" + "Store 12 sold 40 units.\n" * 200
    tail = "Store 12 sold 40 units.\n" * 200 + "Which store sold most?"
    one = head + "Store 12 sold 40 units.\n" * 5000 + tail
    other = head + "Shop 99 lost 17 crates?\n" * 5000 + tail  # only the middle differs
    assert len(one) == len(other)
    assert np.array_equal(learned.features(one), learned.features(other))
    window = learned.lexical_window(one)
    assert window == one[:2000] + "\n" + one[-2000:]
    assert learned.lexical_window("short prompt") == "short prompt"


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
        "no more than 5 words: name a fruit",
    ],
)
def test_a_request_is_not_small_talk(text: str) -> None:
    assert not learned.is_small_talk(text)


def test_the_router_reads_the_user_turns() -> None:
    messages = [
        Message(role="system", content="You are a senior marketing strategist."),
        Message(role="user", content="Prove it."),
    ]
    assert learned.prompt_text(messages) == "Prove it."
    assert learned.prompt_text([Message(role="system", content="Only this.")]) == "Only this."


def test_the_shipped_artefact_loads_and_names_its_data() -> None:
    model = learned.load()
    document = json.loads(learned.ARTEFACT.read_text())
    assert model.version == document["version"] >= 2
    assert model.data_sha256 == hashlib.sha256(DATA.read_bytes()).hexdigest()
    assert document["training_data"]["sources"] == ["arena-bench-v1"]  # the Apache-2.0 part only
    assert document["training_data"]["path"] == "data/router-training/arena-bench-v1.jsonl"
    assert learned.ARTEFACT.stat().st_size < 64_000  # kilobytes, not megabytes
    assert [t.quality_target for t in model.thresholds][0::10] == [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert model.thresholds_for(0.95).quality_target == 0.95
    assert model.thresholds_for(0.951).quality_target == 0.96  # the next stricter target
    held_out = document["held_out"]
    assert "cross-validation grouped by prompt" in held_out["method"]
    assert held_out["brier"] < held_out["brier_base_rate"]  # better than knowing the base rate
    assert held_out["apgr"] > 0.5  # better than random on prompts it did not see


def test_every_weight_keeps_the_sign_its_cue_allows() -> None:
    model = learned.load()
    for cue, weight in zip(learned.CUES, model.coef, strict=True):
        assert weight * cue.sign >= 0, cue.name
    assert model.calibration[0] > 0  # a larger predicted gap is a larger probability


def _altered(tmp_path: Path, change: Any) -> Path:
    document = json.loads(learned.ARTEFACT.read_text())
    change(document)
    path = tmp_path / "router_model.json"
    path.write_text(json.dumps(document))
    return path


def test_an_altered_weight_is_refused(tmp_path: Path) -> None:
    def nudge(document: dict[str, Any]) -> None:
        document["model"]["coef"][0] += 0.001

    with pytest.raises(learned.RouterModelError, match="the weights were altered"):
        learned.load(_altered(tmp_path, nudge))


def test_another_format_or_other_cues_are_refused(tmp_path: Path) -> None:
    def future(document: dict[str, Any]) -> None:
        document["format"] = "raptorflow-router-model/3"

    def renamed(document: dict[str, Any]) -> None:
        document["features"]["cues"][0]["name"] = "characters"

    def flipped(document: dict[str, Any]) -> None:
        document["features"]["cues"][1]["sign"] = -1

    with pytest.raises(learned.RouterModelError, match="this code reads"):
        learned.load(_altered(tmp_path, future))
    for change in (renamed, flipped):
        with pytest.raises(learned.RouterModelError, match="trained on other features"):
            learned.load(_altered(tmp_path, change))
    with pytest.raises(learned.RouterModelError, match="cannot be read"):
        learned.load(tmp_path / "absent.json")


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


def _python(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, **env},
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
    # What `make train-router` runs (a few seconds: cues of 299 prompts, 5 x 5 x 5 fits).
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
