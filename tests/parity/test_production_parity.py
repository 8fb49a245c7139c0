"""A complete run under the boundaries the Terraform plan puts around each function, and, for
every grant the run needs, the same run without it: it must fail naming who lacks what.

Each function runs from its plan's zip in a folder of its own, with its plan's environment and
identity; Secret Manager, Vertex AI and Firestore answer PERMISSION_DENIED, and each function's
ingress 403, unless the plan grants the role (tests/parity/production.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest
from google.cloud.firestore_v1.base_query import FieldFilter

from common.analysis import evidence, prompts
from common.analysis.phases import stored_output
from common.analysis.registry import PHASES
from common.llm.tokens import count_tokens
from common.models import PHASE_ORDER, ResearchOutput
from common.platform.store import db
from local.stack import ROOT
from tests.parity.production import (
    Outcome,
    ParityFailure,
    ProductionStack,
    worst_case_business,
)
from tests.terraform.planfile import API_FUNCTIONS, function_kind, repository_functions

# The functions the workflow calls, in the order it first calls them (each phase checks its
# budget itself; budget_check keeps the workflow's grants for executions of earlier revisions).
WORKFLOW_ORDER = ("lifecycle", *PHASE_ORDER)


@dataclass(frozen=True)
class Need:
    """A grant the run needs: `role` for `member` ("workflow" or a function) on the project,
    a secret or a function's service (`kind`, `name`)."""

    member: str
    role: str
    kind: str
    name: str = ""

    @property
    def id(self) -> str:
        parts = (self.member, self.role.rsplit("/", 1)[1], self.name)
        return "-".join(part for part in parts if part)

    def resource(self, production: ProductionStack) -> str:
        deployment = production.deployment
        project = f"projects/{deployment.project}"
        if self.kind == "secret":
            return f"{project}/secrets/{self.name}"
        if self.kind == "service":
            service = deployment.functions[self.name].service
            return f"{project}/locations/{deployment.region}/services/{service}"
        return project


def needs() -> list[Need]:
    """What the code needs of each function the workflow calls: Firestore for all, the API keys
    for the phases (both read when the router is built, the Gemini key though it has no
    version), and the workflow's right to invoke each; Vertex AI: nothing, by default. In the
    order the workflow calls them and the router reads the keys, so that few cases need a
    fresh instance (`ProductionStack.without`)."""
    found = []
    for name in WORKFLOW_ORDER:
        found.append(Need(name, "roles/datastore.user", "project"))
        if function_kind(name) == "phase":
            for secret in ("OPENAI_API_KEY", "GEMINI_API_KEY"):
                found.append(Need(name, "roles/secretmanager.secretAccessor", "secret", secret))
        found.append(Need("workflow", "roles/run.invoker", "service", name))
    return found


NEEDS = needs()


def test_the_cases_cover_every_function_the_workflow_calls() -> None:
    assert set(WORKFLOW_ORDER) == set(repository_functions()) - API_FUNCTIONS - {"budget_check"}


@pytest.mark.emulator
@pytest.mark.parametrize("need", NEEDS, ids=[need.id for need in NEEDS])
def test_without_a_grant_the_run_fails_naming_the_function_and_the_role(
    production: ProductionStack, need: Need
) -> None:
    resource = need.resource(production)
    grant = production.grant(need.member, need.role, resource)
    with production.without(grant), pytest.raises(ParityFailure) as failure:
        production.run()
    message = str(failure.value)
    assert f"{need.member} (" in message, message
    assert f"lacks {need.role} on {resource}" in message, message


@pytest.fixture(scope="module")
def success(production: ProductionStack) -> Outcome:
    """The worst case, in the one complete run the other tests need anyway: the business at
    every bound of its schema, and every model answer as large as its schema and the task's
    output bound allow (research: all 20 evidence items and 10 competitors, each snippet past
    the embedding model's 256 tokens)."""
    production.openai.longest = True
    try:
        return production.run(worst_case_business(), timeout=240)
    finally:
        production.openai.longest = False


@pytest.mark.emulator
def test_a_complete_run_succeeds_with_exactly_what_the_plan_gives(
    production: ProductionStack, success: Outcome
) -> None:
    assert success.run.status == "succeeded"
    assert success.run.providers_used == ["openai"]
    # The key came from Secret Manager (no function has it in its environment) to the provider.
    key = production.secrets["OPENAI_API_KEY"]
    assert {r.headers["authorization"] for r in production.openai.requests} == {f"Bearer {key}"}
    assert production.local is not None
    folders = [function.cwd for function in production.local.functions.values()]
    assert len(set(folders)) == len(folders) and ROOT not in folders


@pytest.mark.emulator
def test_positioning_sees_evidence_that_research_stored_from_another_process(
    production: ProductionStack, success: Outcome
) -> None:
    assert production.local is not None
    functions = production.local.functions
    research, positioning = functions["research"], functions["positioning"]
    assert research.cwd != positioning.cwd and research.process.pid != positioning.process.pid
    stored = stored_output(success.run_id, "research")
    assert isinstance(stored, ResearchOutput)
    # Snippets only the evidence store writes from research's output (situation, evidence
    # claims, competitor rungs), from this run; the business's own description is not one.
    snippets = evidence.snippets(success.business, stored)
    written = [text for kind, text in snippets if kind != "description"]
    assert written
    business = f'"business_id":"{success.business.business_id}"'
    task = "TASK: " + PHASES["positioning"].sub_task("options").instruction.split("{")[0]
    prompts_seen = [
        message["content"]
        for request in production.openai.requests
        for message in request.body["messages"]
        if message["role"] == "user" and business in message["content"]
    ]
    positioning_prompts = [prompt for prompt in prompts_seen if task in prompt]
    assert positioning_prompts, "the OpenAI server saw no positioning prompt"
    block = positioning_prompts[0].split(prompts.EVIDENCE_HEADER, 1)[1].split("\n\nTASK:")[0]
    assert any(snippet in block for snippet in written), block
    # They travelled through Firestore (the evidence collection), not a disk.
    query = (
        db()
        .collection("evidence")
        .where(filter=FieldFilter("business_id", "==", success.business.business_id))
    )
    assert len(list(query.stream())) >= len(written)


@pytest.mark.emulator
def test_the_runs_use_exactly_the_grants_removed_one_by_one_above(
    production: ProductionStack, success: Outcome
) -> None:
    # Every run of this module counts: instances keep secrets, so a late run reads none.
    used = {grant for check in production.checks for grant in check.allowed_by}
    expected = {
        production.grant(need.member, need.role, need.resource(production)) for need in NEEDS
    }
    assert {g.address for g in used} == {g.address for g in expected}


# Cloud Run stops an instance that uses more memory than its limit, after the paid model call
# (issue 18): each function's measured peak must leave this share of its limit free, for what
# the measurement cannot see (the runtime's own overhead, allocator behaviour on other CPUs).
MEMORY_HEADROOM = 0.15


@pytest.mark.emulator
def test_every_function_stays_within_its_planned_memory_with_headroom(
    production: ProductionStack, success: Outcome, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every run of this module counts (instances serve many runs); `success` is the worst case.
    research = stored_output(success.run_id, "research")
    assert isinstance(research, ResearchOutput)
    # Research embedded as many snippets as the schema allows, each past the embedding model's
    # 256-token window: the most memory an evidence step can take.
    most = ResearchOutput.model_json_schema()["properties"]["evidence"]["maxItems"]
    assert len(research.evidence) == most
    assert min(count_tokens(item.claim) for item in research.evidence) > 256
    # The budget check answers other callers (the runs' phases check themselves): the largest
    # question a phase would ask, the worst-case business's whole description priced.
    assert production.local is not None
    asked = httpx.post(
        production.local.functions["budget_check"].url,
        json={
            "business_id": success.business.business_id,
            "task_type": PHASES["research"].task_type,
            "input": success.business.model_dump_json(),
        },
        timeout=60,
    )
    assert asked.status_code in (200, 402), asked.text
    peaks = production.peak_memory()
    functions = production.deployment.functions
    assert set(peaks) == set(functions) and all(peaks.values()), peaks
    rows, over = [], []
    for name in sorted(functions):
        limit, peak = functions[name].memory_bytes, peaks[name]
        allowed = limit * (1 - MEMORY_HEADROOM)
        rows.append(
            f"  {name:<13} peak {peak / 2**20:7.0f} MiB of {limit / 2**20:5.0f} MiB "
            f"({peak / limit:4.0%}; at most {1 - MEMORY_HEADROOM:.0%})"
        )
        if peak > allowed:
            over.append(name)
    title = "peak memory per function (worst-case run) against its plan's limit:"
    table = "\n".join([title, *rows])
    with capsys.disabled():
        print("\n" + table)
    assert not over, f"above {1 - MEMORY_HEADROOM:.0%} of the planned memory: {over}\n{table}"
