"""The learned router's features, its artefact and loader, and that training reproduces it."""

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
from common.search.embeddings import LOCAL_MODEL, LocalEmbedder

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "data" / "router-training" / "arena-bench-v1.jsonl"
FEATURE = {name: i for i, name in enumerate(learned.LEXICAL_FEATURES)}


def _lexical(text: str) -> dict[str, float]:
    values = learned.lexical_features(text)
    return {name: float(values[i]) for name, i in FEATURE.items()}


def test_lexical_features_read_maths_code_digits_and_questions() -> None:
    maths = _lexical("Find the degree of Q(sqrt(2)+sqrt(3)) over Q")
    chat = _lexical("hi, how are you?")
    code = _lexical("```python\ndef area(r):\n    return 3.14 * r ** 2\n```\nWhy is this slow?")
    assert maths["math markers"] == pytest.approx(math.log1p(3))  # sqrt, sqrt, +
    assert maths["digits"] == pytest.approx(2 / 44)
    assert chat["math markers"] == chat["code markers"] == chat["digits"] == 0
    assert chat["how/why"] == 1 and chat["question marks"] == pytest.approx(math.log1p(1))
    assert code["code markers"] > maths["code markers"] and code["lines"] == pytest.approx(
        math.log1p(4)
    )
    assert _lexical("What is the capital of France?")["factual question"] == 1
    assert _lexical("Écris un poème")["non-ASCII text"] == pytest.approx(2 / 14)
    assert maths["length"] == pytest.approx(math.log1p(44))


def test_cost_stays_flat_only_the_start_and_end_of_a_long_prompt_are_read() -> None:
    head = "Please summarise the notes below.\n" + "Store 12 sold 40 units.\n" * 200
    tail = "Store 12 sold 40 units.\n" * 200 + "Which store sold most?"
    one = head + "Store 12 sold 40 units.\n" * 5000 + tail
    other = head + "Shop 99 lost 17 crates?\n" * 5000 + tail  # only the middle differs
    assert len(one) == len(other)
    assert np.array_equal(learned.lexical_features(one), learned.lexical_features(other))
    window = learned.embedding_window(one, 16)
    assert window == one[:32] + "\n" + one[-32:]
    assert learned.embedding_window("short prompt", 16) == "short prompt"


def test_the_router_reads_the_user_turns() -> None:
    messages = [
        Message(role="system", content="You are a senior marketing strategist."),
        Message(role="user", content="Prove it."),
    ]
    assert learned.prompt_text(messages) == "Prove it."
    assert learned.prompt_text([Message(role="system", content="Only this.")]) == "Only this."


def test_the_router_names_the_embedding_model_it_uses() -> None:
    # learned.py imports the embeddings only when the classifier first runs, so it names both.
    assert learned.EMBEDDING_MODEL == LOCAL_MODEL
    assert LocalEmbedder.dimension == learned.EMBEDDING_DIMENSION


def test_the_shipped_artefact_loads_and_names_its_data() -> None:
    model = learned.load()
    document = json.loads(learned.ARTEFACT.read_text())
    assert model.version == document["version"] >= 1
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


def test_another_format_or_other_features_are_refused(tmp_path: Path) -> None:
    def future(document: dict[str, Any]) -> None:
        document["format"] = "raptorflow-router-model/2"

    def renamed(document: dict[str, Any]) -> None:
        document["features"]["lexical"][0] = "characters"

    with pytest.raises(learned.RouterModelError, match="this code reads"):
        learned.load(_altered(tmp_path, future))
    with pytest.raises(learned.RouterModelError, match="trained on other features"):
        learned.load(_altered(tmp_path, renamed))
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
        assert classify([Message(role="user", content="hi")]).tier == "full"
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


def test_phases_with_a_task_default_never_load_the_model() -> None:
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
        "print(repr(complexity.classify([{'role': 'user', 'content': 'Plan it.'}]).score))\n"
    )
    *loaded, score = out.split()
    assert loaded == ["True", "False", "False", "True"]
    # Another process, the same score to the last bit: the decision is deterministic.
    assert float(score) == classify([Message(role="user", content="Plan it.")]).score


def test_training_reproduces_the_shipped_artefact_bit_for_bit(tmp_path: Path) -> None:
    # What `make train-router` runs (about 15 s here: 299 prompts through the embedding model).
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
