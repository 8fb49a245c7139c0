"""A run's analysis as a document a marketer reads: Markdown or HTML, in each schema's order.

`report(run_id, "md" | "html")` reads the stored phase outputs and lays them out: the business,
research (situation, competitor ladder, evidence, SOSTAC), positioning (the options and the one
chosen), ICP cards, the 7Ps and north-star metrics, the 12-week calendar as a table with the
creative briefs, and measurement (AMEC stages, CLV, route-back triggers). One small document
model (headings, paragraphs, lists, tables) renders to both formats, so they never differ.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from common.analysis.phases import stored_output
from common.models import (
    PHASE_ORDER,
    AnalyticsOutput,
    ContentOutput,
    IcpOutput,
    PositioningOutput,
    ResearchOutput,
    StrategyOutput,
)
from common.money import format_usd
from common.runs.documents import get_run

Format = Literal["md", "html"]


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


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


Block = Heading | Paragraph | Items | Table


def report(run_id: str, format: Format = "md") -> str:
    """The run's results as a document (phases not stored, e.g. of a stopped run, are left out
    and said so).

    Raises:
        NotFound: no such run.
    """
    run = get_run(run_id)
    blocks: list[Block] = [
        Heading(1, f"Marketing strategy: {run.input.name}"),
        Paragraph(
            f"{run.input.industry}. {run.input.description} Run {run.run_id}, "
            f"{run.status}, cost {format_usd(run.cost_nanos, 4)}."
        ),
        Items([f"Goal: {goal}" for goal in run.input.goals]),
    ]
    for phase in PHASE_ORDER:
        output = stored_output(run_id, phase)
        if output is None:
            blocks.append(Paragraph(f"({phase}: not available, the run ended before it)"))
            continue
        blocks.extend(_blocks(output))
    blocks.extend(_making(run.phases))
    return render(blocks, format)


def _making(phases: dict[str, dict[str, Any]]) -> Iterator[Block]:
    """How the analysis was made: each phase's sub-tasks, the model that answered, the answers
    that moved up a tier (and why), and what each cost."""
    rows = [
        [
            phase,
            step["title"],
            step["model"],
            "; ".join(f"{e['from']} → {e['to']}: {e['reason']}" for e in step["escalations"])
            or "-",
            format_usd(step["cost_nanos"], 6),
        ]
        for phase in PHASE_ORDER
        for step in phases.get(phase, {}).get("sub_tasks", [])
    ]
    if rows:
        yield Heading(2, "How this analysis was made")
        yield Table(["Phase", "Step", "Model", "Moved up a tier", "Cost"], rows)


def _blocks(output: BaseModel) -> Iterator[Block]:
    if isinstance(output, ResearchOutput):
        situation = output.situation_analysis
        yield Heading(2, "Research")
        yield Paragraph(situation.summary)
        for label, points in (
            ("Strengths", situation.strengths),
            ("Weaknesses", situation.weaknesses),
            ("Opportunities", situation.opportunities),
            ("Threats", situation.threats),
        ):
            yield Heading(3, label)
            yield Items(list(points))
        yield Heading(3, "Competitor ladder")
        yield Table(
            ["Rank", "Competitor", "Position held", "Weakness to exploit"],
            [
                [str(r.rank), r.competitor, r.position_held, r.weakness_to_exploit]
                for r in output.competitor_ladder
            ],
        )
        yield Heading(3, "Evidence")
        yield Items([f"{e.claim} ({e.source}; {e.confidence} confidence)" for e in output.evidence])
        sostac = output.sostac
        yield Heading(3, "SOSTAC")
        yield Items(
            [
                f"Situation: {sostac.situation}",
                f"Objectives: {'; '.join(sostac.objectives)}",
                f"Strategy: {sostac.strategy}",
                f"Tactics: {'; '.join(sostac.tactics)}",
                f"Action: {'; '.join(sostac.action)}",
                f"Control: {'; '.join(sostac.control)}",
            ]
        )
    elif isinstance(output, PositioningOutput):
        yield Heading(2, "Positioning")
        chosen = output.selected
        yield Paragraph(f"Chosen: option {chosen.option_number}. {chosen.statement}")
        yield Paragraph(f"Why: {chosen.rationale}")
        for number, option in enumerate(output.options, start=1):
            yield Heading(3, f"Option {number}: {option.name}")
            yield Paragraph(option.statement)
            yield Items(
                [
                    f"Target segment: {option.target_segment}",
                    f"Key differentiator: {option.key_differentiator}",
                    f"Risks: {'; '.join(option.risks)}",
                ]
            )
    elif isinstance(output, IcpOutput):
        yield Heading(2, "Ideal customer profiles")
        for icp in output.icps:
            yield Heading(3, f"{icp.name} ({icp.segment})")
            yield Paragraph(icp.description)
            yield Items(
                [
                    f"Pains: {'; '.join(icp.pains)}",
                    f"Goals: {'; '.join(icp.goals)}",
                    f"Buying triggers: {'; '.join(icp.buying_triggers)}",
                    f"Objections: {'; '.join(icp.objections)}",
                    f"Channels: {'; '.join(icp.channels)}",
                    f"Key message: {icp.key_message}",
                ]
            )
    elif isinstance(output, StrategyOutput):
        yield Heading(2, "Strategy")
        mix = output.marketing_7ps
        yield Heading(3, "The 7Ps")
        yield Table(
            ["P", "Plan"],
            [
                [name.replace("_", " ").capitalize(), text]
                for name, text in mix.model_dump().items()
            ],
        )
        yield Heading(3, "North-star metrics")
        yield Table(
            ["Metric", "Definition", "Target", "Measured"],
            [
                [m.name, m.definition, m.target, m.measurement_frequency]
                for m in output.north_star_metrics
            ],
        )
    elif isinstance(output, ContentOutput):
        yield Heading(2, "12-week content calendar")
        yield Table(
            ["Week", "Theme", "Channel", "Format", "Title", "ICP", "Call to action"],
            [
                [str(week.week), week.theme, i.channel, i.format, i.title, i.icp, i.call_to_action]
                for week in output.calendar
                for i in week.items
            ],
        )
        yield Heading(3, "Creative briefs")
        for brief in output.asset_templates:
            yield Paragraph(f"{brief.name}: {brief.objective}")
            yield Items(
                [
                    f"Audience: {brief.audience}",
                    f"Key message: {brief.key_message}",
                    f"Format and tone: {brief.format}, {brief.tone}",
                    f"Mandatories: {'; '.join(brief.mandatories)}",
                ]
            )
    elif isinstance(output, AnalyticsOutput):
        yield Heading(2, "Measurement")
        yield Table(
            ["AMEC stage", "Objective", "Metrics"],
            [[s.stage, s.objective, "; ".join(s.metrics)] for s in output.amec],
        )
        clv = output.clv
        yield Heading(3, "Customer lifetime value")
        yield Paragraph(
            f"CLV ${clv.clv_usd:,.2f}; at most ${clv.max_acquisition_cost_usd:,.2f} to acquire a "
            f"customer (order ${clv.average_order_value_usd:,.2f}, {clv.purchases_per_year:g} "
            f"purchases a year, margin {clv.gross_margin:.0%}, retention "
            f"{clv.annual_retention_rate:.0%})."
        )
        yield Items([f"Assumption: {a}" for a in clv.assumptions])
        yield Heading(3, "Route-back triggers")
        yield Table(
            ["Metric", "Threshold", "Back to", "Action"],
            [[t.metric, t.threshold, t.route_to_phase, t.action] for t in output.route_back],
        )


def render(blocks: list[Block], format: Format) -> str:
    """The blocks as Markdown or as a standalone HTML page."""
    return _markdown(blocks) if format == "md" else _html(blocks)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            out.append(block.text)
        elif isinstance(block, Items):
            out.append("\n".join(f"- {item}" for item in block.items))
        else:
            lines = [
                "| " + " | ".join(map(_cell, block.header)) + " |",
                "|" + "---|" * len(block.header),
                *("| " + " | ".join(map(_cell, row)) + " |" for row in block.rows),
            ]
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def _html(blocks: list[Block]) -> str:
    e = html.escape
    title = next((b.text for b in blocks if isinstance(b, Heading)), "RaptorFlow report")
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{e(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{e(block.text)}</p>")
        elif isinstance(block, Items):
            body.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in block.items) + "</ul>")
        else:
            head = "".join(f"<th>{e(h)}</th>" for h in block.header)
            rows = "".join(
                "<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in block.rows
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    style = (
        "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;line-height:1.5}"
        "table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:.3rem;"
        "text-align:left;vertical-align:top}"
    )
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
        f"<style>{style}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
