"""Vertex AI Vector Search via the real aiplatform clients (loopback gRPC) + Firestore emulator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import pytest
from google.api_core import exceptions
from google.cloud import aiplatform_v1, firestore

from common.platform.settings import Settings
from common.search import backend as vectors
from common.search.vertex import VertexVectorIndex
from tests.filter_cases import CASES, DATAPOINTS

from .loopback import FakeVertex

pytestmark = pytest.mark.emulator

INDEX = "projects/proj-test/locations/europe-west1/indexes/123"
ENDPOINT = "projects/proj-test/locations/europe-west1/indexEndpoints/456"
DEPLOYED = "raptorflow_evidence"
Operator = aiplatform_v1.IndexDatapoint.NumericRestriction.Operator


def vertex_semantics(
    query: aiplatform_v1.FindNeighborsRequest.Query,
    points: dict[str, aiplatform_v1.IndexDatapoint],
) -> list[tuple[str, float]]:
    """Vertex's documented matching rules applied to the stored datapoints, by dot product."""
    compare = {
        Operator.LESS: lambda a, b: a < b,
        Operator.LESS_EQUAL: lambda a, b: a <= b,
        Operator.EQUAL: lambda a, b: a == b,
        Operator.GREATER_EQUAL: lambda a, b: a >= b,
        Operator.GREATER: lambda a, b: a > b,
        Operator.NOT_EQUAL: lambda a, b: a != b,
    }

    def matches(point: aiplatform_v1.IndexDatapoint) -> bool:
        tokens = {r.namespace: set(r.allow_list) for r in point.restricts}
        numbers = {n.namespace: n.value_double for n in point.numeric_restricts}
        for restrict in query.datapoint.restricts:
            present = tokens.get(restrict.namespace, set())
            if restrict.allow_list and not present & set(restrict.allow_list):
                return False
            if present & set(restrict.deny_list):
                return False
        for numeric in query.datapoint.numeric_restricts:
            if numeric.namespace not in numbers:
                return False
            if not compare[numeric.op](numbers[numeric.namespace], numeric.value_double):
                return False
        return True

    vector = np.asarray(query.datapoint.feature_vector)
    scored = [
        (pid, float(vector @ np.asarray(point.feature_vector)))
        for pid, point in points.items()
        if matches(point)
    ]
    return sorted(scored, key=lambda item: -item[1])


@pytest.fixture
def index(
    vertex: FakeVertex, make_settings: Callable[..., Settings], project_id: str
) -> VertexVectorIndex:
    vertex.neighbors = vertex_semantics
    settings = make_settings(
        GOOGLE_CLOUD_PROJECT=project_id,
        vector_backend="vertex",
        vertex_index=INDEX,
        vertex_index_endpoint=ENDPOINT,
        vertex_deployed_index_id=DEPLOYED,
    )
    built = vectors.vector_index(settings)
    assert isinstance(built, VertexVectorIndex)
    return built


def test_add_embeddings_upserts_datapoints_with_restricts_and_stores_metadata(
    index: VertexVectorIndex, vertex: FakeVertex, db: firestore.Client
) -> None:
    long_text = "an evidence snippet " * 20
    index.add_embeddings(
        ["ev-1", "ev-2"],
        [[3.0, 4.0], [0.0, 2.0]],
        [
            {"business_id": "acme", "tags": ["pricing", "tiktok"], "created_at": 1700000000},
            {"business_id": "acme", "text": long_text, "public": True, "score": 0.25, "x": None},
        ],
    )

    assert len(vertex.upserts) == 1
    request = vertex.upserts[0]
    assert request.index == INDEX
    assert not request.update_mask.paths
    first, second = request.datapoints
    assert first.datapoint_id == "ev-1"
    assert list(first.feature_vector) == pytest.approx([0.6, 0.8])
    assert [(r.namespace, list(r.allow_list), list(r.deny_list)) for r in first.restricts] == [
        ("business_id", ["acme"], []),
        ("tags", ["pricing", "tiktok"], []),
    ]
    assert [(n.namespace, n.value_double, n.op) for n in first.numeric_restricts] == [
        ("created_at", 1700000000.0, Operator.OPERATOR_UNSPECIFIED)
    ]
    assert first.numeric_restricts[0].value_int == 0
    assert second.datapoint_id == "ev-2"
    assert list(second.feature_vector) == pytest.approx([0.0, 1.0])
    assert [(r.namespace, list(r.allow_list)) for r in second.restricts] == [
        ("business_id", ["acme"]),
        ("public", ["true"]),
    ]
    assert [(n.namespace, n.value_double) for n in second.numeric_restricts] == [("score", 0.25)]
    assert not first.crowding_tag.crowding_attribute

    stored = db.collection("vector_metadata").document("ev-2").get().to_dict()
    assert stored == {
        "metadata": {
            "business_id": "acme",
            "text": long_text,
            "public": True,
            "score": 0.25,
            "x": None,
        }
    }


def test_search_sends_find_neighbors_with_restricts_and_returns_metadata(
    index: VertexVectorIndex, vertex: FakeVertex
) -> None:
    index.add_embeddings(
        ["a", "b", "c"],
        [[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]],
        [
            {"business_id": "acme", "kind": "evidence", "n": 1},
            {"business_id": "acme", "kind": "draft", "n": 2},
            {"business_id": "globex", "kind": "evidence", "n": 3},
        ],
    )

    found = index.search(
        [2.0, 0.0],
        top_k=7,
        filter={"business_id": ["acme", "initech"], "kind": {"deny": ["draft"]}, "n": {">=": 1}},
    )

    request = vertex.finds[-1]
    assert request.index_endpoint == ENDPOINT
    assert request.deployed_index_id == DEPLOYED
    assert request.return_full_datapoint is False
    (query,) = request.queries
    assert query.neighbor_count == 7
    assert query.datapoint.datapoint_id == ""
    assert list(query.datapoint.feature_vector) == pytest.approx([1.0, 0.0])
    assert [
        (r.namespace, list(r.allow_list), list(r.deny_list)) for r in query.datapoint.restricts
    ] == [("business_id", ["acme", "initech"], []), ("kind", [], ["draft"])]
    assert [(n.namespace, n.value_double, n.op) for n in query.datapoint.numeric_restricts] == [
        ("n", 1.0, Operator.GREATER_EQUAL)
    ]
    assert [(m.id, m.metadata) for m in found] == [
        ("a", {"business_id": "acme", "kind": "evidence", "n": 1})
    ]
    assert found[0].similarity == pytest.approx(1.0)


@pytest.mark.parametrize(("rule", "filter", "expected"), CASES, ids=[c[0] for c in CASES])
def test_filter_table_holds_through_vertex_restricts(
    index: VertexVectorIndex, rule: str, filter: dict[str, Any] | None, expected: set[str]
) -> None:
    ids = list(DATAPOINTS)
    rng = np.random.default_rng(5)
    index.add_embeddings(ids, rng.standard_normal((len(ids), 8)), [DATAPOINTS[i] for i in ids])

    found = index.search(np.ones(8), top_k=100, filter=filter)

    assert {m.id for m in found} == expected, rule
    assert all(m.metadata == DATAPOINTS[m.id] for m in found)


def test_delete_removes_datapoints_then_metadata(
    index: VertexVectorIndex, vertex: FakeVertex, db: firestore.Client
) -> None:
    index.add_embeddings(["a", "b"], [[1.0, 0.0], [0.0, 1.0]], [{"k": "x"}, {"k": "y"}])

    index.delete(["a", "a", "unknown"])

    assert [(r.index, list(r.datapoint_ids)) for r in vertex.removes] == [(INDEX, ["a", "unknown"])]
    assert not db.collection("vector_metadata").document("a").get().exists
    assert db.collection("vector_metadata").document("b").get().exists
    assert [m.id for m in index.search([1.0, 1.0], top_k=5)] == ["b"]


def test_a_neighbour_whose_metadata_is_gone_is_skipped(
    index: VertexVectorIndex, db: firestore.Client
) -> None:
    index.add_embeddings(["a", "b"], [[1.0, 0.0], [0.9, 0.1]], [{"k": "x"}, {"k": "y"}])
    db.collection("vector_metadata").document("a").delete()  # as during a concurrent delete

    assert [m.id for m in index.search([1.0, 0.0], top_k=5)] == ["b"]


def test_a_failed_upsert_surfaces_and_a_replay_completes_it(
    index: VertexVectorIndex, vertex: FakeVertex
) -> None:
    vertex.fail_next = grpc.StatusCode.INVALID_ARGUMENT

    with pytest.raises(exceptions.InvalidArgument):
        index.add_embeddings(["a"], [[1.0, 0.0]], [{"k": "x"}])
    assert index.search([1.0, 0.0], top_k=5) == []

    index.add_embeddings(["a"], [[1.0, 0.0]], [{"k": "x"}])
    assert [m.id for m in index.search([1.0, 0.0], top_k=5)] == ["a"]


def test_missing_vertex_settings_are_named(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(vector_backend="vertex", vertex_endpoint=None)

    with pytest.raises(ValueError) as caught:
        vectors.vector_index(settings)
    assert str(caught.value) == (
        "vector_backend=vertex needs these settings: VERTEX_INDEX, VERTEX_INDEX_ENDPOINT, "
        "VERTEX_DEPLOYED_INDEX_ID, VERTEX_MATCH_ENDPOINT"
    )
