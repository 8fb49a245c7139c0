"""The messages each sub-task (and, for comparison, each phase as one call) sends to the router.

Every prompt carries the business as one `BUSINESS_JSON:` line (the offline provider reads it to
ground its placeholder text), then what it builds on: earlier phases' results and earlier
sub-tasks' answers (`EARLIER_RESULT name: {json}`), plain context (`CONTEXT name: text`), the
recalled evidence when the sub-task uses it, and last its `TASK:`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from pydantic import BaseModel

from common.llm.base import Message
from common.models import BusinessInput, PhaseName

SYSTEM = (
    "You are RaptorFlow, a senior marketing strategist. Answer with one JSON object that matches "
    "the given JSON schema exactly. Ground every statement in the business facts and earlier "
    "results you are given; where you assume something, say so in the text. Be specific to this "
    "business: no generic advice."
)

# Each phase's brief as one call (the static routing the cascade replaced, kept to compare
# against) and what its evidence is recalled for.
INSTRUCTIONS: dict[PhaseName, str] = {
    "research": (
        "Research the market situation of this business. Give a SWOT situation analysis; a "
        "competitor ladder (rank 1 is the brand that owns the category in customers' minds; "
        "include the named competitors and what weakness of each we can exploit); evidence "
        "(each claim with its source and your confidence); and a SOSTAC plan outline."
    ),
    "positioning": (
        "Propose exactly three distinct positioning options for this business, each with a "
        "statement, target segment, key differentiator and risks. Then select the strongest "
        "option by number (1-3) and give the final statement and a rationale tied to the research."
    ),
    "icps": (
        "Write exactly {icp_count} ideal customer profiles for the selected positioning: who "
        "they are, their pains, goals, buying triggers, objections, the channels that reach "
        "them, and the key message for each."
    ),
    "strategy": (
        "Define the marketing mix (the 7Ps: product, price, place, promotion, people, process, "
        "physical evidence) for the selected positioning, and one to five north-star metrics "
        "with a definition, a target and how often each is measured."
    ),
    "content": (
        "Plan a 12-week content calendar: weeks 1 to 12 in order, each with a theme and one to "
        "seven content items (channel, format, title, the ICP it addresses by name, call to "
        "action). Then write creative briefs (asset templates) for the recurring assets."
    ),
    "analytics": (
        "Build the measurement plan: the six AMEC stages in order (inputs, activities, outputs, "
        "outtakes, outcomes, impact), each with its objective and metrics; a customer lifetime "
        "value projection with explicit assumptions; and route-back triggers: which metric, at "
        "what threshold, sends the team back to which phase, and what to do."
    ),
}


# The evidence block is the one part of a prompt the budget checks cannot see (recalling it needs
# the embedding model); its size is bounded instead, and every estimate reserves room for it.
EVIDENCE_MAX_BYTES = 3000
EVIDENCE_HEADER = "RELEVANT_EVIDENCE:"
# What an estimate adds for it: the block and the blank line joining it to the prompt.
EVIDENCE_RESERVE_BYTES = EVIDENCE_MAX_BYTES + len("\n\n")


def evidence_block(found: list[str]) -> str | None:
    """The evidence section: as many of `found` (best first) as fit in `EVIDENCE_MAX_BYTES`
    of UTF-8, whole snippets only; None when none fits."""
    lines: list[str] = []
    size = len(EVIDENCE_HEADER.encode())
    for item in found:
        line = f"\n- {item}"
        if size + len(line.encode()) > EVIDENCE_MAX_BYTES:
            continue
        lines.append(line)
        size += len(line.encode())
    return EVIDENCE_HEADER + "".join(lines) if lines else None


def business_line(business: BusinessInput) -> str:
    """The business as one compact JSON line."""
    return "BUSINESS_JSON: " + json.dumps(
        business.model_dump(mode="json", exclude_none=True), separators=(",", ":")
    )


def phase_messages(
    phase: PhaseName,
    business: BusinessInput,
    earlier: Mapping[PhaseName, BaseModel],
    evidence: list[str] | None = None,
) -> list[Message]:
    """The system and user messages for one phase."""
    parts = [business_line(business)]
    for name, result in earlier.items():
        compact = json.dumps(result.model_dump(mode="json"), separators=(",", ":"))
        parts.append(f"EARLIER_RESULT {name}: {compact}")
    block = evidence_block(evidence or [])
    if block is not None:
        parts.append(block)
    parts.append("TASK: " + INSTRUCTIONS[phase].format(icp_count=business.icp_count))
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


def subtask_messages(
    task: str,
    business: BusinessInput,
    earlier: Mapping[str, BaseModel | str],
    evidence: list[str] | None = None,
) -> list[Message]:
    """The system and user messages of one sub-task: `task` is its instruction, `earlier` what
    it builds on (results as compact JSON, text as it is), `evidence` the recalled snippets."""
    parts = [business_line(business)]
    for name, item in earlier.items():
        if isinstance(item, BaseModel):
            compact = json.dumps(item.model_dump(mode="json"), separators=(",", ":"))
            parts.append(f"EARLIER_RESULT {name}: {compact}")
        else:
            parts.append(f"CONTEXT {name}: {item}")
    block = evidence_block(evidence or [])
    if block is not None:
        parts.append(block)
    parts.append("TASK: " + task)
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "\n\n".join(parts)},
    ]
