"""What a person deploying RaptorFlow follows: docs/deploy.md's deployer roles and `make deploy`,
and a repository that needs nothing beside it."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.terraform.planfile import ROOT, Plan

DEPLOY_DOC = ROOT / "docs" / "deploy.md"

# The predefined role that lets the deployer create each planned resource type, from Google's
# pages (one role can cover several types). A new resource type fails the test until it is here.
SERVICE_ACCOUNT_USER = "roles/iam.serviceAccountUser"
DEPLOYER_ROLES: dict[str, tuple[tuple[str, ...], str]] = {
    "google_project_service": (
        # Enabling services, and consuming quota of the project named as quota project.
        ("roles/serviceusage.serviceUsageAdmin",),
        "https://cloud.google.com/iam/docs/roles-permissions/serviceusage",
    ),
    "google_service_account": (
        ("roles/iam.serviceAccountAdmin",),
        "https://cloud.google.com/iam/docs/service-accounts-create",
    ),
    "google_project_iam_member": (
        ("roles/resourcemanager.projectIamAdmin",),
        "https://cloud.google.com/iam/docs/granting-changing-revoking-access",
    ),
    "google_secret_manager_secret": (
        ("roles/secretmanager.admin",),
        "https://cloud.google.com/secret-manager/docs/access-control",
    ),
    "google_secret_manager_secret_iam_member": (
        ("roles/secretmanager.admin",),
        "https://cloud.google.com/secret-manager/docs/access-control",
    ),
    "google_storage_bucket": (
        ("roles/storage.admin",),
        "https://cloud.google.com/storage/docs/access-control/iam-roles",
    ),
    "google_storage_bucket_object": (
        ("roles/storage.admin",),
        "https://cloud.google.com/storage/docs/access-control/iam-roles",
    ),
    "google_cloudfunctions2_function": (
        # Deploying needs actAs on the runtime and the build service accounts.
        ("roles/cloudfunctions.developer", SERVICE_ACCOUNT_USER),
        "https://cloud.google.com/functions/docs/reference/iam/roles",
    ),
    "google_cloud_run_service_iam_member": (
        # "only project owners and Cloud Run Admins can modify IAM policies"
        ("roles/run.admin",),
        "https://cloud.google.com/run/docs/securing/managing-access",
    ),
    "google_workflows_workflow": (
        # A workflow runs as a service account: actAs on it.
        ("roles/workflows.editor", SERVICE_ACCOUNT_USER),
        "https://cloud.google.com/workflows/docs/authentication",
    ),
    "google_firestore_database": (
        # Creating a database with point-in-time recovery.
        ("roles/datastore.owner",),
        "https://cloud.google.com/firestore/docs/use-pitr",
    ),
    "google_firestore_index": (
        ("roles/datastore.owner",),
        "https://cloud.google.com/iam/docs/roles-permissions/firestore",
    ),
    "google_firestore_field": (
        ("roles/datastore.owner",),
        "https://cloud.google.com/iam/docs/roles-permissions/firestore",
    ),
    "google_firebaserules_ruleset": (
        ("roles/firebaserules.admin",),
        "https://cloud.google.com/iam/docs/roles-permissions/firebaserules",
    ),
    "google_firebaserules_release": (
        ("roles/firebaserules.admin",),
        "https://cloud.google.com/iam/docs/roles-permissions/firebaserules",
    ),
    "google_logging_metric": (
        ("roles/logging.configWriter",),
        "https://cloud.google.com/logging/docs/access-control",
    ),
    "google_monitoring_alert_policy": (
        ("roles/monitoring.editor",),
        "https://cloud.google.com/monitoring/access-control",
    ),
    "google_monitoring_dashboard": (
        ("roles/monitoring.editor",),
        "https://cloud.google.com/monitoring/access-control",
    ),
    "google_monitoring_notification_channel": (
        ("roles/monitoring.editor",),
        "https://cloud.google.com/monitoring/access-control",
    ),
    "google_identity_platform_config": (
        ("roles/identityplatform.admin",),
        "https://cloud.google.com/identity-platform/docs/access-control",
    ),
    "google_apikeys_key": (
        ("roles/serviceusage.apiKeysAdmin",),
        "https://cloud.google.com/docs/authentication/api-keys#required-roles",
    ),
    "google_artifact_registry_repository": (
        # Creating repositories (repoAdmin manages existing ones only).
        ("roles/artifactregistry.admin",),
        "https://cloud.google.com/artifact-registry/docs/access-control#roles",
    ),
    "google_billing_budget": (
        # Granted on the billing account, not the project.
        ("roles/billing.costsManager",),
        "https://cloud.google.com/billing/docs/how-to/budgets#budget-permissions",
    ),
    # hashicorp/time: a clock and a wait on the deployer's machine, nothing in Google Cloud.
    "time_sleep": ((), "https://registry.terraform.io/providers/hashicorp/time/latest/docs"),
    "time_static": ((), "https://registry.terraform.io/providers/hashicorp/time/latest/docs"),
    "google_vertex_ai_index": (
        ("roles/aiplatform.admin",),
        "https://cloud.google.com/vertex-ai/docs/general/access-control",
    ),
    "google_vertex_ai_index_endpoint": (
        ("roles/aiplatform.admin",),
        "https://cloud.google.com/vertex-ai/docs/general/access-control",
    ),
    "google_vertex_ai_index_endpoint_deployed_index": (
        ("roles/aiplatform.admin",),
        "https://cloud.google.com/vertex-ai/docs/general/access-control",
    ),
}


def documented_deployer_roles() -> set[str]:
    """The roles listed under docs/deploy.md's "Deployer roles" heading."""
    text = DEPLOY_DOC.read_text()
    match = re.search(r"^##[^\n]*Deployer roles[^\n]*\n(.*?)(?=^## )", text, re.M | re.S)
    assert match, f"{DEPLOY_DOC} has no '## ... Deployer roles' section"
    return set(re.findall(r"`(roles/[A-Za-z.]+)`", match.group(1)))


def test_the_documented_deployer_roles_can_create_every_planned_resource(
    full_plan: Plan,
) -> None:
    documented = documented_deployer_roles()
    assert not documented & {"roles/owner", "roles/editor"}, "the list is the non-Owner route"
    planned = {r.type for r in full_plan.resources}
    unmapped = planned - set(DEPLOYER_ROLES)
    assert not unmapped, f"which role creates {sorted(unmapped)}? add it to DEPLOYER_ROLES"
    for type_ in sorted(planned):
        roles, page = DEPLOYER_ROLES[type_]
        missing = set(roles) - documented
        assert not missing, f"{type_} needs {sorted(missing)} ({page}); docs/deploy.md omits it"


def test_make_deploy_plans_once_and_applies_that_plan() -> None:
    # No targeted first apply and no stop for secrets: functions read keys at run time.
    done = subprocess.run(
        ["make", "-n", "deploy", "PROJECT_ID=demo-project"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    commands = [line for line in done.stdout.splitlines() if line.startswith("terraform")]
    assert commands == [
        "terraform -chdir=terraform init -input=false",
        "terraform -chdir=terraform plan -input=false -var project_id=demo-project "
        "-out=.build/deploy.tfplan",
        "terraform -chdir=terraform apply -input=false .build/deploy.tfplan",
    ]
    assert "check_secrets" not in done.stdout


def repository_files() -> list[Path]:
    """The repository's files: what git tracks or would add (ignored files are not its own)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if listed.returncode == 0:
        return [ROOT / name for name in listed.stdout.decode().split("\0") if name]
    # Not a git checkout (an unpacked archive): everything but caches and environments.
    files = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d == ".ci" or not (d.startswith(".") or d == "__pycache__")]
        files += [Path(folder, name) for name in names]
    return files


def test_nothing_outside_docs_reaches_beside_the_repository() -> None:
    # A user's clone has no shared folder beside it (the checker is vendored in tools/).
    needles = ("../" + "shared", "shared" + "/tools")
    found = []
    for path in repository_files():
        relative = path.relative_to(ROOT)
        if relative.parts[0] == "docs" or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if any(needle in text for needle in needles):
            found.append(str(relative))
    assert not found, f"references to {needles[0]}: {found}"
