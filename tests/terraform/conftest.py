"""Fixtures for the Terraform tests: the offline plans (one check run each per session) and an
emulator enforcing firestore.rules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local import emulator
from tests.terraform.planfile import RULES_FILE, WORKFLOW_FILE, CheckFailed, Plan, planned
from tests.terraform.rules_emulator import RulesCompileError, start_with_rules

PROJECT = "demo-project"


def _plan(tmp_path_factory: pytest.TempPathFactory, name: str, *variables: str) -> Plan:
    if not WORKFLOW_FILE.is_file():
        pytest.skip(f"{WORKFLOW_FILE.relative_to(WORKFLOW_FILE.parents[1])} does not exist yet")
    try:
        return planned(tmp_path_factory.mktemp(name), f"project_id={PROJECT}", *variables)
    except CheckFailed as failure:
        pytest.fail(f"the offline Terraform check failed:\n{failure}", pytrace=False)


@pytest.fixture(scope="session")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    """The default configuration, exactly as documented: only project_id set."""
    return _plan(tmp_path_factory, "default")


@pytest.fixture(scope="session")
def full_plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    """Everything switched on: Vector Search, Gemini through Vertex AI, an alert email,
    production settings, a cap."""
    return _plan(
        tmp_path_factory,
        "full",
        "enable_vector_search=true",
        "gemini_via_vertex=true",
        "alert_email=ops@example.com",
        "environment=prod",
        "platform_daily_cap_usd=500",
    )


@pytest.fixture(scope="session")
def rules_emulator() -> Iterator[emulator.FirestoreEmulator]:
    """An emulator enforcing the repository's firestore.rules (the file Terraform deploys)."""
    try:
        running = start_with_rules(RULES_FILE)
    except RulesCompileError as error:
        pytest.fail(f"firestore.rules does not compile:\n{error}", pytrace=False)
    yield running
    running.stop()
