"""The process's vector index: the one `Settings.vector_backend` names."""

from __future__ import annotations

from common.platform.process import per_settings
from common.platform.settings import Settings
from common.search.index import VectorIndex


@per_settings
def vector_index(settings: Settings) -> VectorIndex:
    """The process's vector index for `settings` (default: the current settings)."""
    if settings.vector_backend == "vertex":
        from common.search.vertex import VertexVectorIndex

        return VertexVectorIndex.from_settings(settings)
    from common.search.firestore import FirestoreVectorIndex

    return FirestoreVectorIndex.from_settings(settings)
