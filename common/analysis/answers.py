"""What each sub-task of a phase asks a model for (its structured answer), and the reviews'
fixed rubrics.

A phase's output (`common.models`) is assembled from these by code; some are sized per business
(the ICP count, the ICP names a calendar may use) by `sized`. Like the phase outputs, they use
only what the providers' strict JSON-schema modes accept.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import Field, create_model, model_validator

from common.models import (
    AMEC_STAGES,
    AmecStage,
    CompetitorRung,
    CreativeBrief,
    Evidence,
    NorthStarMetric,
    PositioningOption,
    RouteBackTrigger,
    ShortText,
    SituationAnalysis,
    Sostac,
    Strict,
    Text,
)

#: A rubric's answer to one question: true when the subject meets it.
Verdict = bool


# --- Research -------------------------------------------------------------------------------


class ResearchFacts(Strict):
    """Facts and claims the description and the recalled evidence support."""

    evidence: list[Evidence] = Field(min_length=1, max_length=20)


class CompetitorLadder(Strict):
    competitor_ladder: list[CompetitorRung] = Field(min_length=1, max_length=10)


class ResearchSynthesis(Strict):
    """SWOT and SOSTAC, from the facts and the ladder."""

    situation_analysis: SituationAnalysis
    sostac: Sostac


# --- Positioning ----------------------------------------------------------------------------


class PositioningOptions(Strict):
    options: list[PositioningOption] = Field(min_length=3, max_length=3)


class OptionCritique(Strict):
    """The critic's fixed rubric for one positioning option."""

    specific: Verdict = Field(description="About this business, not any business in its industry.")
    differentiated: Verdict = Field(
        description="Unlike what the competitors hold and unlike the other options."
    )
    credible: Verdict = Field(description="The business can deliver it, from what it says.")
    grounded: Verdict = Field(description="It follows from the research's facts.")
    problems: list[ShortText] = Field(
        max_length=4, description="What fails each 'no' (nothing when all are 'yes')."
    )


# --- ICPs -----------------------------------------------------------------------------------


class IcpSeed(Strict):
    name: ShortText
    segment: ShortText


class IcpSegments(Strict):
    """The distinct segments the profiles cover (sized to the ICP count by `sized`)."""

    icps: list[IcpSeed] = Field(min_length=3, max_length=9)


class IcpVerdict(Strict):
    """The consistency pass's fixed rubric for one ICP."""

    distinct: Verdict = Field(description="No other ICP covers the same people.")
    fits: Verdict = Field(description="The selected positioning speaks to them.")
    coherent: Verdict = Field(
        description="Pains, goals, triggers, objections and channels describe the same people."
    )
    problems: list[ShortText] = Field(max_length=3)


class IcpReview(Strict):
    icps: list[IcpVerdict] = Field(min_length=3, max_length=9)


# --- Strategy -------------------------------------------------------------------------------


class CoreMix(Strict):
    """The classic four Ps."""

    product: Text
    price: Text
    place: Text
    promotion: Text


class ServiceMix(Strict):
    """The three service Ps."""

    people: Text
    process: Text
    physical_evidence: Text


class NorthStars(Strict):
    north_star_metrics: list[NorthStarMetric] = Field(min_length=1, max_length=5)


# --- Content --------------------------------------------------------------------------------


class WeekItem(Strict):
    channel: ShortText
    format: ShortText
    title: ShortText
    icp: ShortText  # one of the ICP names (an enum once `sized`)
    call_to_action: ShortText


class WeekPlan(Strict):
    theme: ShortText
    items: list[WeekItem] = Field(min_length=1, max_length=7)


class WeekBatch(Strict):
    """Consecutive weeks of the calendar; code numbers them."""

    weeks: list[WeekPlan] = Field(min_length=1, max_length=12)


class CreativeBriefs(Strict):
    asset_templates: list[CreativeBrief] = Field(min_length=1, max_length=8)


class BatchVerdict(Strict):
    """The coherence pass's fixed rubric for one batch of weeks."""

    builds: Verdict = Field(description="Its themes carry the arc on from the weeks before.")
    on_message: Verdict = Field(description="It speaks the selected positioning.")
    varied: Verdict = Field(description="Its channels and formats vary.")
    problems: list[ShortText] = Field(max_length=3)


class CalendarReview(Strict):
    batches: list[BatchVerdict] = Field(min_length=1, max_length=12)


# --- Analytics ------------------------------------------------------------------------------


class AmecPlan(Strict):
    amec: list[AmecStage] = Field(min_length=6, max_length=6)

    @model_validator(mode="after")
    def _stages_in_order(self) -> AmecPlan:
        if tuple(stage.stage for stage in self.amec) != AMEC_STAGES:
            raise ValueError(f"amec must list the stages {', '.join(AMEC_STAGES)} in order")
        return self


class ClvInputs(Strict):
    """What the customer lifetime value is computed from: the model states the inputs and its
    assumptions, code does the arithmetic (`common.analysis.clv`)."""

    average_order_value_usd: float = Field(gt=0)
    purchases_per_year: float = Field(gt=0)
    gross_margin: float = Field(gt=0, le=1)
    annual_retention_rate: float = Field(ge=0, lt=1)
    assumptions: list[ShortText] = Field(min_length=1, max_length=4)


class RouteBacks(Strict):
    route_back: list[RouteBackTrigger] = Field(min_length=1, max_length=8)


# --- Sized per business ---------------------------------------------------------------------


M = TypeVar("M", bound=Strict)


def sized(model: type[M], **fields: Any) -> type[M]:
    """`model` with some fields' types replaced (same name: the schema a provider sees is named
    as the base model, so caches and logs group them)."""
    return create_model(model.__name__, __base__=model, **fields)


def icp_segments(count: int) -> type[IcpSegments]:
    """Exactly `count` segments."""
    return sized(IcpSegments, icps=(list[IcpSeed], Field(min_length=count, max_length=count)))


def icp_review(count: int) -> type[IcpReview]:
    """A verdict for each of `count` ICPs."""
    return sized(IcpReview, icps=(list[IcpVerdict], Field(min_length=count, max_length=count)))


def week_batch(weeks: int, icp_names: list[str]) -> type[WeekBatch]:
    """Exactly `weeks` weeks whose items name one of `icp_names`."""
    one_of: Any = Literal.__getitem__(tuple(icp_names))
    item: Any = create_model("WeekItem", __base__=WeekItem, icp=(one_of, ...))
    plan: Any = create_model(
        "WeekPlan", __base__=WeekPlan, items=(list[item], Field(min_length=1, max_length=7))
    )
    return sized(WeekBatch, weeks=(list[plan], Field(min_length=weeks, max_length=weeks)))


def calendar_review(batches: int) -> type[CalendarReview]:
    """A verdict for each of `batches` batches."""
    return sized(
        CalendarReview, batches=(list[BatchVerdict], Field(min_length=batches, max_length=batches))
    )
