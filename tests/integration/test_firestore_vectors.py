"""Firestore vector search on the emulator: the filters it can express answer as Vertex's
documentation says (tests/filter_cases.py), the others are refused; what one process stores,
another finds; bad input writes nothing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from google.cloud import firestore

from common.search.embeddings import LocalEmbedder, local_embedder
from common.search.filters import InvalidFilter
from common.search.firestore import FirestoreVectorIndex
from tests.filter_cases import CASES, DATAPOINTS

DIM = 16
# List-valued metadata is stored and returned, but only Vertex can filter on it.
SCALAR = {
    key: meta
    for key, meta in DATAPOINTS.items()
    if not any(isinstance(v, list) for v in meta.values())
}


def _equality_only(filter: dict[str, Any] | None) -> bool:
    return all(
        isinstance(c, str | bool) or (isinstance(c, list) and c) for c in (filter or {}).values()
    )


EXPRESSIBLE = [(rule, f, want & set(SCALAR)) for rule, f, want in CASES if _equality_only(f)]
REFUSED = [(rule, f) for rule, f, _ in CASES if not _equality_only(f)]


@pytest.fixture
def index(db: firestore.Client) -> FirestoreVectorIndex:
    return FirestoreVectorIndex(db, "vectors", DIM)


@pytest.fixture
def table(index: FirestoreVectorIndex) -> FirestoreVectorIndex:
    rng = np.random.default_rng(7)
    ids = list(SCALAR)
    index.add_embeddings(ids, rng.standard_normal((len(ids), DIM)), [SCALAR[i] for i in ids])
    return index


@pytest.mark.emulator
@pytest.mark.parametrize(
    ("rule", "filter", "expected"), EXPRESSIBLE, ids=[c[0] for c in EXPRESSIBLE]
)
def test_equality_filters_match_vertex_documentation(
    table: FirestoreVectorIndex, rule: str, filter: dict[str, Any] | None, expected: set[str]
) -> None:
    found = table.search(np.ones(DIM), top_k=100, filter=filter)

    assert {m.id for m in found} == expected, rule


@pytest.mark.emulator
@pytest.mark.parametrize(("rule", "filter"), REFUSED, ids=[c[0] for c in REFUSED])
def test_conditions_firestore_cannot_express_are_refused(
    table: FirestoreVectorIndex, rule: str, filter: dict[str, Any]
) -> None:
    with pytest.raises(InvalidFilter, match="use the Vertex index"):
        table.search(np.ones(DIM), top_k=100, filter=filter)


@pytest.mark.emulator
def test_results_carry_metadata_and_similarity_most_similar_first(
    db: firestore.Client,
) -> None:
    index = FirestoreVectorIndex(db, "vectors", 3)
    index.add_embeddings(
        ["near", "far", "opposite"],
        [[1.0, 0.1, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]],
        [{"text": "close one"}, {"text": "orthogonal"}, {"text": "opposite"}],
    )

    found = index.search([2.0, 0.0, 0.0], top_k=3)

    assert [m.id for m in found] == ["near", "far", "opposite"]
    assert found[0].metadata == {"text": "close one"}
    assert found[0].similarity == pytest.approx(1 / np.sqrt(1.01), abs=1e-5)
    assert found[1].similarity == pytest.approx(0.0, abs=1e-5)
    assert found[2].similarity == pytest.approx(-1.0, abs=1e-5)


@pytest.mark.emulator
def test_adding_an_existing_id_replaces_it(db: firestore.Client) -> None:
    index = FirestoreVectorIndex(db, "vectors", 2)
    index.add_embeddings(["x"], [[1.0, 0.0]], [{"v": "old"}])
    index.add_embeddings(["x"], [[0.0, 1.0]], [{"v": "new"}])

    found = index.search([0.0, 1.0], top_k=10)

    assert [(m.id, m.metadata) for m in found] == [("x", {"v": "new"})]
    index.delete(["x", "never-there"])
    assert index.search([0.0, 1.0], top_k=10) == []


@pytest.mark.emulator
@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda i: i.add_embeddings(["a", "a"], [[1.0, 0], [1.0, 0]], [{}, {}]), "unique"),
        (lambda i: i.add_embeddings(["a/b"], [[1.0, 0]], [{}]), r"ids\[0\] = 'a/b' is invalid"),
        (lambda i: i.add_embeddings(["__x__"], [[1.0, 0]], [{}]), r"ids\[0\] = '__x__'"),
        (lambda i: i.add_embeddings(["a"], [[1.0, 0], [2.0, 0]], [{}]), "one per id"),
        (lambda i: i.add_embeddings(["a"], [[0.0, 0.0]], [{}]), "all zeros"),
        (lambda i: i.add_embeddings(["a"], [[float("nan"), 0]], [{}]), "NaN"),
        (lambda i: i.add_embeddings(["a"], [[1.0, 0]], [{"t": object()}]), r"metadata\[0\]"),
        (lambda i: i.add_embeddings(["a"], [[1.0, 0]], [{"embedding": 1}]), "may not use"),
        (lambda i: i.add_embeddings(["a"], [[1.0, 0, 0]], [{}]), "dimension 3 but this index"),
        (lambda i: i.search([1.0, 0.0], top_k=0), "top_k"),
        (lambda i: i.search([1.0, 0.0], top_k=1001), "top_k"),
        (lambda i: i.search([0.0, 0.0], top_k=1), "all zeros"),
        (lambda i: i.search([1.0, 0.0, 0.0], top_k=1), "dimension 2"),
    ],
)
def test_bad_input_is_refused_with_the_reason_and_writes_nothing(
    db: firestore.Client, call: Any, message: str
) -> None:
    index = FirestoreVectorIndex(db, "vectors", 2)
    with pytest.raises(ValueError, match=message):
        call(index)
    assert list(db.collection("vectors").list_documents()) == []


@pytest.mark.emulator
def test_evidence_search_finds_the_relevant_snippet_of_the_same_business(
    db: firestore.Client,
) -> None:
    model: LocalEmbedder = local_embedder()
    snippets = {
        "acme-1": ("acme", "Acme's trail shoes are praised for grip on wet rocks."),
        "acme-2": ("acme", "Acme's founder started the company in a garage in 2009."),
        "acme-3": ("acme", "Customers complain that Acme's delivery takes two weeks."),
        "globex-1": ("globex", "Globex shoes have the best grip on wet trails."),
    }
    index = FirestoreVectorIndex(db, "evidence", model.dimension)
    ids = list(snippets)
    index.add_embeddings(
        ids,
        model.embed([snippets[i][1] for i in ids]),
        [{"business_id": snippets[i][0], "text": snippets[i][1]} for i in ids],
    )
    (query,) = model.embed(["Which shoes grip well on slippery trails?"], kind="query")

    found = index.search(query, top_k=2, filter={"business_id": "acme"})

    assert found[0].id == "acme-1"
    assert all(m.metadata["business_id"] == "acme" for m in found)
