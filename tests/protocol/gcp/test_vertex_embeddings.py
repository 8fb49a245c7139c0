"""Vertex AI text embeddings through the real PredictionService client against a loopback server."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import numpy as np
import pytest
from google.api_core import exceptions

from common.platform.settings import Settings
from common.search import embeddings
from common.search.embeddings import VertexEmbedder
from tests.unit.llm.doubles import RecordingLedger

from .loopback import FakeVertex


def fake_vector(dimension: int) -> Callable[[str], list[float]]:
    """A deterministic, not normalised vector per text (its length encodes the text's)."""
    return lambda text: [float(len(text))] + [1.0] * (dimension - 1)


@pytest.fixture
def production(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        return make_settings(
            **{
                "app_mode": "production",
                "embedding_backend": "vertex",
                "REGION": "europe-west4",
                **overrides,
            }
        )

    return make


def test_predict_request_names_the_model_task_and_parameters(
    vertex: FakeVertex, production: Callable[..., Settings]
) -> None:
    vertex.embed = fake_vector(768)
    embedder = embeddings.embedder(production())
    assert isinstance(embedder, VertexEmbedder)

    vectors = embedder.embed(["first text", "second"])

    (request,) = vertex.predicts
    assert request.endpoint == (
        "projects/proj-test/locations/europe-west4/publishers/google/models/text-embedding-005"
    )
    assert [dict(i) for i in request.instances] == [
        {"content": "first text", "task_type": "RETRIEVAL_DOCUMENT"},
        {"content": "second", "task_type": "RETRIEVAL_DOCUMENT"},
    ]
    assert dict(request.parameters) == {"autoTruncate": True}
    assert embedder.dimension == 768
    assert len(vectors) == 2 and all(len(v) == 768 for v in vectors)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0, 1.0])
    assert vectors[0][0] > vectors[1][0]  # order kept: the longer text has the larger component


def test_query_kind_and_output_dimensionality(
    vertex: FakeVertex, production: Callable[..., Settings]
) -> None:
    vertex.embed = fake_vector(256)
    embedder = embeddings.embedder(production(vertex_embedding_dimension=256))

    (vector,) = embedder.embed(["what do customers say?"], kind="query")

    (request,) = vertex.predicts
    assert request.instances[0]["task_type"] == "RETRIEVAL_QUERY"
    assert dict(request.parameters) == {"autoTruncate": True, "outputDimensionality": 256.0}
    assert len(vector) == 256 == embedder.dimension


def test_many_texts_are_split_into_requests_within_the_api_limits(
    vertex: FakeVertex, production: Callable[..., Settings]
) -> None:
    vertex.embed = fake_vector(768)
    texts = [f"snippet number {n}" for n in range(250)]

    vectors = embeddings.embedder(production()).embed(texts)

    assert [len(r.instances) for r in vertex.predicts] == [100, 100, 50]
    assert [i["content"] for r in vertex.predicts for i in r.instances] == texts
    assert len(vectors) == 250


def test_gemini_embedding_sends_one_text_per_request(
    vertex: FakeVertex, production: Callable[..., Settings]
) -> None:
    vertex.embed = fake_vector(3072)

    embeddings.embedder(production(vertex_embedding_model="gemini-embedding-001")).embed(
        ["a", "b", "c"]
    )

    assert [len(r.instances) for r in vertex.predicts] == [1, 1, 1]


def test_a_wrong_dimension_from_the_service_is_an_error(
    vertex: FakeVertex, production: Callable[..., Settings]
) -> None:
    vertex.embed = fake_vector(512)

    with pytest.raises(RuntimeError, match="returned 512 dimensions, expected 768"):
        embeddings.embedder(production()).embed(["text"])


def test_an_unknown_model_needs_its_dimension(production: Callable[..., Settings]) -> None:
    with pytest.raises(ValueError, match="set VERTEX_EMBEDDING_DIMENSION"):
        embeddings.embedder(production(vertex_embedding_model="my-tuned-model"))


def test_each_predict_is_reserved_at_its_bound_and_settled_at_its_tokens(
    vertex: FakeVertex, production: Callable[..., Settings]
) -> None:
    """Paid embeddings go through the ledger like model calls: the bound is the characters at
    the price per token (a token is at least a character), the cost the tokens Vertex counted."""
    vertex.embed = fake_vector(768)
    ledger = RecordingLedger()
    texts = ["x" * 40_000, "y" * 30_000, "short"]  # two Predict calls (60,000 characters each)
    embeddings.embedder(production()).embed(texts, ledger=ledger)

    assert [r.upper_bound_nanos for r in ledger.reservations] == [4_000, 3_001]
    assert [a.cost_nanos for a in ledger.settled] == [1_000, 751]
    assert all(a.task_type == "embedding" and a.ok for a in ledger.settled)
    assert [a.key for a in ledger.settled] == [r.key for r in ledger.reservations]


def test_a_failed_predict_is_settled_at_nothing_and_raised(
    vertex: FakeVertex, production: Callable[..., Settings]
) -> None:
    vertex.embed = fake_vector(768)
    vertex.fail_next = grpc.StatusCode.INVALID_ARGUMENT
    ledger = RecordingLedger()
    with pytest.raises(exceptions.InvalidArgument):
        embeddings.embedder(production()).embed(["text"], ledger=ledger)
    (settled,) = ledger.settled
    assert settled.cost_nanos == 0 and not settled.ok
