"""The one definition of the analysis: each phase (`PhaseSpec`: what it needs, its share of the
progress bar, its sub-tasks, its output, its brief) and each sub-task (`SubTaskSpec`: its task
type, answer, instruction, points, where it starts and how long its answer runs).

Everything else follows from here or is checked against it by a test: the workflow YAML runs the
phases in `STAGES` (tests/unit/test_registry.py), the router gets each sub-task's task profile,
progress is counted in the points below, prompts carry the instructions below. The order of
phases is `common.models.PHASE_ORDER`, which lower layers use (a test keeps them equal).

Points: a run's percent is `START_WEIGHT` (the lifecycle's start), then every phase's weight,
then the finish; a phase's weight is its start (lease and evidence) plus its sub-tasks' points.
No step moves the bar more than `MAX_STEP` points at once; a sub-task run once per ICP or per
batch shares its points among its instances.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.analysis import answers
from common.llm.base import Complexity
from common.llm.tasks import TaskProfile
from common.models import (
    PHASE_ORDER,
    PHASE_OUTPUTS,
    IcpProfile,
    PhaseName,
    SelectedPositioning,
    Strict,
)
from common.runs.documents import START_WEIGHT

#: Where a sub-task starts: a tier, "strongest" (the strongest tier the business may use,
#: always), or None (the router's own routing: the classifier).
StartTier = Literal["nano", "mini", "full", "strongest"]
MAX_STEP = 5
_COMPLEXITY: dict[StartTier, Complexity] = {
    "nano": "simple",
    "mini": "balanced",
    "full": "complex",
    "strongest": "complex",
}


@dataclass(frozen=True)
class SubTaskSpec:
    """One kind of model call within a phase.

    Attributes:
        name: its name within the phase (`options`); with the phase, its task type.
        title: what it does, for people (`three positioning options`).
        answer: the structured answer it asks for (sized per business where it must be).
        instruction: the prompt's task.
        points: its share of the progress bar (of all its instances together).
        start: where it starts while outcomes say nothing ("strongest" always).
        learns: whether recorded outcomes may move where it starts.
        max_output_tokens: the output bound of one attempt (reasoning included): room for the
            largest answer its schema allows and some reasoning.
        expected_tokens: a typical answer's length, against which streamed tokens move the bar.
        evidence: whether its prompt carries the recalled evidence.
        instances: how many times a phase may run it (once per ICP, per batch of weeks),
            sharing its points.
        phase: the phase it belongs to (set by `PhaseSpec`).
    """

    name: str
    title: str
    answer: type[Strict]
    instruction: str
    points: int
    start: StartTier | None
    learns: bool
    max_output_tokens: int
    expected_tokens: int
    evidence: bool = False
    instances: tuple[int, ...] = (1,)
    phase: PhaseName = "research"

    @property
    def task_type(self) -> str:
        return f"{self.phase}_{self.name}"

    @property
    def profile(self) -> TaskProfile:
        """Its defaults for the router (an unlisted task type there)."""
        return TaskProfile(
            name=self.task_type,
            complexity=_COMPLEXITY[self.start] if self.start else None,
            max_output_tokens=self.max_output_tokens,
            description=self.title,
        )


@dataclass(frozen=True)
class PhaseSpec:
    """One phase: one Cloud Function, one step of the workflow.

    Attributes:
        title: what it does, for people.
        needs: the phases whose outputs it builds on.
        start_points: its start's share of the bar (the lease, the evidence recall).
        sub_tasks: its sub-tasks, in the order they complete.
        output: the schema of its stored output.
        task_type: the whole phase as one model call (today's static routing, which
            `bench/analysis_cost.py` compares the cascade against).
        brief: the phase as one instruction: its evidence query, and the static call's task.
    """

    name: PhaseName
    title: str
    needs: tuple[PhaseName, ...]
    start_points: int
    sub_tasks: tuple[SubTaskSpec, ...]
    output: type[Strict]
    task_type: str

    def __post_init__(self) -> None:
        for sub in self.sub_tasks:
            object.__setattr__(sub, "phase", self.name)

    @property
    def weight(self) -> int:
        return self.start_points + sum(sub.points for sub in self.sub_tasks)

    @property
    def uses_evidence(self) -> bool:
        """Whether any of its sub-tasks is given the business's evidence."""
        return any(sub.evidence for sub in self.sub_tasks)

    def sub_task(self, name: str) -> SubTaskSpec:
        return next(sub for sub in self.sub_tasks if sub.name == name)


def shares(points: int, count: int) -> list[int]:
    """`points` split over `count` instances as evenly as whole points allow."""
    return [round(points * (n + 1) / count) - round(points * n / count) for n in range(count)]


_sub = SubTaskSpec

PHASES: dict[PhaseName, PhaseSpec] = {
    spec.name: spec
    for spec in (
        PhaseSpec(
            "research",
            "Researching the market",
            needs=(),
            start_points=3,
            sub_tasks=(
                _sub(
                    "facts",
                    "facts and claims",
                    answers.ResearchFacts,
                    "List the facts and claims about this business and its market that its "
                    "description and the relevant evidence support: each claim in your own "
                    "words (never copied from the description), its source (the description, "
                    "a named competitor, or the evidence) and your confidence. Distinct claims "
                    "only.",
                    points=5,
                    start="nano",
                    learns=True,
                    max_output_tokens=16_000,
                    expected_tokens=400,
                    evidence=True,
                ),
                _sub(
                    "ladder",
                    "competitor ladder",
                    answers.CompetitorLadder,
                    "Build the competitor ladder: rank 1 is the brand that owns the category in "
                    "customers' minds; ranks 1, 2, 3, ... each once; include every named "
                    "competitor once, with the position it holds and the weakness of it this "
                    "business can exploit.",
                    points=5,
                    start="nano",
                    learns=True,
                    max_output_tokens=8_000,
                    expected_tokens=350,
                    evidence=True,
                ),
                _sub(
                    "synthesis",
                    "SWOT and SOSTAC",
                    answers.ResearchSynthesis,
                    "From the facts and the competitor ladder, write the SWOT situation "
                    "analysis (no item in two quadrants) and a SOSTAC plan outline "
                    "(situation, objectives, strategy, tactics, action, control).",
                    points=5,
                    start="strongest",
                    learns=False,
                    max_output_tokens=12_000,
                    expected_tokens=900,
                ),
            ),
            output=PHASE_OUTPUTS["research"],
            task_type="research_analysis",
        ),
        PhaseSpec(
            "positioning",
            "Choosing a positioning",
            needs=("research",),
            start_points=2,
            sub_tasks=(
                _sub(
                    "options",
                    "three positioning options",
                    answers.PositioningOptions,
                    "Propose exactly three distinct positioning options for this business, "
                    "each with a name, a statement, its target segment, its key differentiator "
                    "and its risks. The options must differ in substance, not in wording.",
                    points=5,
                    start="nano",
                    learns=True,
                    max_output_tokens=8_000,
                    expected_tokens=700,
                    evidence=True,
                ),
                _sub(
                    "critique",
                    "a critic's review of each option",
                    answers.OptionCritique,
                    "Review the positioning option below against this fixed rubric and answer "
                    "yes or no to each: specific (about this business, not any business in "
                    "its industry), differentiated (unlike what the competitors hold and the "
                    "other options), credible (the business can deliver it), grounded (it "
                    "follows from the research). For every 'no', name the problem.",
                    points=0,  # the options' check: within their step
                    start="nano",
                    learns=False,
                    max_output_tokens=2_000,
                    expected_tokens=100,
                ),
                _sub(
                    "selection",
                    "the selected positioning",
                    SelectedPositioning,
                    "Select the strongest of the three options by number (1-3), among those "
                    "the critic passed, and give the final statement (that option's, sharpened "
                    "if need be) and a rationale tied to the research.",
                    points=5,
                    start="strongest",
                    learns=False,
                    max_output_tokens=6_000,
                    expected_tokens=160,
                ),
            ),
            output=PHASE_OUTPUTS["positioning"],
            task_type="positioning_analysis",
        ),
        PhaseSpec(
            "icps",
            "Profiling ideal customers",
            needs=("research", "positioning"),
            start_points=2,
            sub_tasks=(
                _sub(
                    "segments",
                    "the ICPs' segments",
                    answers.IcpSegments,
                    "Name exactly {icp_count} ideal customer profiles for the selected "
                    "positioning: a short name and a segment for each, no two covering the "
                    "same people.",
                    points=3,
                    start="nano",
                    learns=True,
                    max_output_tokens=4_000,
                    expected_tokens=300,
                ),
                _sub(
                    "profile",
                    "one ICP's profile",
                    IcpProfile,
                    "Profile the ideal customer named below for the selected positioning: who "
                    "they are, their pains, goals, buying triggers, objections, the channels "
                    "that reach them, and the key message for them.",
                    points=9,
                    start="nano",
                    learns=True,
                    max_output_tokens=6_000,
                    expected_tokens=500,
                    instances=tuple(range(3, 10)),
                ),
                _sub(
                    "review",
                    "a consistency pass over the ICPs",
                    answers.IcpReview,
                    "Review the ideal customer profiles below, in order, against this fixed "
                    "rubric and answer yes or no to each for every ICP: distinct (no other ICP "
                    "covers the same people), fits (the selected positioning speaks to them), "
                    "coherent (pains, goals, triggers, objections and channels describe the "
                    "same people). For every 'no', name the problem.",
                    points=3,
                    start="nano",
                    learns=False,
                    max_output_tokens=4_000,
                    expected_tokens=400,
                ),
            ),
            output=PHASE_OUTPUTS["icps"],
            task_type="icp_generation",
        ),
        PhaseSpec(
            "strategy",
            "Setting the strategy",
            needs=("research", "positioning"),
            start_points=2,
            sub_tasks=(
                _sub(
                    "core_mix",
                    "product, price, place and promotion",
                    answers.CoreMix,
                    "Define the classic marketing mix for the selected positioning: product, "
                    "price, place and promotion, each specific to this business.",
                    points=4,
                    start="nano",
                    learns=True,
                    max_output_tokens=6_000,
                    expected_tokens=300,
                ),
                _sub(
                    "service_mix",
                    "people, process and physical evidence",
                    answers.ServiceMix,
                    "Define the service marketing mix for the selected positioning: people, "
                    "process and physical evidence, each specific to this business.",
                    points=4,
                    start="nano",
                    learns=True,
                    max_output_tokens=5_000,
                    expected_tokens=230,
                ),
                _sub(
                    "metrics",
                    "north-star metrics",
                    answers.NorthStars,
                    "Choose one to five north-star metrics for the selected positioning, each "
                    "with a definition, a numeric target and how often it is measured.",
                    points=4,
                    start="nano",
                    learns=True,
                    max_output_tokens=4_000,
                    expected_tokens=350,
                ),
            ),
            output=PHASE_OUTPUTS["strategy"],
            task_type="strategy_analysis",
        ),
        PhaseSpec(
            "content",
            "Planning 12 weeks of content",
            needs=("positioning", "icps"),
            start_points=2,
            sub_tasks=(
                _sub(
                    "weeks",
                    "three weeks of the calendar",
                    answers.WeekBatch,
                    "Plan weeks {first} to {last} of a 12-week content calendar: for each week "
                    "a theme (carrying on from the weeks before) and one to seven content items "
                    "(channel, format, a title used nowhere else, the ICP it addresses by name, "
                    "a call to action). Give at least one item to each of: {must_use}.",
                    points=8,
                    start="nano",
                    learns=True,
                    max_output_tokens=8_000,
                    expected_tokens=2_000,
                    instances=(4,),
                ),
                _sub(
                    "briefs",
                    "creative briefs",
                    answers.CreativeBriefs,
                    "Write creative briefs (asset templates) for the recurring assets of the "
                    "calendar below.",
                    points=4,
                    start="nano",
                    learns=True,
                    max_output_tokens=8_000,
                    expected_tokens=1_000,
                ),
                _sub(
                    "review",
                    "a coherence pass over the calendar",
                    answers.CalendarReview,
                    "Review the content calendar below, batch by batch in order, against this "
                    "fixed rubric and answer yes or no to each for every batch: builds (its "
                    "themes carry the arc on from the weeks before), on_message (it speaks the "
                    "selected positioning), varied (its channels and formats vary). For every "
                    "'no', name the problem.",
                    points=3,
                    start="nano",
                    learns=False,
                    max_output_tokens=3_000,
                    expected_tokens=350,
                ),
            ),
            output=PHASE_OUTPUTS["content"],
            task_type="content_calendar",
        ),
        PhaseSpec(
            "analytics",
            "Designing measurement",
            needs=("positioning", "icps", "strategy"),
            start_points=3,
            sub_tasks=(
                _sub(
                    "amec",
                    "the AMEC evaluation stages",
                    answers.AmecPlan,
                    "Build the measurement plan: the six AMEC stages in order (inputs, "
                    "activities, outputs, outtakes, outcomes, impact), each with its objective "
                    "and metrics.",
                    points=4,
                    start="nano",
                    learns=True,
                    max_output_tokens=8_000,
                    expected_tokens=900,
                ),
                _sub(
                    "clv",
                    "the lifetime value's inputs",
                    answers.ClvInputs,
                    "State the inputs of this business's customer lifetime value: average "
                    "order value in USD, purchases per customer per year, gross margin (0-1) "
                    "and the share of customers still buying a year later (0-1), with the "
                    "assumptions behind each. The value itself is computed from them.",
                    points=4,
                    start="nano",
                    learns=True,
                    max_output_tokens=2_000,
                    expected_tokens=120,
                ),
                _sub(
                    "triggers",
                    "route-back triggers",
                    answers.RouteBacks,
                    "Define route-back triggers: which metric, at what numeric threshold, "
                    "sends the team back to which earlier phase (research, positioning, icps, "
                    "strategy or content), and what to do there.",
                    points=4,
                    start="nano",
                    learns=True,
                    max_output_tokens=6_000,
                    expected_tokens=450,
                ),
            ),
            output=PHASE_OUTPUTS["analytics"],
            task_type="analytics_projection",
        ),
    )
}

#: The order the workflow runs phases in: each stage after the one before, its phases at once.
STAGES: tuple[tuple[PhaseName, ...], ...] = (
    ("research",),
    ("positioning",),
    ("icps", "strategy"),
    ("content", "analytics"),
)
#: The points `succeed` adds when it sets the percent to 100.
FINISH_WEIGHT = 100 - START_WEIGHT - sum(spec.weight for spec in PHASES.values())
#: The phases' single-call task types (the static routing the bench compares against).
PHASE_TASKS: dict[PhaseName, str] = {name: spec.task_type for name, spec in PHASES.items()}
SUB_TASKS: dict[str, SubTaskSpec] = {
    sub.task_type: sub for spec in PHASES.values() for sub in spec.sub_tasks
}
assert tuple(PHASES) == PHASE_ORDER


def stage_of(phase: PhaseName) -> int:
    return next(n for n, stage in enumerate(STAGES) if phase in stage)


def base_points(phase: PhaseName) -> int:
    """The percent every phase of earlier stages brings (the lifecycle's start included): where
    `phase` starts on the bar, before its siblings' progress."""
    earlier = [name for stage in STAGES[: stage_of(phase)] for name in stage]
    return START_WEIGHT + sum(PHASES[name].weight for name in earlier)


def siblings(phase: PhaseName) -> tuple[PhaseName, ...]:
    """The phases that run at the same time as `phase`."""
    return tuple(name for name in STAGES[stage_of(phase)] if name != phase)
