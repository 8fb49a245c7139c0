"""What a Terraform plan deploys, read from its JSON: each function's code, environment, secrets,
identity and timeout; the workflow's source, identity and variables; every IAM grant.

Values Google computes at apply time (the functions' URLs) are unknown in a plan; the parity run
supplies them (the local stack's URLs) and checks that nothing else is missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tests.parity.iam import Grant
from tests.terraform.planfile import Plan

FUNCTION_TYPE = "google_cloudfunctions2_function"


@dataclass(frozen=True)
class FunctionDeployment:
    """One google_cloudfunctions2_function as planned, with the zip its source comes from."""

    name: str  # the entry point, functions/<name>
    service: str  # the Cloud Run service
    service_account: str
    env: dict[str, str]
    secret_env: list[dict[str, Any]]  # service_config.secret_environment_variables
    timeout_seconds: int
    memory_bytes: int  # service_config.available_memory
    files: dict[str, str]  # the archive: file name -> content


@dataclass(frozen=True)
class WorkflowDeployment:
    name: str
    service_account: str
    source: str
    env: dict[str, str]  # user_env_vars known at plan time
    computed_env: frozenset[str]  # user_env_vars Google computes (the function URLs)


@dataclass(frozen=True)
class Deployment:
    project: str
    region: str
    functions: dict[str, FunctionDeployment]
    workflow: WorkflowDeployment
    grants: list[Grant]

    def function_of(self, service_account: str | None) -> str:
        """The function (or "workflow") that runs as `service_account`."""
        if service_account == self.workflow.service_account:
            return "workflow"
        for function in self.functions.values():
            if function.service_account == service_account:
                return function.name
        return f"unknown caller {service_account}"

    @classmethod
    def from_plan(cls, plan: Plan) -> Deployment:
        variables = plan.document["variables"]
        project = variables["project_id"]["value"]
        region = variables["region"]["value"]
        functions = {}
        for resource in plan.of_type(FUNCTION_TYPE):
            name = resource.values["build_config"][0]["entry_point"]
            config = resource.values["service_config"][0]
            unknown = resource.unknown["service_config"][0].get("environment_variables") or {}
            assert not unknown, f"{name}: environment values unknown until apply: {unknown}"
            archive = plan.data[f'data.archive_file.source["{name}"]']
            functions[name] = FunctionDeployment(
                name=name,
                service=resource.values["name"],
                service_account=config["service_account_email"],
                env=dict(config["environment_variables"]),
                secret_env=list(config.get("secret_environment_variables") or []),
                timeout_seconds=int(config["timeout_seconds"]),
                memory_bytes=memory_bytes(config["available_memory"]),
                files={source["filename"]: source["content"] for source in archive["source"]},
            )
        workflow = plan.one("google_workflows_workflow")
        workflow_deployment = WorkflowDeployment(
            name=workflow.values["name"],
            service_account=workflow.values["service_account"],
            source=workflow.values["source_contents"],
            env=dict(workflow.values.get("user_env_vars") or {}),
            computed_env=frozenset(workflow.unknown.get("user_env_vars") or {}),
        )
        return cls(project, region, functions, workflow_deployment, _grants(plan, project))


# Cloud Run's memory units: binary (Ki, Mi, Gi) and decimal (k, M, G) multiples of a byte.
_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def memory_bytes(size: str) -> int:
    """Bytes of a Cloud Run memory size such as "512Mi", "1Gi" or "256M"."""
    match = re.fullmatch(r"([0-9]+)(Ki|Mi|Gi|k|M|G)?", size)
    assert match, f"not a Cloud Run memory size: {size!r}"
    return int(match.group(1)) * _UNITS[match.group(2) or ""]


def _grants(plan: Plan, project: str) -> list[Grant]:
    grants = []
    for resource in plan.resources:
        values = resource.values
        if resource.type == "google_project_iam_member":
            target = f"projects/{values['project']}"
        elif resource.type == "google_secret_manager_secret_iam_member":
            target = f"projects/{values['project']}/secrets/{values['secret_id']}"
        elif resource.type == "google_cloud_run_service_iam_member":
            # The service's project is the provider's (computed, hence unknown in the plan).
            location, service = values["location"], values["service"]
            target = f"projects/{project}/locations/{location}/services/{service}"
        else:
            assert "_iam_" not in resource.type, f"{resource.address}: a grant the run cannot read"
            continue
        grants.append(Grant(values["member"], values["role"], target, resource.address))
    return grants
