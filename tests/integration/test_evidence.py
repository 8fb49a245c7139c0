"""Research stores the business's evidence; later phases get the most relevant of it, and
only their own business's."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from google.cloud import firestore

from common.analysis import evidence
from common.analysis.phases import phase_ref, prepare, run_phase, stored_output
from common.models import ResearchOutput
from common.runs import documents
from common.search.backend import vector_index
from common.search.embeddings import embed, embedder


@pytest.mark.emulator
def test_later_phases_are_prompted_with_their_business_evidence(
    new_run: Callable[..., str],
) -> None:
    ours = new_run()
    theirs = new_run(business_id="other-shop", name="Other Shop", industry="Plumbing supplies")
    run_phase(ours, "research")
    run_phase(theirs, "research")

    research = stored_output(ours, "research")
    assert isinstance(research, ResearchOutput)
    run = documents.get_run(ours)
    prepared = prepare(ours, run.input, "positioning", required=True)
    prompt = prepared.messages(evidence.recall(run.business_id, prepared.evidence_query))
    text = prompt[1]["content"]
    assert "RELEVANT_EVIDENCE" in text
    assert "Other Shop" not in text.split("RELEVANT_EVIDENCE")[1]

    found = evidence.recall("tidewater-coffee", "competitors and their weaknesses")
    stored = {text for _, text in evidence.snippets(run.input, research)}
    assert found and set(found) <= stored  # only what research stored for this business
    assert any("weakness to exploit" in snippet for snippet in found)  # the competitor rungs


@pytest.mark.emulator
def test_storing_evidence_again_replaces_it(new_run: Callable[..., str]) -> None:
    run_id = new_run()
    run_phase(run_id, "research")
    research = stored_output(run_id, "research")
    assert isinstance(research, ResearchOutput)
    business = documents.get_run(run_id).input
    count = evidence.remember(run_id, business, research)  # a retried phase stores again
    found = evidence.recall(business.business_id, business.description, top_k=50)
    assert len(found) == count  # no duplicates


def _embedded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    """Every embedding this process asks for from now on: (kind, texts)."""
    asked: list[tuple[str, list[str]]] = []

    def counted(texts: list[str], kind: str = "document", ledger: object = None) -> object:
        asked.append((kind, list(texts)))
        return embed(texts, kind, ledger)  # type: ignore[arg-type]

    monkeypatch.setattr(evidence, "embed", counted)
    return asked


@pytest.mark.emulator
def test_positioning_searches_with_the_vector_research_stored_and_embeds_nothing(
    new_run: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = new_run()
    run_phase(run_id, "research")
    run = documents.get_run(run_id)
    query = prepare(run_id, run.input, "positioning", required=True).evidence_query
    stored = phase_ref(run_id, "research").get().get("queries.positioning")
    # The very vector the configured model gives positioning's query.
    assert stored["model"] == embedder().model
    assert stored["vector"] == pytest.approx(embed([query], kind="query")[0], abs=1e-6)
    asked = _embedded(monkeypatch)
    searched: list[list[float]] = []
    index = vector_index()
    real_search = type(index).search

    def search(self: object, vector: list[float], **kwargs: object) -> object:
        searched.append(vector)
        return real_search(self, vector, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(type(index), "search", search)
    run_phase(run_id, "positioning")

    # No model in positioning's process: it searched with research's vector.
    assert asked == []
    assert searched == [pytest.approx(stored["vector"], abs=1e-9)]
    assert stored_output(run_id, "positioning") is not None


@pytest.mark.parametrize("stored", ["none", "another model"])
@pytest.mark.emulator
def test_without_a_vector_of_the_configured_model_positioning_embeds_its_query(
    stored: str, new_run: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = new_run()
    run_phase(run_id, "research")
    ref = phase_ref(run_id, "research")
    if stored == "none":  # a result stored before research embedded later phases' queries
        ref.update({"queries": firestore.DELETE_FIELD})
    else:  # the embedding model was changed since
        ref.update({"queries.positioning.model": "another-model"})
    asked = _embedded(monkeypatch)

    run_phase(run_id, "positioning")

    run = documents.get_run(run_id)
    query = prepare(run_id, run.input, "positioning", required=True).evidence_query
    assert asked == [("query", [query])]
    assert stored_output(run_id, "positioning") is not None
