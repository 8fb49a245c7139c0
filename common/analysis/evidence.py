"""A business's evidence, searchable by meaning: research stores it, later phases retrieve it.

The research phase stores the business's own description and its findings (situation summary,
evidence claims, competitor rungs) as embeddings with `business_id`, `run_id` and `kind`
metadata. Each later phase asks for the snippets closest to its task, filtered to the same
business, so its prompt carries the most relevant evidence — from this run and earlier ones.
Ids are deterministic (`{run_id}.{n}`), so storing again after a retry replaces, never adds.

Research, which has the embedding model loaded, also embeds what each later phase will search
for (`queries_ahead`; the query depends on the business alone) and stores the vectors with its
result: such a phase searches with the stored vector and never loads the model (positioning's
memory and cold start), unless the vector was made by another model than the one configured.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from common.models import BusinessInput, ResearchOutput
from common.platform import log
from common.search.backend import vector_index
from common.search.embeddings import embed, embedder
from common.spend.ledger import Ledger

logger = logging.getLogger(__name__)
RECALL_TOP_K = 6


def snippets(business: BusinessInput, research: ResearchOutput) -> list[tuple[str, str]]:
    """(kind, text) pairs worth finding again: short, self-contained statements."""
    found = [
        ("description", f"{business.name}: {business.description}"),
        ("situation", research.situation_analysis.summary),
    ]
    found += [
        ("evidence", f"{item.claim} (source: {item.source}; confidence {item.confidence})")
        for item in research.evidence
    ]
    found += [
        (
            "competitor",
            f"#{rung.rank} {rung.competitor} holds '{rung.position_held}'; "
            f"weakness to exploit: {rung.weakness_to_exploit}",
        )
        for rung in research.competitor_ladder
    ]
    return found


def remember(
    run_id: str, business: BusinessInput, research: ResearchOutput, ledger: Ledger | None = None
) -> int:
    """Store the research's snippets for later phases (and later runs); paid embeddings are
    reserved and settled on `ledger`. Returns how many."""
    found = snippets(business, research)
    texts = [text for _, text in found]
    vector_index().add_embeddings(
        [f"{run_id}.{n}" for n in range(len(found))],
        embed(texts, kind="document", ledger=ledger),
        [
            {"business_id": business.business_id, "run_id": run_id, "kind": kind, "text": text}
            for kind, text in found
        ],
    )
    logger.info(
        "evidence stored",
        extra=log.fields(event="evidence_stored", run_id=run_id, snippets=len(found)),
    )
    return len(found)


def queries_ahead(queries: Mapping[str, str], ledger: Ledger | None = None) -> dict[str, Any]:
    """The vectors of `queries` (by phase), as a phase's stored result keeps them for
    `recall`: {phase: {"model", "vector"}}."""
    names = list(queries)
    if not names:
        return {}
    vectors = embed([queries[name] for name in names], kind="query", ledger=ledger)
    model = embedder().model
    return {
        name: {"model": model, "vector": vector}
        for name, vector in zip(names, vectors, strict=True)
    }


def recall(
    business_id: str,
    query: str,
    top_k: int = RECALL_TOP_K,
    ledger: Ledger | None = None,
    *,
    ahead: Mapping[str, Any] | None = None,
) -> list[str]:
    """The stored snippets of `business_id` most relevant to `query`, best first, no repeats.

    Args:
        ahead: `query`'s vector as `queries_ahead` made it, if an earlier phase did: used when
            the configured embedder made it (same model, same size); else the query is embedded
            here (a paid embedding is reserved and settled on `ledger`).
    """
    vector = _ahead(ahead)
    if vector is None:
        (vector,) = embed([query], kind="query", ledger=ledger)
    matches = vector_index().search(vector, top_k=top_k * 2, filter={"business_id": business_id})
    texts: list[str] = []
    for match in matches:
        text = str(match.metadata.get("text", ""))
        if text and text not in texts:
            texts.append(text)
    return texts[:top_k]


def _ahead(ahead: Mapping[str, Any] | None) -> list[float] | None:
    if not ahead:
        return None
    current = embedder()
    vector = ahead.get("vector")
    if ahead.get("model") != current.model or not isinstance(vector, list):
        return None
    if len(vector) != current.dimension:
        return None
    return [float(value) for value in vector]
