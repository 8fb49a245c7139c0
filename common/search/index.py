"""Semantic search: one interface, a local exact index (default) and Vertex AI Vector Search.

Both implementations take the same calls and give the same answers:

- `add_embeddings(ids, embeddings, metadata)` stores (or replaces) vectors with a JSON metadata
  dict each;
- `search(query_embedding, top_k, filter)` returns up to `top_k` `Match`es (id, cosine similarity,
  metadata), most similar first;
- `delete(ids)` removes vectors (unknown ids are ignored, so a replay is harmless).

Ids are 1-200 characters of letters, digits and `_ . : = -`, starting with a letter or digit
(they double as Firestore document ids). Similarity is cosine: vectors are L2-normalised on the
way in, so the Vertex index must use DOT_PRODUCT_DISTANCE (with UNIT_L2_NORM).

Metadata and filters follow Vertex AI Vector Search's restricts. A metadata value that is a
string of at most 256 characters, a list of such strings or a bool ("true"/"false") puts tokens in
a *string namespace* named by its key; an int or float (finite) sets a *numeric namespace*; any
other value (longer text, dicts, None) is stored and returned but cannot be filtered on.

A filter is a dict from namespace to a condition:

    {"business_id": "acme"}                          token equals "acme"
    {"business_id": ["acme", "globex"]}              any of these tokens
    {"kind": {"allow": ["evidence"], "deny": ["draft"]}}
    {"kind": {"deny": ["draft"]}}                    anything without the token "draft"
    {"is_public": True}                              token "true"
    {"year": 2024}                                   numeric EQUAL
    {"created_at": {">=": 1.7e9, "<": 1.8e9}}        numeric, ops < <= == >= > !=

Semantics (Vertex's): conditions on different namespaces are ANDed; the tokens of one allow list
are ORed; a datapoint with any denied token is excluded; a deny-only condition matches every
datapoint without a denied token, including those that lack the namespace; an allow list never
matches a datapoint that lacks the namespace; a numeric condition compares the datapoint's value
with the query's (`value <= 10` for {"<=": 10}) and never matches a datapoint without that
numeric namespace. An empty allow list is refused (in Vertex it would silently match everything).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from common.platform.settings import Settings, get_settings

if TYPE_CHECKING:
    from google.cloud import aiplatform_v1, firestore

logger = logging.getLogger(__name__)

Vector = Sequence[float] | npt.NDArray[np.floating[Any]]
Vectors = Sequence[Sequence[float]] | npt.NDArray[np.floating[Any]]
Filter = Mapping[str, Any]
NumericOp = Literal["LESS", "LESS_EQUAL", "EQUAL", "GREATER_EQUAL", "GREATER", "NOT_EQUAL"]

MAX_TOKEN_LENGTH = 256
MAX_TOP_K = 1000
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:=-]{0,199}$")
_OPS: dict[str, NumericOp] = {
    "<": "LESS",
    "<=": "LESS_EQUAL",
    "==": "EQUAL",
    ">=": "GREATER_EQUAL",
    ">": "GREATER",
    "!=": "NOT_EQUAL",
}


class InvalidFilter(ValueError):
    """A filter that cannot be expressed; the message names the namespace and the reason."""


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


@dataclass(frozen=True)
class TokenRestrict:
    """A string-namespace condition: some allowed token (if any are listed), no denied one."""

    namespace: str
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()


@dataclass(frozen=True)
class NumericRestrict:
    """A numeric-namespace condition: `datapoint value <op> value`."""

    namespace: str
    op: NumericOp
    value: float


@dataclass(frozen=True)
class Restricts:
    """A parsed filter (query side) or a datapoint's filterable metadata (tokens, numbers)."""

    tokens: tuple[TokenRestrict, ...] = ()
    numbers: tuple[NumericRestrict, ...] = ()


def parse_filter(filter: Filter | None) -> Restricts:
    """The restricts a filter dict stands for (see the module docstring for the format).

    Raises:
        InvalidFilter: an unknown form, an empty allow list, a non-finite number.
    """
    if not filter:
        return Restricts()
    if not isinstance(filter, Mapping):
        raise InvalidFilter(f"filter must be a dict of namespace to condition, not {filter!r}")
    tokens: list[TokenRestrict] = []
    numbers: list[NumericRestrict] = []
    for namespace, condition in filter.items():
        if not isinstance(namespace, str) or not namespace:
            raise InvalidFilter(f"filter namespace {namespace!r} must be a non-empty string")
        if isinstance(condition, str | bool):
            tokens.append(TokenRestrict(namespace, allow=(_token(namespace, condition),)))
        elif isinstance(condition, int | float):
            numbers.append(NumericRestrict(namespace, "EQUAL", _number(namespace, condition)))
        elif isinstance(condition, list | tuple):
            tokens.append(TokenRestrict(namespace, allow=_token_list(namespace, condition)))
        elif isinstance(condition, Mapping):
            keys = set(condition)
            if keys and keys <= {"allow", "deny"}:
                allow = _token_list(namespace, condition.get("allow", ()), empty_ok=True)
                deny = _token_list(namespace, condition.get("deny", ()), empty_ok=True)
                if not allow and not deny:
                    raise InvalidFilter(f"filter {namespace!r}: allow and deny are both empty")
                if "allow" in condition and not allow:
                    raise InvalidFilter(
                        f"filter {namespace!r}: an empty allow list would match nothing; "
                        "leave it out to exclude by deny alone"
                    )
                tokens.append(TokenRestrict(namespace, allow=allow, deny=deny))
            elif keys and keys <= set(_OPS):
                for symbol, value in condition.items():
                    if isinstance(value, bool) or not isinstance(value, int | float):
                        raise InvalidFilter(
                            f"filter {namespace!r}: {symbol} needs a number, not {value!r}"
                        )
                    numbers.append(
                        NumericRestrict(namespace, _OPS[symbol], _number(namespace, value))
                    )
            else:
                raise InvalidFilter(
                    f"filter {namespace!r}: a dict condition takes either 'allow'/'deny' or "
                    f"comparison operators {sorted(_OPS)}, not {sorted(map(str, keys))}"
                )
        else:
            raise InvalidFilter(
                f"filter {namespace!r}: {condition!r} is not a string, list, bool, number or dict"
            )
    return Restricts(tuple(tokens), tuple(numbers))


def _token(namespace: str, value: str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str) or len(value) > MAX_TOKEN_LENGTH:
        raise InvalidFilter(
            f"filter {namespace!r}: tokens are strings of at most {MAX_TOKEN_LENGTH} characters"
        )
    return value


def _token_list(namespace: str, values: Any, *, empty_ok: bool = False) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, list | tuple):
        raise InvalidFilter(f"filter {namespace!r}: expected a list of strings, not {values!r}")
    if not values and not empty_ok:
        raise InvalidFilter(f"filter {namespace!r}: an empty list would match nothing")
    return tuple(_token(namespace, v) for v in values)


def _number(namespace: str, value: float) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise InvalidFilter(f"filter {namespace!r}: {value!r} is not a finite number")
    return number


def datapoint_restricts(metadata: Mapping[str, Any]) -> Restricts:
    """The filterable part of one datapoint's metadata (see the module docstring)."""
    tokens: list[TokenRestrict] = []
    numbers: list[NumericRestrict] = []
    for key, value in metadata.items():
        if isinstance(value, bool):
            tokens.append(TokenRestrict(key, allow=("true" if value else "false",)))
        elif isinstance(value, str):
            if len(value) <= MAX_TOKEN_LENGTH:
                tokens.append(TokenRestrict(key, allow=(value,)))
        elif isinstance(value, int | float):
            if math.isfinite(value):
                numbers.append(NumericRestrict(key, "EQUAL", float(value)))
        elif (
            isinstance(value, list)
            and value
            and all(isinstance(v, str) and len(v) <= MAX_TOKEN_LENGTH for v in value)
        ):
            tokens.append(TokenRestrict(key, allow=tuple(dict.fromkeys(value))))
    return Restricts(tuple(tokens), tuple(numbers))


def _check_ids(ids: Sequence[str], *, unique: bool) -> list[str]:
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


def _unit_rows(embeddings: Vectors, count: int) -> npt.NDArray[np.float32]:
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


def _unit_query(query_embedding: Vector, dimension: int | None) -> npt.NDArray[np.float32]:
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


def _check_top_k(top_k: int) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise ValueError(f"top_k must be an integer from 1 to {MAX_TOP_K}, got {top_k!r}")


def _check_metadata(metadata: Sequence[Mapping[str, Any]], count: int) -> list[dict[str, Any]]:
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


# --- Local exact index -------------------------------------------------------------------------


class _Snapshot:
    """An immutable view of the whole index; searches never lock, writers swap in a new one."""

    def __init__(
        self,
        ids: list[str],
        matrix: npt.NDArray[np.float32],
        metadata: list[dict[str, Any]],
    ) -> None:
        self.ids = ids
        self.matrix = matrix
        self.metadata = metadata
        self.positions = {item: row for row, item in enumerate(ids)}

    @property
    def dimension(self) -> int | None:
        return int(self.matrix.shape[1]) if self.matrix.shape[0] else None

    @cached_property
    def _filter_index(
        self,
    ) -> tuple[dict[str, dict[str, npt.NDArray[np.intp]]], dict[str, npt.NDArray[np.float64]]]:
        # Built on the first filtered search of this snapshot: token -> rows, namespace -> values.
        tokens: dict[str, dict[str, list[int]]] = {}
        numbers: dict[str, npt.NDArray[np.float64]] = {}
        count = len(self.ids)
        for row, meta in enumerate(self.metadata):
            restricts = datapoint_restricts(meta)
            for token in restricts.tokens:
                rows_by_token = tokens.setdefault(token.namespace, {})
                for value in token.allow:
                    rows_by_token.setdefault(value, []).append(row)
            for number in restricts.numbers:
                if number.namespace not in numbers:
                    numbers[number.namespace] = np.full(count, np.nan)
                numbers[number.namespace][row] = number.value
        return (
            {
                ns: {t: np.asarray(rows, dtype=np.intp) for t, rows in by_token.items()}
                for ns, by_token in tokens.items()
            },
            numbers,
        )

    def mask(self, restricts: Restricts) -> npt.NDArray[np.bool_]:
        tokens, numbers = self._filter_index
        count = len(self.ids)
        keep = np.ones(count, dtype=bool)
        for token in restricts.tokens:
            rows_by_token = tokens.get(token.namespace, {})
            if token.allow:
                allowed = np.zeros(count, dtype=bool)
                for value in token.allow:
                    if (rows := rows_by_token.get(value)) is not None:
                        allowed[rows] = True
                keep &= allowed
            for value in token.deny:
                if (rows := rows_by_token.get(value)) is not None:
                    keep[rows] = False
        for number in restricts.numbers:
            values = numbers.get(number.namespace)
            if values is None:
                return np.zeros(count, dtype=bool)
            keep &= _compare(values, number.op, number.value)
        return keep


def _compare(values: npt.NDArray[np.float64], op: NumericOp, value: float) -> npt.NDArray[np.bool_]:
    present = ~np.isnan(values)
    with np.errstate(invalid="ignore"):
        result = {
            "LESS": values < value,
            "LESS_EQUAL": values <= value,
            "EQUAL": values == value,
            "GREATER_EQUAL": values >= value,
            "GREATER": values > value,
            "NOT_EQUAL": values != value,
        }[op]
    # NaN marks "no value": it must not pass NOT_EQUAL (NaN != x is true in IEEE arithmetic).
    return np.asarray(result & present, dtype=bool)


class LocalVectorIndex:
    """An exact (brute-force) index in memory, persisted in SQLite under `directory`.

    Every search scores the query against every stored vector with one NumPy matrix-vector
    product, so results are exact. Writes go to SQLite first (one transaction per call), then
    replace the in-memory snapshot; readers in other threads keep the snapshot they started
    with, and a write from another process is picked up by the next search (SQLite's
    `data_version`). Each call rewrites the in-memory arrays, so add vectors in batches.
    """

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.directory / "index.sqlite3", check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS vectors "
            "(id TEXT PRIMARY KEY, vector BLOB NOT NULL, metadata TEXT NOT NULL)"
        )
        self._lock = threading.Lock()
        with self._lock:
            self._snapshot, self._data_version = self._load()

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def __len__(self) -> int:
        return len(self._current().ids)

    @property
    def dimension(self) -> int | None:
        """The vectors' dimension, or None while the index is empty."""
        return self._current().dimension

    def add_embeddings(
        self, ids: Sequence[str], embeddings: Vectors, metadata: Sequence[Mapping[str, Any]]
    ) -> None:
        """Store (or replace) one vector and one metadata dict per id, atomically."""
        new_ids = _check_ids(ids, unique=True)
        if not new_ids:
            return
        matrix = _unit_rows(embeddings, len(new_ids))
        metas = _check_metadata(metadata, len(new_ids))
        with self._lock:
            snapshot = self._refresh()
            if snapshot.dimension not in (None, matrix.shape[1]):
                raise ValueError(
                    f"embeddings have dimension {matrix.shape[1]} but this index holds "
                    f"{snapshot.dimension}: a different embedding model needs its own vector_dir"
                )
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT OR REPLACE INTO vectors (id, vector, metadata) VALUES (?, ?, ?)",
                    [
                        (item, row.tobytes(), json.dumps(meta))
                        for item, row, meta in zip(new_ids, matrix, metas, strict=True)
                    ],
                )
            replaced = {snapshot.positions[i] for i in new_ids if i in snapshot.positions}
            keep = [row for row in range(len(snapshot.ids)) if row not in replaced]
            self._snapshot = _Snapshot(
                [snapshot.ids[row] for row in keep] + new_ids,
                np.concatenate([snapshot.matrix[keep], matrix]) if snapshot.dimension else matrix,
                [snapshot.metadata[row] for row in keep] + metas,
            )
            self._data_version = self._db_version()

    def search(
        self, query_embedding: Vector, top_k: int = 10, filter: Filter | None = None
    ) -> list[Match]:
        """The exact `top_k` most similar vectors passing `filter`, most similar first."""
        _check_top_k(top_k)
        restricts = parse_filter(filter)
        snapshot = self._current()
        query = _unit_query(query_embedding, snapshot.dimension)
        if not snapshot.ids:
            return []
        if restricts.tokens or restricts.numbers:
            rows = np.flatnonzero(snapshot.mask(restricts))
            if rows.size == 0:
                return []
            # Score only the candidates when they are few; otherwise one product over everything.
            if rows.size * 4 < len(snapshot.ids):
                scores = snapshot.matrix[rows] @ query
            else:
                scores = (snapshot.matrix @ query)[rows]
        else:
            rows = None
            scores = snapshot.matrix @ query
        k = min(top_k, scores.shape[0])
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best], kind="stable")]
        positions = best if rows is None else rows[best]
        return [
            Match(
                id=snapshot.ids[row],
                similarity=float(score),
                metadata=copy.deepcopy(snapshot.metadata[row]),
            )
            for row, score in zip(positions.tolist(), scores[best].tolist(), strict=True)
        ]

    def delete(self, ids: Sequence[str]) -> None:
        """Remove these ids; unknown ids are ignored."""
        gone = set(_check_ids(ids, unique=False))
        if not gone:
            return
        with self._lock:
            snapshot = self._refresh()
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("DELETE FROM vectors WHERE id = ?", [(i,) for i in gone])
            keep = [row for row, item in enumerate(snapshot.ids) if item not in gone]
            self._snapshot = _Snapshot(
                [snapshot.ids[row] for row in keep],
                snapshot.matrix[keep],
                [snapshot.metadata[row] for row in keep],
            )
            self._data_version = self._db_version()

    def _current(self) -> _Snapshot:
        with self._lock:
            return self._refresh()

    def _refresh(self) -> _Snapshot:
        # Caller holds the lock. data_version changes only when another connection commits.
        if self._db_version() != self._data_version:
            self._snapshot, self._data_version = self._load()
        return self._snapshot

    def _db_version(self) -> int:
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def _load(self) -> tuple[_Snapshot, int]:
        # Version first: a commit landing between the two reads then triggers another reload.
        version = self._db_version()
        rows = self._db.execute(
            "SELECT id, vector, metadata FROM vectors ORDER BY rowid"
        ).fetchall()
        if not rows:
            return _Snapshot([], np.zeros((0, 0), dtype=np.float32), []), version
        dimension = len(rows[0][1]) // 4
        matrix = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32)
        return (
            _Snapshot(
                [row[0] for row in rows],
                matrix.reshape(len(rows), dimension).copy(),
                [json.loads(row[2]) for row in rows],
            ),
            version,
        )


# --- Vertex AI Vector Search -------------------------------------------------------------------

_VERTEX_BATCH = 500  # datapoints per Upsert/Remove call and documents per Firestore batch


class VertexVectorIndex:
    """Vertex AI Vector Search (streaming updates) with each datapoint's metadata in Firestore.

    Vertex stores the vector and its restricts and answers with ids and distances only, so the
    metadata lives in Firestore at `{collection}/{id}`. Writes go to Firestore first, then to
    Vertex: a datapoint that Vertex can return always has its metadata. Deletes go the other way.

    Args:
        index: `projects/P/locations/R/indexes/ID` (a streaming-update index).
        index_endpoint: `projects/P/locations/R/indexEndpoints/ID` where it is deployed.
        deployed_index_id: The deployed index's id on that endpoint.
        index_client: An `IndexServiceClient` for the index's region.
        match_client: A `MatchServiceClient` for the endpoint's public domain.
        db: The Firestore client holding the metadata.
        collection: The metadata collection.
        timeout: Seconds allowed for each API call.
    """

    def __init__(
        self,
        *,
        index: str,
        index_endpoint: str,
        deployed_index_id: str,
        index_client: aiplatform_v1.IndexServiceClient,
        match_client: aiplatform_v1.MatchServiceClient,
        db: firestore.Client,
        collection: str = "vector_metadata",
        timeout: float = 30.0,
    ) -> None:
        self.index = index
        self.index_endpoint = index_endpoint
        self.deployed_index_id = deployed_index_id
        self._index_client = index_client
        self._match_client = match_client
        self._db = db
        self._collection = collection
        self._timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> VertexVectorIndex:
        """The index named by `settings` (VERTEX_INDEX, VERTEX_INDEX_ENDPOINT, ...)."""
        from common.platform.store import db

        missing = [
            name
            for name, value in (
                ("VERTEX_INDEX", settings.vertex_index),
                ("VERTEX_INDEX_ENDPOINT", settings.vertex_index_endpoint),
                ("VERTEX_DEPLOYED_INDEX_ID", settings.vertex_deployed_index_id),
                (
                    "VERTEX_MATCH_ENDPOINT",
                    settings.vertex_match_endpoint or settings.vertex_endpoint,
                ),
            )
            if not value
        ]
        if missing:
            raise ValueError(f"vector_backend=vertex needs these settings: {', '.join(missing)}")
        assert settings.vertex_index and settings.vertex_index_endpoint
        assert settings.vertex_deployed_index_id
        index_client, match_client = _vertex_clients(settings)
        return cls(
            index=settings.vertex_index,
            index_endpoint=settings.vertex_index_endpoint,
            deployed_index_id=settings.vertex_deployed_index_id,
            index_client=index_client,
            match_client=match_client,
            db=db(settings.project_id),
            collection=settings.vector_metadata_collection,
            timeout=settings.vertex_timeout_seconds,
        )

    def add_embeddings(
        self, ids: Sequence[str], embeddings: Vectors, metadata: Sequence[Mapping[str, Any]]
    ) -> None:
        """Write the metadata to Firestore, then upsert the datapoints into the index."""
        from google.cloud import aiplatform_v1

        new_ids = _check_ids(ids, unique=True)
        if not new_ids:
            return
        matrix = _unit_rows(embeddings, len(new_ids))
        metas = _check_metadata(metadata, len(new_ids))
        collection = self._db.collection(self._collection)
        for start in range(0, len(new_ids), _VERTEX_BATCH):
            batch = self._db.batch()
            for item, meta in zip(
                new_ids[start : start + _VERTEX_BATCH],
                metas[start : start + _VERTEX_BATCH],
                strict=True,
            ):
                batch.set(collection.document(item), {"metadata": meta})
            batch.commit(timeout=self._timeout)
        datapoints = [
            aiplatform_v1.IndexDatapoint(
                datapoint_id=item,
                feature_vector=row.tolist(),
                **_vertex_restricts(datapoint_restricts(meta), query=False),
            )
            for item, row, meta in zip(new_ids, matrix, metas, strict=True)
        ]
        for start in range(0, len(datapoints), _VERTEX_BATCH):
            self._index_client.upsert_datapoints(
                request=aiplatform_v1.UpsertDatapointsRequest(
                    index=self.index, datapoints=datapoints[start : start + _VERTEX_BATCH]
                ),
                timeout=self._timeout,
            )

    def search(
        self, query_embedding: Vector, top_k: int = 10, filter: Filter | None = None
    ) -> list[Match]:
        """FindNeighbors on the deployed index, then the neighbours' metadata from Firestore."""
        from google.cloud import aiplatform_v1

        _check_top_k(top_k)
        restricts = parse_filter(filter)
        query = _unit_query(query_embedding, None)
        response = self._match_client.find_neighbors(
            request=aiplatform_v1.FindNeighborsRequest(
                index_endpoint=self.index_endpoint,
                deployed_index_id=self.deployed_index_id,
                queries=[
                    aiplatform_v1.FindNeighborsRequest.Query(
                        datapoint=aiplatform_v1.IndexDatapoint(
                            feature_vector=query.tolist(),
                            **_vertex_restricts(restricts, query=True),
                        ),
                        neighbor_count=top_k,
                    )
                ],
                return_full_datapoint=False,
            ),
            timeout=self._timeout,
        )
        if not response.nearest_neighbors:
            return []
        neighbors = [
            (n.datapoint.datapoint_id, float(n.distance))
            for n in response.nearest_neighbors[0].neighbors
        ]
        if not neighbors:
            return []
        collection = self._db.collection(self._collection)
        documents = self._db.get_all(
            [collection.document(item) for item, _ in neighbors], timeout=self._timeout
        )
        metadata = {
            doc.id: (doc.to_dict() or {}).get("metadata", {}) for doc in documents if doc.exists
        }
        matches = []
        for item, similarity in neighbors:
            if item not in metadata:
                # Deleted between Vertex's answer and now (deletes reach Vertex first).
                logger.warning(
                    "vector search: neighbour without metadata skipped",
                    extra={"json_fields": {"datapoint_id": item}},
                )
                continue
            matches.append(Match(id=item, similarity=similarity, metadata=metadata[item]))
        return matches

    def delete(self, ids: Sequence[str]) -> None:
        """Remove the datapoints from the index, then their metadata from Firestore."""
        from google.cloud import aiplatform_v1

        gone = list(dict.fromkeys(_check_ids(ids, unique=False)))
        collection = self._db.collection(self._collection)
        for start in range(0, len(gone), _VERTEX_BATCH):
            chunk = gone[start : start + _VERTEX_BATCH]
            self._index_client.remove_datapoints(
                request=aiplatform_v1.RemoveDatapointsRequest(
                    index=self.index, datapoint_ids=chunk
                ),
                timeout=self._timeout,
            )
            batch = self._db.batch()
            for item in chunk:
                batch.delete(collection.document(item))
            batch.commit(timeout=self._timeout)


def _vertex_restricts(restricts: Restricts, *, query: bool) -> dict[str, Any]:
    from google.cloud import aiplatform_v1

    point = aiplatform_v1.IndexDatapoint
    operator = point.NumericRestriction.Operator
    return {
        "restricts": [
            point.Restriction(
                namespace=t.namespace, allow_list=list(t.allow), deny_list=list(t.deny)
            )
            for t in restricts.tokens
        ],
        # Always value_double: Vertex compares within one numeric type per namespace, and a
        # double holds every int RaptorFlow stores (timestamps, counts) exactly. Only a query's
        # restricts carry an operator; a datapoint's just state its value.
        "numeric_restricts": [
            point.NumericRestriction(
                namespace=n.namespace, value_double=n.value, op=getattr(operator, n.op)
            )
            if query
            else point.NumericRestriction(namespace=n.namespace, value_double=n.value)
            for n in restricts.numbers
        ],
    }


def _vertex_clients(
    settings: Settings,
) -> tuple[aiplatform_v1.IndexServiceClient, aiplatform_v1.MatchServiceClient]:
    from google.cloud import aiplatform_v1

    if settings.vertex_endpoint:
        import grpc
        from google.cloud.aiplatform_v1.services.index_service.transports.grpc import (
            IndexServiceGrpcTransport,
        )
        from google.cloud.aiplatform_v1.services.match_service.transports.grpc import (
            MatchServiceGrpcTransport,
        )

        channel = grpc.insecure_channel(settings.vertex_endpoint)
        return (
            aiplatform_v1.IndexServiceClient(transport=IndexServiceGrpcTransport(channel=channel)),
            aiplatform_v1.MatchServiceClient(transport=MatchServiceGrpcTransport(channel=channel)),
        )
    region = _region_of(settings.vertex_index or "") or settings.region
    return (
        aiplatform_v1.IndexServiceClient(
            client_options={"api_endpoint": f"{region}-aiplatform.googleapis.com"}
        ),
        aiplatform_v1.MatchServiceClient(
            client_options={"api_endpoint": settings.vertex_match_endpoint}
        ),
    )


def _region_of(resource: str) -> str | None:
    parts = resource.split("/")
    return parts[3] if len(parts) > 3 and parts[2] == "locations" else None


# --- Choosing one ------------------------------------------------------------------------------

_default: tuple[Settings, VectorIndex] | None = None
_default_lock = threading.Lock()


def backend(settings: Settings) -> Literal["local", "vertex"]:
    """The configured vector backend: `vector_backend`, else vertex in production only."""
    if settings.vector_backend:
        return settings.vector_backend
    return "vertex" if settings.app_mode == "production" else "local"


def vector_index(settings: Settings | None = None) -> VectorIndex:
    """The process's vector index for `settings` (default: the current settings), made once."""
    global _default
    settings = settings or get_settings()
    with _default_lock:
        if _default is None or _default[0] is not settings:
            index: VectorIndex = (
                VertexVectorIndex.from_settings(settings)
                if backend(settings) == "vertex"
                else LocalVectorIndex(settings.vector_dir)
            )
            _default = (settings, index)
        return _default[1]
