"""The data RaptorFlow reads and writes: the business input and every phase's output.

Phase outputs are what the models must return (as JSON-schema structured output), so they use
only what providers' strict JSON-schema modes accept: required fields, no free-form maps.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

#: A run's id, as `common.analysis.launch` makes it (`uuid4().hex`). Nothing else is one, so no
#: request can name a Firestore-reserved id (`__name__`), a path (`a/b`) or an odd one.
RunId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
#: A machine-readable reason or code (`daily_budget_exceeded`, `workflow_error`).
Code = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]

# A lone surrogate (JSON may carry "\ud800") is not Unicode text: no UTF-8 encoder, Firestore's
# included, accepts it. A valid pair arrives from JSON already combined into one character.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def unicode_text(text: str) -> str:
    """`text`, or `ValueError` saying where its lone surrogate is."""
    found = _LONE_SURROGATE.search(text)
    if found:
        raise ValueError(f"not Unicode text: a lone surrogate at character {found.start()}")
    return text


def cleaned_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD, so that it can be stored."""
    return _LONE_SURROGATE.sub("\ufffd", text)


#: A string that can be stored; a lone surrogate is an error (bound its length where used).
#: (pydantic refuses them itself in strings with a pattern or stripping, not in plain ones.)
UnicodeText = Annotated[str, AfterValidator(unicode_text)]
#: A string we must keep whatever it holds (an error message): lone surrogates become U+FFFD.
CleanedText = Annotated[
    str, BeforeValidator(lambda v: cleaned_text(v) if isinstance(v, str) else v)
]


# Constrained strings (a pattern, stripping) refuse lone surrogates in pydantic itself.
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Slug = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{1,62}$", min_length=2, max_length=63)
]


PhaseName = Literal["research", "positioning", "icps", "strategy", "content", "analytics"]
PHASE_ORDER: tuple[PhaseName, ...] = (
    "research",
    "positioning",
    "icps",
    "strategy",
    "content",
    "analytics",
)
Confidence = Literal["low", "medium", "high"]


class Strict(BaseModel):
    """Unknown fields are an error, so a typo in a request is reported, not ignored."""

    model_config = ConfigDict(extra="forbid")


# --- Input -----------------------------------------------------------------------------------


class BusinessInput(Strict):
    """What a business tells RaptorFlow about itself to start an analysis."""

    business_id: Slug
    name: ShortText
    industry: ShortText
    description: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=20, max_length=5000)
    ]
    goals: list[ShortText] = Field(min_length=1, max_length=10)
    target_market: Text
    competitors: list[ShortText] = Field(default_factory=list, max_length=10)
    icp_count: int = Field(default=3, ge=3, le=9, description="How many ICPs to generate (3-9).")
    website: Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=300)] | None = (
        None
    )


# --- Research --------------------------------------------------------------------------------


class SituationAnalysis(Strict):
    summary: Text
    strengths: list[ShortText] = Field(min_length=1, max_length=8)
    weaknesses: list[ShortText] = Field(min_length=1, max_length=8)
    opportunities: list[ShortText] = Field(min_length=1, max_length=8)
    threats: list[ShortText] = Field(min_length=1, max_length=8)


class CompetitorRung(Strict):
    """One rung of the competitor ladder (rank 1 owns the category in customers' minds)."""

    rank: int = Field(ge=1, le=20)
    competitor: ShortText
    position_held: ShortText
    weakness_to_exploit: ShortText


class Evidence(Strict):
    claim: Text
    source: ShortText
    confidence: Confidence


class Sostac(Strict):
    situation: Text
    objectives: list[ShortText] = Field(min_length=1, max_length=8)
    strategy: Text
    tactics: list[ShortText] = Field(min_length=1, max_length=12)
    action: list[ShortText] = Field(min_length=1, max_length=12)
    control: list[ShortText] = Field(min_length=1, max_length=8)


class ResearchOutput(Strict):
    situation_analysis: SituationAnalysis
    competitor_ladder: list[CompetitorRung] = Field(min_length=1, max_length=10)
    evidence: list[Evidence] = Field(min_length=1, max_length=20)
    sostac: Sostac


# --- Strategy ----------------------------------------------------------------------------------


class PositioningOption(Strict):
    name: ShortText
    statement: Text
    target_segment: ShortText
    key_differentiator: ShortText
    risks: list[ShortText] = Field(min_length=1, max_length=5)


class SelectedPositioning(Strict):
    option_number: int = Field(ge=1, le=3, description="Which of the three options (1-3).")
    statement: Text
    rationale: Text


class PositioningOutput(Strict):
    options: list[PositioningOption] = Field(min_length=3, max_length=3)
    selected: SelectedPositioning


class IcpProfile(Strict):
    """One ICP's profile; its name and segment come from the segments."""

    description: Text
    pains: list[ShortText] = Field(min_length=1, max_length=6)
    goals: list[ShortText] = Field(min_length=1, max_length=6)
    buying_triggers: list[ShortText] = Field(min_length=1, max_length=6)
    objections: list[ShortText] = Field(min_length=1, max_length=6)
    channels: list[ShortText] = Field(min_length=1, max_length=6)
    key_message: Text


class IcpName(Strict):
    name: ShortText
    segment: ShortText


class Icp(IcpProfile, IcpName):  # its name and segment first, then its profile
    """An ideal customer profile (persona)."""


class IcpOutput(Strict):
    icps: list[Icp] = Field(min_length=3, max_length=9)


class Marketing7Ps(Strict):
    product: Text
    price: Text
    place: Text
    promotion: Text
    people: Text
    process: Text
    physical_evidence: Text


class NorthStarMetric(Strict):
    name: ShortText
    definition: Text
    target: ShortText
    measurement_frequency: Literal["daily", "weekly", "monthly", "quarterly"]


class StrategyOutput(Strict):
    marketing_7ps: Marketing7Ps
    north_star_metrics: list[NorthStarMetric] = Field(min_length=1, max_length=5)


# --- Campaign ----------------------------------------------------------------------------------


class ContentItem(Strict):
    channel: ShortText
    format: ShortText
    title: ShortText
    icp: ShortText
    call_to_action: ShortText


class CalendarWeek(Strict):
    week: int = Field(ge=1, le=12)
    theme: ShortText
    items: list[ContentItem] = Field(min_length=1, max_length=7)


class CreativeBrief(Strict):
    name: ShortText
    objective: Text
    audience: ShortText
    key_message: Text
    format: ShortText
    tone: ShortText
    mandatories: list[ShortText] = Field(min_length=1, max_length=6)


class ContentOutput(Strict):
    calendar: list[CalendarWeek] = Field(min_length=12, max_length=12)
    asset_templates: list[CreativeBrief] = Field(min_length=1, max_length=8)

    @model_validator(mode="after")
    def _weeks_in_order(self) -> ContentOutput:
        weeks = [week.week for week in self.calendar]
        if weeks != list(range(1, 13)):
            raise ValueError(f"calendar weeks must be 1..12 in order, got {weeks}")
        return self


# --- Analytics ---------------------------------------------------------------------------------


class AmecStage(Strict):
    """One stage of the AMEC Integrated Evaluation Framework and how it is measured."""

    stage: Literal["inputs", "activities", "outputs", "outtakes", "outcomes", "impact"]
    objective: Text
    metrics: list[ShortText] = Field(min_length=1, max_length=6)


class ClvProjection(Strict):
    average_order_value_usd: float = Field(gt=0)
    purchases_per_year: float = Field(gt=0)
    gross_margin: float = Field(gt=0, le=1)
    annual_retention_rate: float = Field(ge=0, lt=1)
    clv_usd: float = Field(gt=0)
    max_acquisition_cost_usd: float = Field(gt=0)
    assumptions: list[ShortText] = Field(min_length=1, max_length=6)


class RouteBackTrigger(Strict):
    """When a metric misses its threshold, which phase to revisit and what to do."""

    metric: ShortText
    threshold: ShortText
    route_to_phase: PhaseName
    action: Text


AMEC_STAGES = ("inputs", "activities", "outputs", "outtakes", "outcomes", "impact")


class AnalyticsOutput(Strict):
    amec: list[AmecStage] = Field(min_length=6, max_length=6)
    clv: ClvProjection
    route_back: list[RouteBackTrigger] = Field(min_length=1, max_length=8)

    @model_validator(mode="after")
    def _amec_stages_in_order(self) -> AnalyticsOutput:
        stages = tuple(stage.stage for stage in self.amec)
        if stages != AMEC_STAGES:
            raise ValueError(f"amec must list the stages {', '.join(AMEC_STAGES)} in order")
        return self


PHASE_OUTPUTS: dict[PhaseName, type[Strict]] = {
    "research": ResearchOutput,
    "positioning": PositioningOutput,
    "icps": IcpOutput,
    "strategy": StrategyOutput,
    "content": ContentOutput,
    "analytics": AnalyticsOutput,
}
