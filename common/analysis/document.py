"""A small document model (a title page, headings, paragraphs, lists, tables, cards, notices)
rendered to Markdown or to one standalone HTML page, so that both formats always say the same.

The HTML page is made to be read on a phone (a viewport tag; tables become labelled rows and
long words wrap below 40rem, so nothing is wider than the screen), on a desktop, and on paper:
its print styles number the pages, start each chapter on a new page, keep a card or a table row
on one page, and give the contents page numbers where the renderer supports CSS Paged Media
(WeasyPrint does; a browser's print ignores those rules and keeps the rest).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Literal

Format = Literal["md", "html"]


@dataclass(frozen=True)
class Notice:
    """Something the reader must know before trusting the content (offline placeholders)."""

    title: str
    text: str


@dataclass(frozen=True)
class TitlePage:
    """The first page: the title, a line under it, and facts as label/value pairs."""

    title: str
    subtitle: str
    facts: list[tuple[str, str]]
    notice: Notice | None = None


@dataclass(frozen=True)
class Heading:
    """A heading; level 2 headings are the chapters listed in the contents."""

    level: int
    text: str
    anchor: str = ""

    @property
    def id(self) -> str:
        return self.anchor or slug(self.text)


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Items:
    items: list[str]


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Card:
    """A titled group of lines (a week of the calendar)."""

    title: str
    items: list[str]


@dataclass(frozen=True)
class Cards:
    cards: list[Card]
    label: str = ""


@dataclass(frozen=True)
class Contents:
    """The list of chapters (every level 2 heading), filled in when rendered."""

    title: str = "Contents"


Block = TitlePage | Heading | Paragraph | Items | Table | Cards | Notice | Contents


@dataclass
class Document:
    blocks: list[Block] = field(default_factory=list)
    #: Shown at the foot of every printed page.
    running_title: str = ""

    def chapters(self) -> list[Heading]:
        return [b for b in self.blocks if isinstance(b, Heading) and b.level == 2]


def slug(text: str) -> str:
    """An anchor for a heading: lower case words joined by hyphens."""
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return words if words[:1].isalpha() else f"s-{words}"  # a CSS id selector starts with a letter


def render(document: Document, format: Format) -> str:
    """The document as Markdown or as a standalone HTML page."""
    return _markdown(document) if format == "md" else _html(document)


# --- Markdown ----------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown_notice(notice: Notice) -> str:
    return f"> **{notice.title}** {notice.text}"


def _markdown(document: Document) -> str:
    out: list[str] = []
    for block in document.blocks:
        if isinstance(block, TitlePage):
            out.append(f"# {block.title}")
            out.append(f"*{block.subtitle}*")
            out.append("\n".join(f"- **{label}:** {value}" for label, value in block.facts))
            if block.notice is not None:
                out.append(_markdown_notice(block.notice))
        elif isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            out.append(block.text)
        elif isinstance(block, Items):
            out.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            lines = [
                "| " + " | ".join(map(_cell, block.header)) + " |",
                "|" + "---|" * len(block.header),
                *("| " + " | ".join(map(_cell, row)) + " |" for row in block.rows),
            ]
            out.append("\n".join(lines))
        elif isinstance(block, Cards):
            for card in block.cards:
                out.append(f"**{card.title}**\n\n" + "\n".join(f"- {i}" for i in card.items))
        elif isinstance(block, Notice):
            out.append(_markdown_notice(block))
        else:
            out.append(f"## {block.title}")
            out.append(
                "\n".join(f"{n}. [{h.text}](#{h.id})" for n, h in enumerate(document.chapters(), 1))
            )
    return "\n\n".join(out) + "\n"


# --- HTML --------------------------------------------------------------------------------------

_STYLE = """
*, *::before, *::after { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; color: #1d2329; background: #fff; line-height: 1.55;
  font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  overflow-wrap: anywhere; }
main { max-width: 60rem; margin: 0 auto; padding: 1rem 1rem 3rem; }
h1 { font-size: 2rem; line-height: 1.2; margin: 0 0 .5rem; }
h2 { font-size: 1.45rem; margin: 2.5rem 0 .75rem; padding-top: .5rem;
  border-top: 3px solid #1f6f5c; }
h3 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
ul, ol { padding-left: 1.4rem; }
li { margin: .2rem 0; }
a { color: #1f5f8b; }
.title-page { padding: 2.5rem 0 1.5rem; border-bottom: 1px solid #d6dde3; }
.title-page .subtitle { font-size: 1.15rem; color: #4a5661; margin: 0 0 1.5rem; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1rem; margin: 0; }
.facts dt { font-weight: 600; color: #4a5661; }
.facts dd { margin: 0; }
.notice { border: 2px solid #b86e00; background: #fff6e5; border-radius: 6px;
  padding: .75rem 1rem; margin: 1.5rem 0; }
.notice strong { display: block; margin-bottom: .25rem; }
.contents ol { columns: 2 14rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; }
th, td { border: 1px solid #d6dde3; padding: .35rem .5rem; text-align: left; vertical-align: top; }
th { background: #eef3f6; }
.weeks { display: grid; grid-template-columns: repeat(auto-fill, minmax(17rem, 1fr));
  gap: .75rem; margin: .5rem 0 1rem; }
.week { border: 1px solid #d6dde3; border-radius: 6px; padding: .6rem .8rem; }
.week h4 { margin: 0 0 .3rem; font-size: 1rem; }
.week ul { margin: 0; padding-left: 1.1rem; }
.colophon { color: #4a5661; font-size: .9rem; }
@media (max-width: 40rem) {
  main { padding: .75rem; }
  h1 { font-size: 1.6rem; }
  .facts { grid-template-columns: 1fr; }
  .facts dd { margin-bottom: .4rem; }
  table, thead, tbody, tr, th, td { display: block; width: 100%; }
  thead { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
  tr { border: 1px solid #d6dde3; border-radius: 6px; margin-bottom: .6rem; }
  td { border: 0; border-bottom: 1px solid #eef3f6; }
  td::before { content: attr(data-label); display: block; font-weight: 600; color: #4a5661;
    font-size: .85rem; }
}
@page { size: A4; margin: 18mm 16mm 20mm;
  @bottom-left { font-size: 8pt; color: #4a5661; }
  @bottom-right { content: counter(page) " / " counter(pages); font-size: 8pt; color: #4a5661; } }
@page :first { @bottom-left { content: none; } @bottom-right { content: none; } }
@media print {
  /* anywhere (for narrow screens) makes WeasyPrint's line breaking ten times slower. */
  body { font-size: 10.5pt; overflow-wrap: break-word; }
  main { max-width: none; padding: 0; }
  .title-page { break-after: page; border: 0; padding-top: 20%; }
  .title-page h1 { font-size: 26pt; }
  .contents { break-after: page; }
  .contents ol { columns: 1; }
  .contents a { text-decoration: none; color: inherit; }
  .contents a::after { content: leader(".") target-counter(attr(href), page); }
  h2 { break-before: page; border-top: 0; }
  h2, h3, h4 { break-after: avoid; }
  tr, li, .week, .notice { break-inside: avoid; }
  thead { display: table-header-group; }
  .weeks { display: block; columns: 2; column-gap: 1rem; }
  .week { margin-bottom: .75rem; }
  a { color: inherit; }
}
"""


def _html_notice(notice: Notice) -> str:
    return (
        f'<aside class="notice" role="note"><strong>{html.escape(notice.title)}</strong>'
        f"{html.escape(notice.text)}</aside>"
    )


def _css_string(text: str) -> str:
    """`text` as a quoted CSS string that cannot end the string or the style element."""
    safe = " .,:;-_()'&"
    escaped = "".join(ch if ch.isalnum() or ch in safe else f"\\{ord(ch):x} " for ch in text)
    return f'"{escaped}"'


def _html(document: Document) -> str:
    e = html.escape
    title = next(
        (b.title for b in document.blocks if isinstance(b, TitlePage)),
        next((b.text for b in document.blocks if isinstance(b, Heading)), "RaptorFlow report"),
    )
    body: list[str] = []
    style = _STYLE
    if document.running_title:
        style += f"@page {{ @bottom-left {{ content: {_css_string(document.running_title)}; }} }}"
    for block in document.blocks:
        if isinstance(block, TitlePage):
            facts = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in block.facts)
            notice = _html_notice(block.notice) if block.notice is not None else ""
            body.append(
                f'<header class="title-page"><h1>{e(block.title)}</h1>'
                f'<p class="subtitle">{e(block.subtitle)}</p><dl class="facts">{facts}</dl>'
                f"{notice}</header>"
            )
        elif isinstance(block, Heading):
            level = block.level
            body.append(f'<h{level} id="{e(block.id)}">{e(block.text)}</h{level}>')
        elif isinstance(block, Paragraph):
            body.append(f"<p>{e(block.text)}</p>")
        elif isinstance(block, Items):
            body.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            head = "".join(f'<th scope="col">{e(h)}</th>' for h in block.header)
            rows = "".join(
                "<tr>"
                + "".join(
                    f'<td data-label="{e(label)}">{e(cell)}</td>'
                    for label, cell in zip(block.header, row, strict=True)
                )
                + "</tr>"
                for row in block.rows
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(block, Cards):
            cards = "".join(
                f'<article class="week"><h4>{e(card.title)}</h4><ul>'
                + "".join(f"<li>{e(i)}</li>" for i in card.items)
                + "</ul></article>"
                for card in block.cards
            )
            label = f' aria-label="{e(block.label)}"' if block.label else ""
            body.append(f'<div class="weeks"{label}>{cards}</div>')
        elif isinstance(block, Notice):
            body.append(_html_notice(block))
        else:
            entries = "".join(
                f'<li><a href="#{e(h.id)}">{e(h.text)}</a></li>' for h in document.chapters()
            )
            body.append(
                f'<nav class="contents" aria-labelledby="contents"><h2 id="contents">'
                f"{e(block.title)}</h2><ol>{entries}</ol></nav>"
            )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{style}</style></head>\n<body><main>\n"
        + "\n".join(body)
        + "\n</main></body></html>\n"
    )
