"""Each phase as a small pipeline of typed sub-tasks (their specs: `common.analysis.registry`).

    research     facts (nano) ‖ competitor ladder (mini) → SWOT + SOSTAC (the strongest tier)
    positioning  three options (mini; a nano critic per option judges them) → selection
                 (the strongest tier)
    icps         segments (nano) → one profile per ICP, at once (mini) → consistency pass (nano)
                 → profiles it found wanting, once more, told why
    strategy     product/price/place/promotion ‖ people/process/evidence (mini) ‖ metrics (nano)
    content      four batches of three weeks, at once (nano) → creative briefs (nano) →
                 coherence pass (nano) → batches it found wanting, once more, told why
    analytics    AMEC stages (mini) ‖ lifetime value inputs (nano; code computes the value) ‖
                 route-back triggers (mini)

The tiers are where sub-tasks start until recorded outcomes say better (`Work.start`); every
call escalates from there when its answer fails its checks. A pipeline returns the phase's
output and what its assembled output still fails (`Built.unresolved`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field, create_model

from common.analysis import answers, checks, clv
from common.analysis.registry import PHASES, shares
from common.analysis.work import Done, Work
from common.models import (
    AnalyticsOutput,
    CalendarWeek,
    ContentItem,
    ContentOutput,
    Icp,
    IcpOutput,
    Marketing7Ps,
    PhaseName,
    PositioningOutput,
    ResearchOutput,
    StrategyOutput,
    Strict,
)

WEEKS_PER_BATCH = 3
BATCHES = PHASES["content"].sub_task("weeks").instances[0]
assert BATCHES * WEEKS_PER_BATCH == 12
AGAIN = ".r"  # a sub-task instance asked once more after a review


@dataclass
class Built:
    """A phase's output, and what code still finds wrong with it as assembled."""

    output: Strict
    unresolved: list[str] = field(default_factory=list)


Pipeline = Callable[[Work, Mapping[PhaseName, Any]], Built]


def research(work: Work, earlier: Mapping[PhaseName, Any]) -> Built:
    spec = PHASES["research"]
    facts_spec, ladder_spec, synthesis_spec = spec.sub_tasks
    facts, ladder = work.parallel(
        [
            lambda: work.ask(
                facts_spec,
                "facts",
                work.messages(facts_spec, {}),
                check=lambda answer: checks.facts(answer, work.inputs),
            ),
            lambda: work.ask(
                ladder_spec,
                "ladder",
                work.messages(ladder_spec, {}),
                check=lambda answer: checks.ladder(answer, work.business),
            ),
        ]
    )
    synthesis = work.ask(
        synthesis_spec,
        "synthesis",
        work.messages(synthesis_spec, {"facts": facts.answer, "ladder": ladder.answer}),
        check=checks.synthesis,
        final=True,
    )
    return Built(
        ResearchOutput(
            situation_analysis=synthesis.answer.situation_analysis,
            competitor_ladder=ladder.answer.competitor_ladder,
            evidence=facts.answer.evidence,
            sostac=synthesis.answer.sostac,
        )
    )


def positioning(work: Work, earlier: Mapping[PhaseName, Any]) -> Built:
    spec = PHASES["positioning"]
    options_spec, critique_spec, selection_spec = spec.sub_tasks
    found: ResearchOutput = earlier["research"]
    verdicts: dict[str, list[answers.OptionCritique]] = {}

    def judged(offered: answers.PositioningOptions) -> list[str]:
        problems = checks.options(offered, work.inputs)
        if problems:
            return problems
        reviews = critiques(work, critique_spec, found, offered)
        verdicts[offered.model_dump_json()] = reviews
        return [
            problem
            for n, verdict in enumerate(reviews, start=1)
            for problem in checks.verdict_problems(f"option {n}", verdict)
        ]

    options = work.ask(
        options_spec,
        "options",
        work.messages(options_spec, {"research": found}),
        check=judged,
    )
    offered: answers.PositioningOptions = options.answer
    reviews = verdicts.get(offered.model_dump_json())
    if reviews is None:  # stored by an earlier instance: the critics' verdicts come again
        reviews = critiques(work, critique_spec, found, offered)
    passed = [not checks.failed_criteria(verdict) for verdict in reviews]
    said = "\n".join(
        f"option {n}: " + ("passed" if ok else "; ".join(checks.verdict_problems(f"option {n}", v)))
        for n, (ok, v) in enumerate(zip(passed, reviews, strict=True), start=1)
    )
    selection = work.ask(
        selection_spec,
        "selection",
        work.messages(
            selection_spec,
            {"research": found.situation_analysis, "options": offered, "critic": said},
        ),
        check=lambda answer: checks.selection(answer, offered, passed, work.inputs),
        final=True,
    )
    return Built(PositioningOutput(options=offered.options, selected=selection.answer))


def critiques(
    work: Work,
    sub: Any,
    found: ResearchOutput,
    offered: answers.PositioningOptions,
) -> list[answers.OptionCritique]:
    """The critic's verdict on each option, all at once."""

    def one(n: int) -> Callable[[], answers.OptionCritique]:
        option = offered.options[n]
        others = [o.statement for i, o in enumerate(offered.options) if i != n]
        messages = work.messages(
            sub,
            {
                "research": found.situation_analysis,
                "competitors": found.competitor_ladder[0],
                "other_options": "; ".join(others),
                "option": option,
            },
        )
        key = f"critique-{n + 1}-{_digest(option.model_dump_json())}"
        return lambda: work.review(sub, key, messages, check=checks.critique)

    return work.parallel([one(n) for n in range(len(offered.options))])


def icps(work: Work, earlier: Mapping[PhaseName, Any]) -> Built:
    spec = PHASES["icps"]
    segments_spec, profile_spec, review_spec = spec.sub_tasks
    count = work.business.icp_count
    chosen: PositioningOutput = earlier["positioning"]
    found: ResearchOutput = earlier["research"]
    context: dict[str, BaseModel | str] = {
        "research": found.situation_analysis,
        "positioning": chosen.selected,
    }
    segments = work.ask(
        segments_spec,
        "segments",
        work.messages(segments_spec, context),
        schema=answers.icp_segments(count),
        check=lambda answer: checks.segments(answer, count, work.inputs),
    )
    seeds: list[answers.IcpSeed] = segments.answer.icps
    points = shares(profile_spec.points, count)

    def profile(n: int, told: str | None = None) -> Callable[[], Done]:
        seed = seeds[n]
        others = "; ".join(f"{s.name} ({s.segment})" for i, s in enumerate(seeds) if i != n)
        asked = {**context, "icp": f"{seed.name}: {seed.segment}", "other_icps": others}
        if told is not None:
            asked["review"] = f"a first profile of this ICP was found wanting: {told}"
        key = f"profile-{n + 1}" + ("" if told is None else AGAIN)
        return lambda: work.ask(
            profile_spec,
            key,
            work.messages(profile_spec, asked),
            points=0 if told is not None else points[n],
            label=f"the profile of {seed.name}",
        )

    profiles = work.parallel([profile(n) for n in range(count)])
    review = work.ask(
        review_spec,
        "review",
        work.messages(
            review_spec, {"positioning": chosen.selected, "icps": _icps(seeds, profiles)}
        ),
        schema=answers.icp_review(count),
        check=lambda answer: checks.review(answer.icps),
    )
    flagged = {
        n: "; ".join(checks.verdict_problems(f"ICP {n + 1}", verdict))
        for n, verdict in enumerate(review.answer.icps)
        if checks.failed_criteria(verdict)
    }
    if flagged:
        again = work.parallel([profile(n, told) for n, told in flagged.items()])
        for n, done in zip(flagged, again, strict=True):
            profiles[n] = done
    output = _icps(seeds, profiles)
    return Built(output, checks.icps(output, count, work.inputs))


def _icps(seeds: list[answers.IcpSeed], profiles: list[Done]) -> IcpOutput:
    sized = create_model(
        "IcpOutput",
        __base__=IcpOutput,
        icps=(list[Icp], Field(min_length=len(seeds), max_length=len(seeds))),
    )
    return sized(
        icps=[
            Icp(name=seed.name, segment=seed.segment, **done.answer.model_dump())
            for seed, done in zip(seeds, profiles, strict=True)
        ]
    )


def strategy(work: Work, earlier: Mapping[PhaseName, Any]) -> Built:
    spec = PHASES["strategy"]
    core_spec, service_spec, metrics_spec = spec.sub_tasks
    chosen: PositioningOutput = earlier["positioning"]
    found: ResearchOutput = earlier["research"]
    context: dict[str, BaseModel | str] = {
        "research": found.sostac,
        "positioning": chosen.selected,
    }
    core, service, metrics = work.parallel(
        [
            lambda: work.ask(
                core_spec,
                "core_mix",
                work.messages(core_spec, context),
                check=lambda answer: checks.core_mix(answer, work.inputs),
            ),
            lambda: work.ask(
                service_spec,
                "service_mix",
                work.messages(service_spec, context),
                check=lambda answer: checks.service_mix(answer, work.inputs),
            ),
            lambda: work.ask(
                metrics_spec,
                "metrics",
                work.messages(metrics_spec, context),
                check=checks.north_stars,
            ),
        ]
    )
    mix = Marketing7Ps(**core.answer.model_dump(), **service.answer.model_dump())
    return Built(
        StrategyOutput(marketing_7ps=mix, north_star_metrics=metrics.answer.north_star_metrics)
    )


def content(work: Work, earlier: Mapping[PhaseName, Any]) -> Built:
    spec = PHASES["content"]
    weeks_spec, briefs_spec, review_spec = spec.sub_tasks
    chosen: PositioningOutput = earlier["positioning"]
    audience: IcpOutput = earlier["icps"]
    names = [icp.name for icp in audience.icps]
    who = "\n".join(f"{icp.name} ({icp.segment}): {icp.key_message}" for icp in audience.icps)
    context: dict[str, BaseModel | str] = {"positioning": chosen.selected, "icps": who}
    points = shares(weeks_spec.points, BATCHES)
    schema = answers.week_batch(WEEKS_PER_BATCH, names)

    def batch(b: int, told: str | None = None, taken: str = "") -> Callable[[], Done]:
        first = b * WEEKS_PER_BATCH + 1
        last = first + WEEKS_PER_BATCH - 1
        must_use = names[b::BATCHES]
        asked = dict(context)
        if told is not None:
            asked["review"] = f"a first plan of these weeks was found wanting: {told}"
        if taken:
            asked["titles_taken"] = taken
        key = f"weeks-{b + 1}" + ("" if told is None else AGAIN)
        return lambda: work.ask(
            weeks_spec,
            key,
            work.messages(weeks_spec, asked, first=first, last=last, must_use=", ".join(must_use)),
            schema=schema,
            check=lambda answer: checks.week_batch(answer, first, must_use),
            points=0 if told is not None else points[b],
            label=f"weeks {first} to {last}",
        )

    batches = work.parallel([batch(b) for b in range(BATCHES)])
    # Batches planned at once may share a title or a theme: the later one plans again.
    flagged: dict[int, str] = {}
    for b in range(1, BATCHES):
        clash = checks.clashes(
            [done.answer for done in batches[:b]], batches[b].answer, b * WEEKS_PER_BATCH + 1
        )
        if clash:
            flagged[b] = "; ".join(clash)
    briefs = work.ask(
        briefs_spec,
        "briefs",
        work.messages(briefs_spec, {"calendar": _outline(batches)}),
        check=checks.briefs,
    )
    review = work.ask(
        review_spec,
        "review",
        work.messages(review_spec, {"positioning": chosen.selected, "calendar": _outline(batches)}),
        schema=answers.calendar_review(BATCHES),
        check=lambda answer: checks.review(answer.batches),
    )
    for b, verdict in enumerate(review.answer.batches):
        problems = checks.verdict_problems(f"weeks {b * 3 + 1} to {b * 3 + 3}", verdict)
        if problems:
            flagged[b] = "; ".join([flagged[b], *problems] if b in flagged else problems)
    if flagged:
        kept = [done for b, done in enumerate(batches) if b not in flagged]
        taken = "; ".join(
            item.title for done in kept for week in done.answer.weeks for item in week.items
        )
        again = work.parallel([batch(b, told, taken) for b, told in flagged.items()])
        for b, done in zip(flagged, again, strict=True):
            batches[b] = done
    output = _calendar(batches, briefs.answer.asset_templates)
    return Built(output, checks.calendar(output, names))


def _calendar(batches: list[Done], briefs: list[Any]) -> ContentOutput:
    """The weeks of `batches`, numbered in order, and the briefs."""
    weeks = [
        CalendarWeek(
            week=b * WEEKS_PER_BATCH + n + 1,
            theme=week.theme,
            items=[ContentItem(**item.model_dump()) for item in week.items],
        )
        for b, done in enumerate(batches)
        for n, week in enumerate(done.answer.weeks)
    ]
    return ContentOutput(calendar=weeks, asset_templates=briefs)


def _outline(batches: list[Done]) -> str:
    """The calendar in short: each week's theme and titles."""
    lines = []
    for b, done in enumerate(batches):
        for n, week in enumerate(done.answer.weeks):
            titles = "; ".join(item.title for item in week.items)
            lines.append(f"week {b * WEEKS_PER_BATCH + n + 1}: {week.theme} ({titles})")
    return "\n".join(lines)


def analytics(work: Work, earlier: Mapping[PhaseName, Any]) -> Built:
    spec = PHASES["analytics"]
    amec_spec, clv_spec, triggers_spec = spec.sub_tasks
    chosen: PositioningOutput = earlier["positioning"]
    audience: IcpOutput = earlier["icps"]
    plan: StrategyOutput = earlier["strategy"]
    who = "; ".join(f"{icp.name} ({icp.segment})" for icp in audience.icps)
    context: dict[str, BaseModel | str] = {
        "positioning": chosen.selected,
        "icps": who,
        "strategy": plan,
    }
    amec, inputs, triggers = work.parallel(
        [
            lambda: work.ask(
                amec_spec,
                "amec",
                work.messages(amec_spec, context),
                check=lambda answer: checks.amec(answer, work.inputs),
            ),
            lambda: work.ask(
                clv_spec, "clv", work.messages(clv_spec, context), check=checks.clv_inputs
            ),
            lambda: work.ask(
                triggers_spec,
                "triggers",
                work.messages(triggers_spec, context),
                check=checks.route_backs,
            ),
        ]
    )
    output = AnalyticsOutput(
        amec=amec.answer.amec,
        clv=clv.project(inputs.answer),
        route_back=triggers.answer.route_back,
    )
    return Built(output, checks.analytics(output))


PIPELINES: dict[PhaseName, Pipeline] = {
    "research": research,
    "positioning": positioning,
    "icps": icps,
    "strategy": strategy,
    "content": content,
    "analytics": analytics,
}


def part_keys(phase: PhaseName) -> list[str]:
    """Every part a phase may have stored (the most ICPs a business may ask for)."""
    spec = PHASES[phase]
    keys: list[str] = []
    for sub in spec.sub_tasks:
        if sub.points == 0:
            continue  # a review within another sub-task's check: no part of its own
        if phase == "icps" and sub.name == "profile":
            found = [f"profile-{n}" for n in range(1, 10)]
        elif phase == "content" and sub.name == "weeks":
            found = [f"weeks-{n}" for n in range(1, BATCHES + 1)]
        else:
            found = [sub.name]
        keys += found + ([key + AGAIN for key in found] if sub.name in ("profile", "weeks") else [])
    return keys


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]
