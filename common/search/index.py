"""Semantic search: one interface, two implementations behind it.

- `add_embeddings(ids, embeddings, metadata)` stores (or replaces) vectors with a JSON metadata
  dict each;
- `search(query_embedding, top_k, filter)` returns up to `top_k` `Match`es (id, cosine similarity,
  metadata), most similar first;
- `delete(ids)` removes vectors (unknown ids are ignored, so a replay is harmless).

Ids are 1-200 characters of letters, digits and `_ . : = -`, starting with a letter or digit
(they double as Firestore document ids). Similarity is cosine: vectors are L2-normalised on the
way in. Filters: `common.search.filters`.

Implementations: Firestore vector search (`common.search.firestore`, the default: the same
database locally, on the emulator, and in production, shared by every function) and Vertex AI
Vector Search (`common.search.vertex`, for scale). See docs/decisions/004.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from common.search.filters import Filter

Vector = Sequence[float] | npt.NDArray[np.floating[Any]]
Vectors = Sequence[Sequence[float]] | npt.NDArray[np.floating[Any]]
MAX_TOP_K = 1000
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:=-]{0,199}$")


@dataclass(frozen=True)
class Match:
    """One search result."""

    id: str
    similarity: float
    """Cosine similarity in [-1, 1]; higher is closer."""
    metadata: dict[str, Any]

    @property
    def distance(self) -> float:
        """Cosine distance, 1 - similarity (0 for the same direction)."""
        return 1.0 - self.similarity


class VectorIndex(Protocol):
    """What RaptorFlow needs from a vector database."""

    def add_embeddings(
        self, ids: Sequence[str], embeddings: Vectors, metadata: Sequence[Mapping[str, Any]]
    ) -> None:
        """Store (or replace) one vector and one metadata dict per id."""
        ...

    def search(
        self, query_embedding: Vector, top_k: int = 10, filter: Filter | None = None
    ) -> list[Match]:
        """The `top_k` most similar vectors that pass `filter`, most similar first."""
        ...

    def delete(self, ids: Sequence[str]) -> None:
        """Remove these ids; unknown ids are ignored."""
        ...


def check_ids(ids: Sequence[str], *, unique: bool) -> list[str]:
    if isinstance(ids, str):
        raise ValueError("ids must be a list of strings, not one string")
    checked = list(ids)
    for position, item in enumerate(checked):
        if not isinstance(item, str) or not _ID.fullmatch(item):
            raise ValueError(
                f"ids[{position}] = {item!r} is invalid: use 1-200 letters, digits or _.:=- "
                "starting with a letter or digit"
            )
    if unique and len(set(checked)) != len(checked):
        raise ValueError("ids must be unique within one call")
    return checked


def unit_rows(embeddings: Vectors, count: int) -> npt.NDArray[np.float32]:
    matrix = np.asarray(embeddings, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != count or matrix.shape[1] == 0:
        raise ValueError(
            f"embeddings must be {count} vectors of one dimension (one per id), "
            f"got shape {matrix.shape}"
        )
    if not np.isfinite(matrix).all():
        raise ValueError("embeddings contain NaN or infinite values")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"embeddings[{int(np.flatnonzero(norms[:, 0] == 0)[0])}] is all zeros")
    unit: npt.NDArray[np.float32] = (matrix / norms).astype(np.float32)
    return unit


def unit_query(query_embedding: Vector, dimension: int | None) -> npt.NDArray[np.float32]:
    query = np.asarray(query_embedding, dtype=np.float32)
    if query.ndim != 1 or (dimension is not None and query.shape[0] != dimension):
        raise ValueError(
            f"query_embedding must be one vector of dimension {dimension}, got shape {query.shape}"
        )
    norm = float(np.linalg.norm(query))
    if not math.isfinite(norm) or norm == 0:
        raise ValueError("query_embedding must be finite and not all zeros")
    unit: npt.NDArray[np.float32] = (query / norm).astype(np.float32)
    return unit


def check_top_k(top_k: int) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise ValueError(f"top_k must be an integer from 1 to {MAX_TOP_K}, got {top_k!r}")


def check_metadata(metadata: Sequence[Mapping[str, Any]], count: int) -> list[dict[str, Any]]:
    items = list(metadata)
    if len(items) != count:
        raise ValueError(f"metadata must hold one dict per id: {len(items)} for {count} ids")
    checked = []
    for position, item in enumerate(items):
        if not isinstance(item, Mapping) or not all(isinstance(k, str) and k for k in item):
            raise ValueError(f"metadata[{position}] must be a dict with non-empty string keys")
        try:
            # A JSON round trip: what is stored is exactly what a search will return.
            checked.append(json.loads(json.dumps(item, allow_nan=False)))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"metadata[{position}] is not JSON-serialisable: {exc}") from None
    return checked


def checked_batch(
    ids: Sequence[str], embeddings: Vectors, metadata: Sequence[Mapping[str, Any]]
) -> tuple[list[str], npt.NDArray[np.float32], list[dict[str, Any]]]:
    """What every `add_embeddings` starts with: the ids, the unit rows and the metadata, each
    checked (`ValueError` naming the first problem)."""
    new_ids = check_ids(ids, unique=True)
    if not new_ids:
        return [], np.zeros((0, 0), dtype=np.float32), []
    return new_ids, unit_rows(embeddings, len(new_ids)), check_metadata(metadata, len(new_ids))
