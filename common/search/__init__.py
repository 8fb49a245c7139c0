"""Semantic search: embeddings, one vector-index interface with its filter grammar, and its
implementations. Imports only `common.platform` (and the shared vocabulary)."""
