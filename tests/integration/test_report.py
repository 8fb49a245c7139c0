"""`report`: a finished run as a document, every section in its schema's order."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from common.analysis.phases import run_phase, stored_output
from common.analysis.report import report
from common.models import PHASE_ORDER, ContentOutput

SECTIONS = [
    "# Marketing strategy: Tidewater Coffee Co.",
    "## Research",
    "### Competitor ladder",
    "### SOSTAC",
    "## Positioning",
    "## Ideal customer profiles",
    "## Strategy",
    "### The 7Ps",
    "### North-star metrics",
    "## 12-week content calendar",
    "### Creative briefs",
    "## Measurement",
    "### Customer lifetime value",
    "### Route-back triggers",
]


@pytest.mark.emulator
def test_a_finished_run_reads_as_a_strategy_document(new_run: Callable[..., str]) -> None:
    run_id = new_run()
    for phase in PHASE_ORDER:
        run_phase(run_id, phase)

    markdown = report(run_id, "md")

    positions = [markdown.index(section + "\n") for section in SECTIONS]
    assert positions == sorted(positions), "sections out of order"
    content = stored_output(run_id, "content")
    assert isinstance(content, ContentOutput)
    calendar = markdown.split("## 12-week content calendar")[1].split("### Creative briefs")[0]
    weeks = re.findall(r"^\| (\d+) \|", calendar, flags=re.M)
    assert [int(w) for w in dict.fromkeys(weeks)] == list(range(1, 13))
    assert sum(len(week.items) for week in content.calendar) == len(weeks)
    page = report(run_id, "html")
    assert page.startswith("<!doctype html>") and page.count("<table>") == len(
        re.findall(r"^\|(?:---\|)+$", markdown, flags=re.M)
    )
    assert "<h2>12-week content calendar</h2>" in page
    # How it was made: one row per sub-task, with the model that answered it.
    making = markdown.split("## How this analysis was made")[1]
    assert making.count("\n| research |") == 3 and "gpt-5-nano" in making


@pytest.mark.emulator
def test_a_stopped_run_says_what_is_missing(new_run: Callable[..., str]) -> None:
    run_id = new_run()
    run_phase(run_id, "research")

    markdown = report(run_id, "md")

    assert "## Research" in markdown and "## Positioning" not in markdown
    assert "(positioning: not available, the run ended before it)" in markdown
