"""`report`: a run as a strategy document (Markdown, an HTML page, a PDF), every section the
analysis has, in the schema's order, readable on a phone and on paper."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import pypdf
import pytest
from playwright.sync_api import Browser

from common.analysis.phases import run_phase, stored_output
from common.analysis.report import OFFLINE_NOTICE, report
from common.models import PHASE_ORDER, ContentOutput
from local import pdf
from tests.browser.conftest import SHOTS

pytestmark = pytest.mark.emulator
CHAPTERS = [
    "Executive summary",
    "Research",
    "Positioning",
    "Ideal customer profiles",
    "Strategy",
    "12-week content calendar",
    "Measurement",
    "How this analysis was made",
    "Models and cost",
]
SECTIONS = [
    "# Marketing strategy: Tidewater Coffee Co.",
    "## Contents",
    "## Executive summary",
    "## Research",
    "### Competitor ladder",
    "### Evidence",
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
    "## How this analysis was made",
    "## Models and cost",
]
# A word no line can hold at 390 px (a pasted link, say): it must wrap, not widen the page.
LONG_WORD = "https://tidewater.example/" + "single-origin" * 12


def finished_run(new_run: Callable[..., str], **business: object) -> str:
    run_id = new_run(**business)
    for phase in PHASE_ORDER:
        run_phase(run_id, phase)
    return run_id


def test_a_finished_run_reads_as_a_strategy_document(new_run: Callable[..., str]) -> None:
    run_id = finished_run(new_run)

    markdown = report(run_id, "md")

    positions = [markdown.index(section + "\n") for section in SECTIONS]
    assert positions == sorted(positions), "sections out of order"
    title_page = markdown.split("## Contents")[0]
    assert "**Business:** Tidewater Coffee Co. (tidewater-coffee)" in title_page
    assert re.search(r"\*\*Date:\*\* \d{1,2} [A-Z][a-z]+ 20\d\d", title_page)
    assert OFFLINE_NOTICE in title_page  # the offline provider wrote it: the reader is told
    contents = markdown.split("## Contents")[1].split("## Executive summary")[0]
    assert re.findall(r"^\d+\. \[(.+?)\]", contents, flags=re.M) == CHAPTERS
    summary = markdown.split("## Executive summary")[1].split("## Research")[0]
    for lead in ("Situation:", "Positioning:", "Customers to win first:", "Content: 36 pieces"):
        assert lead in summary

    # The calendar: a card per week, each with that week's pieces, not one row per piece.
    content = stored_output(run_id, "content")
    assert isinstance(content, ContentOutput)
    calendar = markdown.split("## 12-week content calendar")[1].split("### Creative briefs")[0]
    weeks = re.findall(r"^\*\*Week (\d+): (.+)\*\*$", calendar, flags=re.M)
    assert [(int(n), theme) for n, theme in weeks] == [(w.week, w.theme) for w in content.calendar]
    assert calendar.count("\n- ") == sum(len(week.items) for week in content.calendar)
    assert "|" not in calendar

    footer = markdown.split("## Models and cost")[1]
    for phase in ("Research", "Measurement", "Total"):
        assert f"| {phase} |" in footer
    assert "offline" in footer and f"run {run_id}" in footer

    page = report(run_id, "html")
    assert page.startswith("<!doctype html>")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "@media print" in page and "@page" in page
    assert page.count("<table>") == len(re.findall(r"^\|(?:---\|)+$", markdown, flags=re.M))
    assert page.count('<article class="week">') == 12
    for anchor in ("summary", "research", "calendar", "cost"):
        assert f'href="#{anchor}"' in page and f'id="{anchor}"' in page

    # How it was made: one row per sub-task, with the model that answered it.
    making = markdown.split("## How this analysis was made")[1].split("## Models and cost")[0]
    assert making.count("\n| Research |") == 3 and "gpt-5-nano" in making


def test_the_report_prints_to_a_pdf_with_every_chapter(new_run: Callable[..., str]) -> None:
    run_id = finished_run(new_run)

    document = pypdf.PdfReader(io.BytesIO(pdf.from_html(report(run_id, "html"))))

    text = [page.extract_text() for page in document.pages]
    assert "Marketing strategy: Tidewater" in text[0] and "Offline placeholders." in text[0]
    assert text[1].startswith("Contents")
    # The contents give each chapter's page, and that page starts with the chapter.
    for chapter in CHAPTERS:
        line = re.search(rf"^{re.escape(chapter)} \.+ ?(\d+)$", text[1], flags=re.M)
        assert line, f"{chapter} is not in the contents with a page number"
        assert text[int(line[1]) - 1].startswith(chapter), chapter
    outline = document.outline
    titles = [item.title for item in outline[1] if not isinstance(item, list)]
    assert titles == ["Contents", *CHAPTERS]  # the PDF's bookmarks, under the title
    assert f"{len(text)} / {len(text)}" in text[-1]  # numbered pages, "n / total"


def test_the_html_report_fits_a_phone_and_a_desktop(
    new_run: Callable[..., str], browser: Browser
) -> None:
    run_id = finished_run(new_run, description=f"Tidewater roasts coffee; see {LONG_WORD} .")
    page = report(run_id, "html")
    assert LONG_WORD in page

    widths = {}
    for width in (390, 1366):
        tab = browser.new_page(viewport={"width": width, "height": 900})
        try:
            tab.set_content(page)
            widths[width] = tab.evaluate(
                """() => [document.documentElement.scrollWidth,
                    [...document.querySelectorAll('body *')]
                      .filter(e => e.getBoundingClientRect().right > innerWidth + 0.5)
                      .map(e => e.tagName + ' ' + e.textContent.slice(0, 40))]"""
            )
            SHOTS.mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=str(SHOTS / f"report-{width}.png"))
            tab.locator("#calendar").scroll_into_view_if_needed()
            tab.screenshot(path=str(SHOTS / f"report-{width}-calendar.png"))
        finally:
            tab.close()
    for width, (scroll_width, wider) in widths.items():
        assert scroll_width == width and wider == [], (width, scroll_width, wider[:5])


def test_a_stopped_run_says_what_is_missing(new_run: Callable[..., str]) -> None:
    run_id = new_run()
    run_phase(run_id, "research")

    markdown = report(run_id, "md")

    assert "## Research" in markdown and "## Positioning" not in markdown
    assert "(positioning: not available, the run ended before it)" in markdown
    summary = markdown.split("## Executive summary")[1].split("## Research")[0]
    assert "Not available: positioning, icps, strategy, content, analytics" in summary
