"""The offline embedding model: offline loading, meaningful vectors, and search with the index."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from common.platform.settings import Settings
from common.search import embeddings
from common.search.embeddings import LocalEmbedder


@pytest.fixture(scope="module")
def model() -> LocalEmbedder:
    return LocalEmbedder()


def test_vectors_are_unit_length_of_the_model_dimension(model: LocalEmbedder) -> None:
    vectors = np.asarray(model.embed(["Acme sells running shoes.", "Quarterly revenue grew."]))

    assert model.dimension == 384
    assert vectors.shape == (2, 384)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)


def test_similar_meaning_scores_higher_than_unrelated_text(model: LocalEmbedder) -> None:
    shoes, sneakers, bread, tiktok = np.asarray(
        model.embed(
            [
                "Acme sells eco-friendly running shoes to urban millennials.",
                "A brand of sustainable sneakers for young city dwellers.",
                "How do I bake sourdough bread at home?",
                "Short videos on TikTok drove most of our new sign-ups.",
            ]
        )
    )

    assert shoes @ sneakers > 0.5
    assert shoes @ sneakers > shoes @ bread + 0.3
    assert shoes @ sneakers > shoes @ tiktok + 0.3


def test_a_batch_gives_the_same_vectors_as_one_text_at_a_time(model: LocalEmbedder) -> None:
    texts = ["short", "a somewhat longer sentence about marketing budgets", "mid length text"]
    together = np.asarray(model.embed(texts))
    alone = np.asarray([model.embed([t])[0] for t in texts])

    # int8 activations are quantised per batch, so padding neighbours move the last digits only.
    assert np.sum(together * alone, axis=1) == pytest.approx([1.0, 1.0, 1.0], abs=2e-3)


def test_long_text_is_truncated_not_refused(model: LocalEmbedder) -> None:
    (vector,) = model.embed(["word " * 5000])

    assert len(vector) == 384


@pytest.mark.parametrize(
    ("texts", "message"),
    [("one string", "not one string"), (["ok", "  "], r"texts\[1\] must be a non-empty string")],
)
def test_bad_input_names_the_field(model: LocalEmbedder, texts: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model.embed(texts)  # type: ignore[arg-type]


def test_empty_list_gives_no_vectors(model: LocalEmbedder) -> None:
    assert model.embed([]) == []


def test_a_model_file_other_than_the_pinned_one_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(embeddings, "_MODEL_SHA256", "0" * 64)

    with pytest.raises(RuntimeError, match="not the pinned 0000"):
        LocalEmbedder().embed(["anything"])


def test_the_model_loads_and_runs_with_every_network_call_refused(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import socket

        def refuse(*args, **kwargs):
            raise OSError("network access attempted")

        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse

        from common.search.embeddings import LocalEmbedder

        print(len(LocalEmbedder().embed(["offline check"])[0]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[3],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "384"


def test_the_local_model_is_the_default_in_production_too() -> None:
    """A function embeds with the model it ships with, needing no service, key or role."""
    for mode in ("development", "production"):
        chosen = embeddings.embedder(Settings(_env_file=None, app_mode=mode))
        assert isinstance(chosen, LocalEmbedder)
        assert chosen.model == "all-MiniLM-L6-v2-onnx-int8"
