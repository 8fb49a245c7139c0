"""Firestore vector search: each datapoint is a document of the vector collection, its metadata
as fields beside the `embedding` vector field, found with a KNN query (`find_nearest`, cosine
distance) pre-filtered by equality on metadata fields.

The same code runs on the emulator and in production, and every function sees what any other
stored: the research phase's evidence reaches the later phases' prompts. Production needs a
vector index on the collection: `embedding` (flat, the model's dimension) with each filtered
field (terraform/firestore.tf declares it for `business_id`).

Filters (`common.search.filters`): a string or bool condition (equality) or a list of at most 30
strings (any of them), on metadata fields holding one string or bool. Deny lists, numeric
conditions and conditions on list-valued fields are refused with `InvalidFilter`: Firestore's
pre-filter cannot give Vertex's answer for them (use the Vertex index).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.base_vector_query import DistanceMeasure
from google.cloud.firestore_v1.vector import Vector as FirestoreVector

from common.platform.settings import Settings
from common.platform.store import db
from common.search.filters import Filter, InvalidFilter, parse_filter
from common.search.index import (
    Match,
    Vector,
    Vectors,
    check_ids,
    check_top_k,
    checked_batch,
    unit_query,
)

EMBEDDING = "embedding"
_DISTANCE = "_distance"
_MAX_IN = 30  # values of one `in` filter (Firestore's limit)
_BATCH = 400  # writes per batch (Firestore allows 500)


class FirestoreVectorIndex:
    """Vector search over one Firestore collection.

    Args:
        client: The Firestore client.
        collection: The collection holding one document per datapoint.
        dimension: The embedding dimension the collection's vector index was made for.
    """

    def __init__(self, client: firestore.Client, collection: str, dimension: int) -> None:
        self._db = client
        self._collection = client.collection(collection)
        self.dimension = dimension

    @classmethod
    def from_settings(cls, settings: Settings) -> FirestoreVectorIndex:
        from common.search.embeddings import embedder

        return cls(db(settings.project_id), settings.vector_collection, embedder().dimension)

    def add_embeddings(
        self, ids: Sequence[str], embeddings: Vectors, metadata: Sequence[Mapping[str, Any]]
    ) -> None:
        """Store (or replace) one document per id, in batches of `_BATCH` (each atomic)."""
        new_ids, matrix, metas = checked_batch(ids, embeddings, metadata)
        if not new_ids:
            return
        if matrix.shape[1] != self.dimension:
            raise ValueError(
                f"embeddings have dimension {matrix.shape[1]} but this index holds "
                f"{self.dimension}: a different embedding model needs its own collection"
            )
        for position, meta in enumerate(metas):
            if EMBEDDING in meta:
                raise ValueError(f"metadata[{position}] may not use the key {EMBEDDING!r}")
        for start in range(0, len(new_ids), _BATCH):
            batch = self._db.batch()
            for item, row, meta in zip(
                new_ids[start : start + _BATCH],
                matrix[start : start + _BATCH],
                metas[start : start + _BATCH],
                strict=True,
            ):
                batch.set(
                    self._collection.document(item),
                    {**meta, EMBEDDING: FirestoreVector(row.tolist())},
                )
            batch.commit()

    def search(
        self, query_embedding: Vector, top_k: int = 10, filter: Filter | None = None
    ) -> list[Match]:
        """The `top_k` nearest documents passing `filter`, most similar first."""
        check_top_k(top_k)
        query = unit_query(query_embedding, self.dimension)
        base: Any = self._collection
        for field, value in _conditions(filter):
            op = "in" if isinstance(value, list) else "=="
            base = base.where(filter=FieldFilter(field, op, value))
        nearest = base.find_nearest(
            vector_field=EMBEDDING,
            query_vector=FirestoreVector(query.tolist()),
            distance_measure=DistanceMeasure.COSINE,
            limit=top_k,
            distance_result_field=_DISTANCE,
        )
        matches = []
        for snapshot in nearest.stream():
            data = snapshot.to_dict() or {}
            distance = float(data.pop(_DISTANCE))
            data.pop(EMBEDDING, None)
            matches.append(Match(id=snapshot.id, similarity=1.0 - distance, metadata=data))
        return matches

    def delete(self, ids: Sequence[str]) -> None:
        """Remove these documents; unknown ids are ignored."""
        gone = list(dict.fromkeys(check_ids(ids, unique=False)))
        for start in range(0, len(gone), _BATCH):
            batch = self._db.batch()
            for item in gone[start : start + _BATCH]:
                batch.delete(self._collection.document(item))
            batch.commit()


def _conditions(filter: Filter | None) -> list[tuple[str, str | bool | list[str]]]:
    """(field, value or values) per condition, after the grammar's own checks."""
    parse_filter(filter)  # the grammar's errors first, worded the same for every index
    conditions: list[tuple[str, str | bool | list[str]]] = []
    for field, condition in (filter or {}).items():
        if isinstance(condition, str | bool):
            conditions.append((field, condition))
        elif isinstance(condition, list | tuple) and len(condition) <= _MAX_IN:
            conditions.append((field, list(condition)))
        else:
            raise InvalidFilter(
                f"filter {field!r}: the Firestore index filters by equality only (a string, a "
                f"bool, or a list of at most {_MAX_IN} strings); use the Vertex index for "
                f"{condition!r}"
            )
    return conditions
