"""A run's analysis as a document a marketer reads: Markdown or HTML, in each schema's order.

`report(run_id, "md" | "html")` reads the run and its stored phase outputs and lays them out as
a strategy document: a title page (business, date, run), a notice when the answers are the
offline provider's placeholders, an executive summary, the contents, then research (situation,
SWOT, competitor ladder, evidence, SOSTAC), positioning (the options and the one chosen), ICP
cards, the 7Ps and north-star metrics, the 12-week calendar as one card per week with the
creative briefs, measurement (AMEC stages, CLV, route-back triggers), and the models and cost
of each phase. The layout (and the print styles) is `common.analysis.document`'s.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from common.analysis.document import (
    Block,
    Card,
    Cards,
    Contents,
    Document,
    Format,
    Heading,
    Items,
    Notice,
    Paragraph,
    Table,
    TitlePage,
    render,
)
from common.analysis.phases import stored_output
from common.models import (
    PHASE_ORDER,
    AnalyticsOutput,
    ContentOutput,
    IcpOutput,
    PhaseName,
    PositioningOutput,
    ResearchOutput,
    StrategyOutput,
    Strict,
)
from common.money import format_usd
from common.runs import lifecycle
from common.runs.documents import Run, get_run

OFFLINE_PROVIDER = "offline"
OFFLINE_NOTICE = (
    "No model provider key was set when this analysis ran, so RaptorFlow's offline provider "
    "wrote every answer: placeholders built from the business's own description, useful to see "
    "the shape of the report, not advice. Costs are what the routed models would have charged "
    "for the same tokens."
)
PHASE_TITLES: dict[str, str] = {
    "research": "Research",
    "positioning": "Positioning",
    "icps": "Ideal customer profiles",
    "strategy": "Strategy",
    "content": "12-week content calendar",
    "analytics": "Measurement",
}


def report(run_id: str, format: Format = "md") -> str:
    """The run's results as a document (phases not stored, e.g. of a stopped run, are left out
    and said so).

    Raises:
        NotFound: no such run.
    """
    return render(build(run_id), format)


def build(run_id: str) -> Document:
    """The document of a run, before it is rendered.

    Raises:
        NotFound: no such run.
    """
    run = get_run(run_id)
    outputs: dict[PhaseName, Strict] = {}
    for phase in PHASE_ORDER:
        output = stored_output(run_id, phase)
        if output is not None:
            outputs[phase] = output
    summary = lifecycle.summarize(run)
    offline = OFFLINE_PROVIDER in summary.providers_used or any(
        p.provider == OFFLINE_PROVIDER for p in summary.phases.values()
    )
    notice = Notice("Offline placeholders.", OFFLINE_NOTICE) if offline else None
    blocks: list[Block] = [
        _title_page(run, notice),
        Contents(),
        Heading(2, "Executive summary", "summary"),
        *_summary(run, outputs),
    ]
    for phase in PHASE_ORDER:
        if phase in outputs:
            blocks.extend(_blocks(outputs[phase]))
        else:
            blocks.append(Paragraph(f"({phase}: not available, the run ended before it)"))
    blocks.extend(_making(run.phases))
    blocks.extend(_colophon(run, summary))
    return Document(blocks, running_title=f"{run.input.name}: marketing strategy")


def _sentence(text: str) -> str:
    """`text` ending with one full stop (a name like "Tidewater Coffee Co." has its own)."""
    return text if text.endswith((".", "!", "?")) else text + "."


def _day(run: Run) -> str:
    when = run.finished_at or run.created_at or dt.datetime.now(dt.UTC)
    return f"{when.day} {when:%B %Y}"


def _title_page(run: Run, notice: Notice | None) -> TitlePage:
    business = run.input
    facts = [
        ("Business", f"{business.name} ({business.business_id})"),
        ("Industry", business.industry),
        ("Market", business.target_market),
        ("Goals", "; ".join(business.goals)),
        ("Date", _day(run)),
        ("Run", f"{run.run_id} ({run.status}, {run.tier} plan)"),
    ]
    return TitlePage(f"Marketing strategy: {business.name}", business.description, facts, notice)


def _summary(run: Run, outputs: dict[PhaseName, Strict]) -> Iterator[Block]:
    """A page a busy reader can stop after: each phase's conclusion in a line."""
    lines: list[str] = []
    research = outputs.get("research")
    if isinstance(research, ResearchOutput):
        lines.append(f"Situation: {research.situation_analysis.summary}")
    positioning = outputs.get("positioning")
    if isinstance(positioning, PositioningOutput):
        chosen = positioning.selected
        name = positioning.options[chosen.option_number - 1].name
        lines.append(f"Positioning: {_sentence(name)} {chosen.statement}")
    icps = outputs.get("icps")
    if isinstance(icps, IcpOutput):
        who = "; ".join(f"{icp.name} ({icp.segment})" for icp in icps.icps)
        lines.append(f"Customers to win first: {who}.")
    strategy = outputs.get("strategy")
    if isinstance(strategy, StrategyOutput):
        metrics = "; ".join(f"{m.name}: {m.target}" for m in strategy.north_star_metrics)
        lines.append(_sentence(f"North-star metrics: {metrics}"))
    content = outputs.get("content")
    if isinstance(content, ContentOutput):
        pieces = [item for week in content.calendar for item in week.items]
        channels = sorted({item.channel for item in pieces})
        lines.append(
            f"Content: {len(pieces)} pieces over {len(content.calendar)} weeks on "
            f"{', '.join(channels)}, opening with “{content.calendar[0].theme}”."
        )
    analytics = outputs.get("analytics")
    if isinstance(analytics, AnalyticsOutput):
        clv = analytics.clv
        lines.append(
            f"Economics: a customer is worth ${clv.clv_usd:,.2f} over their lifetime; spend at "
            f"most ${clv.max_acquisition_cost_usd:,.2f} to win one."
        )
    if lines:
        yield Items(lines)
    missing = [phase for phase in PHASE_ORDER if phase not in outputs]
    if missing:
        yield Paragraph(
            f"Not available: {', '.join(missing)} (the run ended {run.status} before "
            f"{'it' if len(missing) == 1 else 'them'})."
        )


def _making(phases: dict[str, dict[str, Any]]) -> Iterator[Block]:
    """How the analysis was made: each phase's sub-tasks, the model that answered, the answers
    that moved up a tier (and why), and what each cost."""
    rows = [
        [
            PHASE_TITLES.get(phase, phase),
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
        yield Heading(2, "How this analysis was made", "making")
        yield Table(["Phase", "Step", "Model", "Moved up a tier", "Cost"], rows)


def _colophon(run: Run, summary: lifecycle.RunSummary) -> Iterator[Block]:
    yield Heading(2, "Models and cost", "cost")
    rows = []
    for name, total in summary.phases.items():
        phase = run.phases.get(name, {})
        seconds = f"{(total.duration_ms or 0) / 1000:.1f} s" if total.duration_ms else "-"
        rows.append(
            [
                PHASE_TITLES.get(name, name),
                total.model or "-",
                total.provider or "-",
                f"{phase.get('input_tokens', 0):,} / {phase.get('output_tokens', 0):,}",
                f"${total.cost_usd:.4f}",
                seconds,
            ]
        )
    rows.append(["Total", "", "", "", f"${summary.total_cost_usd:.4f}", ""])
    yield Table(["Phase", "Model", "Provider", "Tokens in / out", "Cost", "Time"], rows)
    duration = (
        f" in {summary.duration_seconds:.0f} s" if summary.duration_seconds is not None else ""
    )
    yield Paragraph(
        f"Written by RaptorFlow on {_day(run)} from run {run.run_id}{duration}, for "
        f"${summary.total_cost_usd:.4f} of model calls (every attempt counted, retries and "
        "fallbacks included); each task was routed to the cheapest model expected to do it well "
        f"on the {run.tier} plan."
    )


def _blocks(output: BaseModel) -> Iterator[Block]:
    if isinstance(output, ResearchOutput):
        situation = output.situation_analysis
        yield Heading(2, "Research", "research")
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
        yield Table(
            ["Claim", "Source", "Confidence"],
            [[e.claim, e.source, e.confidence] for e in output.evidence],
        )
        sostac = output.sostac
        yield Heading(3, "SOSTAC")
        yield Table(
            ["Stage", "Plan"],
            [
                ["Situation", sostac.situation],
                ["Objectives", "; ".join(sostac.objectives)],
                ["Strategy", sostac.strategy],
                ["Tactics", "; ".join(sostac.tactics)],
                ["Action", "; ".join(sostac.action)],
                ["Control", "; ".join(sostac.control)],
            ],
        )
    elif isinstance(output, PositioningOutput):
        yield Heading(2, "Positioning", "positioning")
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
        yield Heading(2, "Ideal customer profiles", "icps")
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
        yield Heading(2, "Strategy", "strategy")
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
        yield Heading(2, "12-week content calendar", "calendar")
        # One card per week (its theme, then each piece in a line) reads as a plan; one table
        # row per piece (36 rows or more) did not.
        yield Cards(
            [
                Card(
                    f"Week {week.week}: {week.theme}",
                    [
                        f"{i.title} ({i.channel}, {i.format}) for {_sentence(i.icp)} "
                        f"Call to action: {i.call_to_action}"
                        for i in week.items
                    ],
                )
                for week in output.calendar
            ],
            label="Weeks 1 to 12",
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
        yield Heading(2, "Measurement", "measurement")
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
