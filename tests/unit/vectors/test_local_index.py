"""The local exact index: Vertex's filter semantics, exact recall, persistence, concurrency."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.platform.settings import Settings
from common.search import index as vectors
from common.search.index import InvalidFilter, LocalVectorIndex, parse_filter

from .filter_cases import CASES, DATAPOINTS

DIM = 384


def random_unit(rng: np.random.Generator, count: int, dim: int = DIM) -> np.ndarray:
    matrix = rng.standard_normal((count, dim))
    unit: np.ndarray = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return unit


@pytest.fixture
def index(tmp_path: Path) -> LocalVectorIndex:
    return LocalVectorIndex(tmp_path / "vectors")


@pytest.fixture
def table_index(index: LocalVectorIndex) -> LocalVectorIndex:
    rng = np.random.default_rng(7)
    ids = list(DATAPOINTS)
    index.add_embeddings(ids, random_unit(rng, len(ids), 16), [DATAPOINTS[i] for i in ids])
    return index


@pytest.mark.parametrize(("rule", "filter", "expected"), CASES, ids=[c[0] for c in CASES])
def test_filter_semantics_match_vertex_documentation(
    table_index: LocalVectorIndex, rule: str, filter: dict[str, Any] | None, expected: set[str]
) -> None:
    query = np.ones(16)
    found = table_index.search(query, top_k=100, filter=filter)

    assert {m.id for m in found} == expected, rule


def test_results_carry_metadata_and_similarity_most_similar_first(
    index: LocalVectorIndex,
) -> None:
    index.add_embeddings(
        ["near", "far", "opposite"],
        [[1.0, 0.1, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]],
        [{"text": "close one"}, {"text": "orthogonal"}, {"text": "opposite"}],
    )

    found = index.search([2.0, 0.0, 0.0], top_k=3)

    assert [m.id for m in found] == ["near", "far", "opposite"]
    assert found[0].metadata == {"text": "close one"}
    assert found[0].similarity == pytest.approx(1 / np.sqrt(1.01), abs=1e-6)
    assert found[1].similarity == pytest.approx(0.0, abs=1e-6)
    assert found[2].similarity == pytest.approx(-1.0, abs=1e-6)
    assert found[2].distance == pytest.approx(2.0, abs=1e-6)


def brute_force(unit: np.ndarray, rows: list[int], query: np.ndarray, k: int) -> list[int]:
    """The reference: cosine in float64 over the rows a plain Python predicate kept, sorted."""
    scores = unit @ (query / np.linalg.norm(query))
    return sorted(rows, key=lambda r: -scores[r])[:k]


def test_recall_at_10_is_exact_on_20k_vectors_with_and_without_filters(
    index: LocalVectorIndex,
) -> None:
    rng = np.random.default_rng(2024)
    count = 20_000
    matrix = rng.standard_normal((count, DIM))
    businesses = [f"biz-{n}" for n in range(20)]
    metas = [
        {
            "business_id": businesses[int(rng.integers(20))],
            "kind": ["evidence", "description", "draft"][int(rng.integers(3))],
            "created_at": int(rng.integers(0, 1000)),
        }
        for _ in range(count)
    ]
    ids = [f"v{n}" for n in range(count)]
    index.add_embeddings(ids, matrix, metas)
    filters: list[tuple[dict[str, Any] | None, Any]] = [
        (None, lambda m: True),
        ({"business_id": "biz-3"}, lambda m: m["business_id"] == "biz-3"),
        (
            {"business_id": ["biz-1", "biz-2"], "kind": {"deny": ["draft"]}},
            lambda m: m["business_id"] in ("biz-1", "biz-2") and m["kind"] != "draft",
        ),
        (
            {"kind": "evidence", "created_at": {">=": 100, "<": 900}},
            lambda m: m["kind"] == "evidence" and 100 <= m["created_at"] < 900,
        ),
    ]
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    kept = [[r for r in range(count) if keep(metas[r])] for _, keep in filters]
    hits = total = 0
    for query in rng.standard_normal((25, DIM)):
        for (filter, _), rows in zip(filters, kept, strict=True):
            expected = brute_force(unit, rows, query, 10)
            found = index.search(query, top_k=10, filter=filter)
            assert len(found) == 10
            hits += len({ids[r] for r in expected} & {m.id for m in found})
            total += 10

    assert hits / total == 1.0


def test_a_restart_keeps_every_vector_and_its_metadata(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    first = LocalVectorIndex(tmp_path / "v")
    matrix = random_unit(rng, 500)
    ids = [f"id-{n}" for n in range(500)]
    first.add_embeddings(ids, matrix, [{"n": n, "tag": f"t{n % 3}"} for n in range(500)])
    first.add_embeddings(["id-7"], random_unit(rng, 1), [{"n": 7, "tag": "replaced"}])
    first.delete(["id-9", "id-404", "never-existed"])
    before = [first.search(q, top_k=5, filter={"tag": "t1"}) for q in matrix[:20]]
    first.close()

    second = LocalVectorIndex(tmp_path / "v")

    assert len(second) == 498
    assert second.dimension == DIM
    assert [second.search(q, top_k=5, filter={"tag": "t1"}) for q in matrix[:20]] == before
    assert second.search(matrix[5], top_k=1)[0].id == "id-5"
    assert {m.id for m in second.search(matrix[0], top_k=1000)} == set(ids) - {"id-9", "id-404"}
    assert second.search(matrix[0], top_k=1, filter={"tag": "replaced"})[0].metadata == {
        "n": 7,
        "tag": "replaced",
    }


def test_a_write_through_another_connection_is_seen_by_the_next_search(tmp_path: Path) -> None:
    reader = LocalVectorIndex(tmp_path / "v")
    writer = LocalVectorIndex(tmp_path / "v")  # as another process would open it
    writer.add_embeddings(["a"], [[1.0, 0.0]], [{"business_id": "acme"}])

    assert [m.id for m in reader.search([1.0, 0.0], top_k=5)] == ["a"]
    writer.delete(["a"])
    assert reader.search([1.0, 0.0], top_k=5) == []


def test_readers_in_threads_see_whole_batches_while_a_writer_adds(index: LocalVectorIndex) -> None:
    rng = np.random.default_rng(11)
    batch = 200
    index.add_embeddings([f"b0-{n}" for n in range(batch)], random_unit(rng, batch), [{}] * batch)
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def reader() -> None:
        query = rng.standard_normal(DIM)
        while not stop.is_set():
            try:
                found = index.search(query, top_k=1000)
                seen.append(len(found))
            except BaseException as exc:  # a torn read would surface here
                errors.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    for b in range(1, 5):
        index.add_embeddings(
            [f"b{b}-{n}" for n in range(batch)], random_unit(rng, batch), [{}] * batch
        )
    stop.set()
    for thread in threads:
        thread.join()

    assert not errors
    assert seen and all(count % batch == 0 for count in seen)
    assert len(index.search(rng.standard_normal(DIM), top_k=1000)) == 5 * batch


def test_adding_an_existing_id_replaces_it(index: LocalVectorIndex) -> None:
    index.add_embeddings(["x", "y"], [[1.0, 0.0], [0.0, 1.0]], [{"v": 1}, {"v": 2}])
    index.add_embeddings(["x"], [[0.0, -1.0]], [{"v": 3}])

    assert len(index) == 2
    assert [(m.id, m.metadata) for m in index.search([0.0, -1.0], top_k=1)] == [("x", {"v": 3})]


def test_returned_metadata_is_a_copy(index: LocalVectorIndex) -> None:
    index.add_embeddings(["x"], [[1.0, 0.0]], [{"tags": ["a"]}])
    index.search([1.0, 0.0], top_k=1)[0].metadata["tags"].append("mutated")

    assert index.search([1.0, 0.0], top_k=1)[0].metadata == {"tags": ["a"]}


def test_long_text_is_stored_but_not_a_filter_token(index: LocalVectorIndex) -> None:
    text = "evidence " * 100
    index.add_embeddings(["x"], [[1.0, 0.0]], [{"text": text, "business_id": "acme"}])

    assert index.search([1.0, 0.0], top_k=1, filter={"business_id": "acme"})[0].metadata == {
        "text": text,
        "business_id": "acme",
    }
    with pytest.raises(InvalidFilter, match="at most 256 characters"):
        index.search([1.0, 0.0], top_k=1, filter={"text": text})


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda i: i.add_embeddings(["a", "a"], [[1.0], [1.0]], [{}, {}]), "unique"),
        (lambda i: i.add_embeddings(["a/b"], [[1.0]], [{}]), r"ids\[0\] = 'a/b' is invalid"),
        (lambda i: i.add_embeddings(["a"], [[1.0], [2.0]], [{}]), "one per id"),
        (lambda i: i.add_embeddings(["a"], [[0.0, 0.0]], [{}]), "all zeros"),
        (lambda i: i.add_embeddings(["a"], [[float("nan")]], [{}]), "NaN"),
        (lambda i: i.add_embeddings(["a"], [[1.0]], [{"t": object()}]), r"metadata\[0\]"),
        (lambda i: i.add_embeddings(["a"], [[1.0]], []), "one dict per id"),
        (lambda i: i.add_embeddings("abc", [[1.0]], [{}]), "not one string"),
        (lambda i: i.search([1.0, 0.0], top_k=0), "top_k"),
        (lambda i: i.search([1.0, 0.0], top_k=1001), "top_k"),
        (lambda i: i.search([0.0, 0.0], top_k=1), "all zeros"),
    ],
)
def test_bad_input_is_refused_with_the_field_and_reason(
    index: LocalVectorIndex, call: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        call(index)
    assert len(index) == 0


def test_dimension_mismatch_is_refused_and_nothing_is_written(index: LocalVectorIndex) -> None:
    index.add_embeddings(["a"], [[1.0, 0.0]], [{}])

    with pytest.raises(ValueError, match="dimension 3 but this index holds 2"):
        index.add_embeddings(["b"], [[1.0, 0.0, 0.0]], [{}])
    with pytest.raises(ValueError, match="dimension 2"):
        index.search([1.0, 0.0, 0.0], top_k=1)
    assert len(index) == 1


@pytest.mark.parametrize(
    ("filter", "message"),
    [
        ({"business_id": []}, "empty list would match nothing"),
        ({"kind": {"allow": [], "deny": ["x"]}}, "empty allow list"),
        ({"kind": {"allow": [], "deny": []}}, "both empty"),
        ({"kind": {"allow": ["a"], "<": 3}}, "either 'allow'/'deny' or comparison"),
        ({"price": {"<": "3"}}, "needs a number"),
        ({"price": {"<": float("inf")}}, "finite"),
        ({"kind": None}, "is not a string, list, bool, number or dict"),
        ({"kind": [1, 2]}, "tokens are strings"),
        ({"": "x"}, "non-empty string"),
    ],
)
def test_bad_filters_name_the_namespace_and_reason(filter: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidFilter, match=message):
        parse_filter(filter)


def test_factory_gives_the_local_index_in_development(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, vector_dir=tmp_path / "vdir")

    index = vectors.vector_index(settings)

    assert isinstance(index, LocalVectorIndex)
    assert index.directory == tmp_path / "vdir"
    assert vectors.vector_index(settings) is index
    assert vectors.backend(Settings(_env_file=None, app_mode="production")) == "vertex"
