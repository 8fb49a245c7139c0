"""The production-parity stack: built from the default Terraform plan (the one tests/terraform
checks, made once per session), on the session's Firestore emulator."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from common.platform.settings import get_settings
from local import emulator
from tests.parity.deployment import Deployment
from tests.parity.production import ProductionStack
from tests.terraform.conftest import PROJECT
from tests.terraform.planfile import CheckFailed, planned


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """What the default plan (only project_id set) deploys."""
    try:
        plan = planned(tmp_path_factory.mktemp("plan"), f"project_id={PROJECT}")
    except CheckFailed as failure:
        pytest.fail(f"the offline Terraform check failed:\n{failure}", pytrace=False)
    return Deployment.from_plan(plan)


@pytest.fixture(scope="module")
def production(
    deployment: Deployment,
    firestore_emulator: emulator.FirestoreEmulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ProductionStack]:
    """Every function as the plan deploys it, an OpenAI key in Secret Manager, and this test
    process set up as the backend that starts runs."""
    stack = ProductionStack(
        deployment,
        firestore_emulator,
        tmp_path_factory.mktemp("production"),
        {"OPENAI_API_KEY": f"sk-proj-{secrets.token_urlsafe(24)}"},
    )
    stack.start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in stack.backend_env().items():
                patch.setenv(name, value)
            get_settings.cache_clear()
            yield stack
    finally:
        get_settings.cache_clear()
        stack.stop()
