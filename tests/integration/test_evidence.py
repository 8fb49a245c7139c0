"""Research stores the business's evidence; later phases get the most relevant of it, and
only their own business's."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from common.analysis import evidence
from common.analysis.phases import prepare, run_phase, stored_output
from common.models import ResearchOutput
from common.runs import documents


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
