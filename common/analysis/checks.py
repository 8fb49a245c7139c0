"""Checks of sense on sub-task answers: what code can judge, in words a model is told when it is
asked again.

Every answer gets the universal checks: no list that repeats an item, no long text said twice,
no text that merely repeats the business's own description. Each sub-task adds its own (three
distinct positioning options, the selected one among them, the ICP count, every ICP used by
the calendar, no duplicate titles, consistent CLV arithmetic, ...). A check returns the
problems it found (empty: the answer passes). Where code cannot judge, a review (a nano model
with a fixed rubric, `common.analysis.answers`) does.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from common.analysis import clv
from common.analysis.answers import (
    BatchVerdict,
    CompetitorLadder,
    CoreMix,
    CreativeBriefs,
    IcpSegments,
    IcpVerdict,
    NorthStars,
    OptionCritique,
    PositioningOptions,
    ResearchFacts,
    ResearchSynthesis,
    RouteBacks,
    ServiceMix,
    WeekBatch,
)
from common.models import (
    AnalyticsOutput,
    BusinessInput,
    ClvProjection,
    ContentOutput,
    IcpOutput,
    SelectedPositioning,
)

Problems = list[str]
# A text of at least this many words said twice in one answer is a repeat, not a coincidence.
REPEAT_WORDS = 8
# A text of at least this many words found word for word in the business's own texts repeats
# the input instead of analysing it.
ECHO_WORDS = 6
# Two statements sharing this share of their words are the same idea said twice.
SAME_IDEA = 0.8
_WORD = re.compile(r"[\w%$€£]+(?:'[\w]+)*", re.UNICODE)


def words(text: str) -> list[str]:
    """`text`'s words, lower-cased (punctuation dropped)."""
    return _WORD.findall(text.lower())


# Words that carry no idea of their own.
# fmt: off
STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "in", "into",
    "is", "it", "its", "of", "on", "or", "our", "that", "the", "their", "them", "they", "this",
    "to", "was", "we", "with", "who", "will", "your", "you", "more", "most",
})
# fmt: on


def idea_words(text: str, ignore: frozenset[str] = frozenset()) -> set[str]:
    """The words of `text` that carry its idea: no stop word, no number, nothing in `ignore`
    (the business's own words, which every text about it may use)."""
    return {
        word
        for word in words(text)
        if word not in STOPWORDS and word not in ignore and not any(c.isdigit() for c in word)
    }


def similarity(a: str, b: str, ignore: frozenset[str] = frozenset()) -> float:
    """The share of idea words two texts have in common (Jaccard)."""
    left, right = idea_words(a, ignore), idea_words(b, ignore)
    return len(left & right) / len(left | right) if left | right else 1.0


def texts(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string in an answer, with where it is (`options[2].statement`)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from texts(child, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for n, child in enumerate(value):
            yield from texts(child, f"{path}[{n}]")


@dataclass(frozen=True)
class Inputs:
    """What the business told us, as runs of words an answer must not merely repeat."""

    runs: tuple[tuple[str, ...], ...]
    vocabulary: frozenset[str] = frozenset()

    @classmethod
    def of(cls, business: BusinessInput) -> Inputs:
        found = [business.description, business.target_market, *business.goals]
        said = [business.name, business.industry, *found, *business.competitors]
        vocabulary = frozenset(word for text in said for word in words(text))
        return cls(tuple(tuple(words(text)) for text in found), vocabulary)

    def echoed(self, text: str) -> bool:
        """Whether `text` (long enough to matter) is word for word inside an input text."""
        said = tuple(words(text))
        if len(said) < ECHO_WORDS:
            return False
        for run in self.runs:
            for start in range(len(run) - len(said) + 1):
                if run[start : start + len(said)] == said:
                    return True
        return False


def universal(answer: BaseModel, inputs: Inputs) -> Problems:
    """The checks every answer gets: repeated list items, long texts said twice, echoes."""
    found: Problems = []
    found += repeated_items(answer.model_dump(mode="json"))
    seen: dict[tuple[str, ...], str] = {}
    for path, text in texts(answer):
        said = tuple(words(text))
        if len(said) >= REPEAT_WORDS:
            if said in seen:
                found.append(f"{path} repeats {seen[said]} word for word")
            else:
                seen[said] = path
        if inputs.echoed(text):
            found.append(f"{path} merely repeats the business's own description; analyse it")
    return found


def repeated_items(value: Any, path: str = "") -> Problems:
    """Lists of texts that hold the same text twice (case and punctuation aside)."""
    found: Problems = []
    if isinstance(value, dict):
        for key, child in value.items():
            found += repeated_items(child, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        if value and all(isinstance(item, str) for item in value):
            counts = Counter(" ".join(words(item)) for item in value)
            twice = [text for text, n in counts.items() if n > 1 and text]
            if twice:
                found.append(f"{path} lists the same item twice: {twice[0]!r}")
        for n, child in enumerate(value):
            found += repeated_items(child, f"{path}[{n}]")
    return found


def distinct(label: str, values: Sequence[str], *, ideas: Inputs | None = None) -> Problems:
    """`values` must differ from each other (with `ideas`, not even share most of their idea
    words, the business's own words aside); `label` names them (`"option statements"`)."""
    found: Problems = []
    for i, first in enumerate(values):
        for j in range(i + 1, len(values)):
            second = values[j]
            same = " ".join(words(first)) == " ".join(words(second))
            near = ideas is not None and similarity(first, second, ideas.vocabulary) >= SAME_IDEA
            if same or near:
                how = "the same" if same else "nearly the same"
                found.append(f"{label} {i + 1} and {j + 1} are {how}: {first[:80]!r}")
    return found


def has_number(text: str) -> bool:
    return any(ch.isdigit() for ch in text)


# --- Per sub-task -----------------------------------------------------------------------------


def facts(answer: ResearchFacts, inputs: Inputs) -> Problems:
    return distinct("claims", [item.claim for item in answer.evidence], ideas=inputs)


def ladder(answer: CompetitorLadder, business: BusinessInput) -> Problems:
    rungs = answer.competitor_ladder
    found: Problems = []
    ranks = sorted(rung.rank for rung in rungs)
    if ranks != list(range(1, len(rungs) + 1)):
        found.append(f"ranks must be 1 to {len(rungs)}, each once; got {ranks}")
    found += distinct("competitors", [rung.competitor for rung in rungs])
    named = " | ".join(rung.competitor.lower() for rung in rungs)
    for competitor in business.competitors:
        if competitor.lower() not in named:
            found.append(f"the named competitor {competitor!r} is missing from the ladder")
    return found


def synthesis(answer: ResearchSynthesis) -> Problems:
    swot = answer.situation_analysis
    quadrants = {
        "strengths": swot.strengths,
        "weaknesses": swot.weaknesses,
        "opportunities": swot.opportunities,
        "threats": swot.threats,
    }
    found: Problems = []
    where: dict[str, str] = {}
    for quadrant, items in quadrants.items():
        for item in items:
            key = " ".join(words(item))
            if key in where and where[key] != quadrant:
                found.append(f"{item!r} is listed under both {where[key]} and {quadrant}")
            where.setdefault(key, quadrant)
    return found


def options(answer: PositioningOptions, inputs: Inputs) -> Problems:
    found: Problems = []
    found += distinct("options' names", [o.name for o in answer.options])
    found += distinct("options' statements", [o.statement for o in answer.options], ideas=inputs)
    found += distinct(
        "options' differentiators", [o.key_differentiator for o in answer.options], ideas=inputs
    )
    return found


def critique(answer: OptionCritique) -> Problems:
    """A critic that finds fault must say what it is (its own answer's check)."""
    if failed_criteria(answer) and not answer.problems:
        return ["a criterion not met must come with the problems that fail it"]
    return []


def failed_criteria(verdict: BaseModel) -> list[str]:
    """The rubric's criteria a verdict found not met."""
    return [name for name, value in verdict.model_dump().items() if value is False]


def verdict_problems(label: str, verdict: OptionCritique | IcpVerdict | BatchVerdict) -> Problems:
    """What a review found wrong with its subject, in words for the subject's model."""
    failed = failed_criteria(verdict)
    if not failed:
        return []
    why = "; ".join(verdict.problems) or "no reason given"
    return [f"{label} is not {', '.join(failed)}: {why}"]


def selection(
    answer: SelectedPositioning,
    offered: PositioningOptions,
    passed: Sequence[bool],
    inputs: Inputs,
) -> Problems:
    """The selected option must be one the critic passed (when any passed), and its statement
    that option's, not another's."""
    found: Problems = []
    count = len(offered.options)
    number = answer.option_number
    if not 1 <= number <= count:
        return [f"option_number must be one of 1 to {count}"]
    if any(passed) and not passed[number - 1]:
        good = ", ".join(str(n + 1) for n, ok in enumerate(passed) if ok)
        found.append(f"option {number} failed the critic's review; choose among {good}")
    own = similarity(answer.statement, offered.options[number - 1].statement, inputs.vocabulary)
    for n, option in enumerate(offered.options, start=1):
        other = similarity(answer.statement, option.statement, inputs.vocabulary)
        if n != number and other > max(own, 0.5):
            found.append(
                f"the statement is option {n}'s, not option {number}'s: select {n} or "
                f"state option {number}"
            )
    return found


def segments(answer: IcpSegments, count: int, inputs: Inputs) -> Problems:
    found: Problems = []
    if len(answer.icps) != count:
        found.append(f"give exactly {count} ICPs, not {len(answer.icps)}")
    found += distinct("ICP names", [seed.name for seed in answer.icps])
    found += distinct("ICP segments", [seed.segment for seed in answer.icps], ideas=inputs)
    return found


def icps(output: IcpOutput, count: int, inputs: Inputs) -> Problems:
    """The assembled ICPs: as many as asked for, none twice."""
    found: Problems = []
    if len(output.icps) != count:
        found.append(f"{len(output.icps)} ICPs where {count} were asked for")
    found += distinct("ICP names", [icp.name for icp in output.icps])
    found += distinct("ICP key messages", [icp.key_message for icp in output.icps], ideas=inputs)
    return found


def review(verdicts: Sequence[IcpVerdict | BatchVerdict]) -> Problems:
    """A review's own check: each "no" comes with its problems."""
    silent = [n + 1 for n, v in enumerate(verdicts) if failed_criteria(v) and not v.problems]
    if silent:
        return [f"verdicts {silent} find fault without naming the problems"]
    return []


def core_mix(answer: CoreMix, inputs: Inputs) -> Problems:
    return distinct("Ps", list(answer.model_dump().values()), ideas=inputs)


def service_mix(answer: ServiceMix, inputs: Inputs) -> Problems:
    return distinct("Ps", list(answer.model_dump().values()), ideas=inputs)


def north_stars(answer: NorthStars) -> Problems:
    found = distinct("metrics' names", [m.name for m in answer.north_star_metrics])
    for n, metric in enumerate(answer.north_star_metrics, start=1):
        if not has_number(metric.target):
            found.append(f"metric {n}'s target {metric.target!r} has no number to measure by")
    return found


def week_batch(answer: WeekBatch, first_week: int, must_use: Sequence[str]) -> Problems:
    """A batch of weeks: distinct themes and titles, and the ICPs it was given all used."""
    found: Problems = []
    found += distinct("themes of weeks", [week.theme for week in answer.weeks])
    found += duplicate_titles(
        (first_week + n, item.title) for n, week in enumerate(answer.weeks) for item in week.items
    )
    used = {item.icp for week in answer.weeks for item in week.items}
    missing = [name for name in must_use if name not in used]
    if missing:
        found.append(f"these ICPs must each get at least one item: {', '.join(missing)}")
    return found


def duplicate_titles(titled: Iterable[tuple[int, str]]) -> Problems:
    seen: dict[str, int] = {}
    found: Problems = []
    for week, title in titled:
        key = " ".join(words(title))
        if key in seen:
            found.append(f"the title {title!r} of week {week} repeats week {seen[key]}'s")
        else:
            seen[key] = week
    return found


def clashes(earlier: Sequence[WeekBatch], batch: WeekBatch, first_week: int) -> Problems:
    """Titles and themes of `batch` (starting at `first_week`) that earlier batches used."""
    titles = {" ".join(words(i.title)) for b in earlier for w in b.weeks for i in w.items}
    themes = {" ".join(words(w.theme)) for b in earlier for w in b.weeks}
    found: Problems = []
    for n, week in enumerate(batch.weeks):
        if " ".join(words(week.theme)) in themes:
            found.append(f"week {first_week + n}'s theme {week.theme!r} was used before")
        for item in week.items:
            if " ".join(words(item.title)) in titles:
                found.append(f"week {first_week + n}'s title {item.title!r} was used before")
    return found


def briefs(answer: CreativeBriefs) -> Problems:
    return distinct("briefs' names", [brief.name for brief in answer.asset_templates])


def calendar(output: ContentOutput, icp_names: Sequence[str]) -> Problems:
    """The assembled calendar: weeks 1 to 12, no title twice, every ICP used."""
    found: Problems = []
    weeks = [week.week for week in output.calendar]
    if weeks != list(range(1, 13)):
        found.append(f"the calendar must run weeks 1 to 12 in order, got {weeks}")
    found += duplicate_titles(
        (week.week, item.title) for week in output.calendar for item in week.items
    )
    found += distinct("themes of weeks", [week.theme for week in output.calendar])
    used = {item.icp for week in output.calendar for item in week.items}
    unused = [name for name in icp_names if name not in used]
    if unused:
        found.append(f"the calendar never addresses {', '.join(unused)}")
    return found


def amec(answer: BaseModel, inputs: Inputs) -> Problems:
    stages = answer.model_dump()["amec"]
    return distinct("stages' objectives", [stage["objective"] for stage in stages], ideas=inputs)


def clv_inputs(answer: Any) -> Problems:
    """Inputs a lifetime value can rest on."""
    found: Problems = []
    if answer.purchases_per_year > 365:
        found.append("purchases_per_year above 365: more than one purchase a day per customer")
    if answer.annual_retention_rate > clv.MAX_RETENTION:
        found.append(
            f"annual_retention_rate {answer.annual_retention_rate:.3f} above "
            f"{clv.MAX_RETENTION}: nearly every customer forever makes the value meaningless"
        )
    if answer.gross_margin < clv.MIN_MARGIN:
        found.append(f"gross_margin below {clv.MIN_MARGIN}: no business runs on that")
    if answer.average_order_value_usd > clv.MAX_ORDER_USD:
        found.append(f"average_order_value_usd above ${clv.MAX_ORDER_USD:,.0f}")
    return found


def clv_projection(projection: ClvProjection) -> Problems:
    return clv.problems(projection)


def route_backs(answer: RouteBacks) -> Problems:
    found = distinct("triggers' metrics", [t.metric for t in answer.route_back])
    for n, trigger in enumerate(answer.route_back, start=1):
        if trigger.route_to_phase == "analytics":
            found.append(f"trigger {n} routes back to analytics itself; name an earlier phase")
        if not has_number(trigger.threshold):
            found.append(f"trigger {n}'s threshold {trigger.threshold!r} has no number")
    return found


def analytics(output: AnalyticsOutput) -> Problems:
    return clv.problems(output.clv)
