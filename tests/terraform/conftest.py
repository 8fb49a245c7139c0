"""Fixtures for the Terraform tests: the offline plans (one check run each per session) and an
emulator enforcing firestore.rules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local import emulator
from tests.terraform.planfile import RULES_FILE, WORKFLOW_FILE, CheckFailed, Plan, planned
from tests.terraform.rules_emulator import RulesCompileError, start_with_rules

PROJECT = "demo-project"


# The hashicorp/google versions the offline check serves: the lowest and highest versions.tf
# allows (Makefile OFFLINE_GOOGLE). Plans without a pin use the newest.
OLDEST_GOOGLE = "hashicorp/google=7.41.0"
NEWEST_GOOGLE = "hashicorp/google=8.7.0"

# Everything switched on: Vector Search, Gemini through Vertex AI, an alert email, production
# settings, a cap, a budget, the web app's own origin, a database that destroy deletes.
FULL_VARIABLES = (
    "enable_vector_search=true",
    "gemini_via_vertex=true",
    "alert_email=ops@example.com",
    "environment=prod",
    "platform_daily_cap_usd=500",
    "billing_account=012345-6789AB-CDEF01",
    'web_origins=["https://app.example.com"]',
    "firestore_deletion_policy=DELETE",
)


def _plan(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    *variables: str,
    providers: tuple[str, ...] = (),
) -> Plan:
    if not WORKFLOW_FILE.is_file():
        pytest.skip(f"{WORKFLOW_FILE.relative_to(WORKFLOW_FILE.parents[1])} does not exist yet")
    try:
        return planned(
            tmp_path_factory.mktemp(name), f"project_id={PROJECT}", *variables, providers=providers
        )
    except CheckFailed as failure:
        pytest.fail(f"the offline Terraform check failed:\n{failure}", pytrace=False)


@pytest.fixture(scope="session")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    """The default configuration, exactly as documented: only project_id set."""
    return _plan(tmp_path_factory, "default")


@pytest.fixture(scope="session")
def full_plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    """Everything switched on (`FULL_VARIABLES`), on the newest provider."""
    return _plan(tmp_path_factory, "full", *FULL_VARIABLES)


@pytest.fixture(
    scope="session", params=[NEWEST_GOOGLE, OLDEST_GOOGLE], ids=["google-8", "google-7"]
)
def full_plans(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Plan:
    """The full plan on each provider version the configuration admits."""
    if request.param == NEWEST_GOOGLE:
        plan: Plan = request.getfixturevalue("full_plan")
        return plan
    return _plan(tmp_path_factory, "full-oldest", *FULL_VARIABLES, providers=(request.param,))


@pytest.fixture(scope="session")
def rules_emulator() -> Iterator[emulator.FirestoreEmulator]:
    """An emulator enforcing the repository's firestore.rules (the file Terraform deploys)."""
    try:
        running = start_with_rules(RULES_FILE)
    except RulesCompileError as error:
        pytest.fail(f"firestore.rules does not compile:\n{error}", pytrace=False)
    yield running
    running.stop()
