"""What a team meets on its first real deploy (issue 18), on the plans of both provider versions
the configuration admits: the first apply's ordering, a re-apply after destroy, sign-in, memory,
a vector index that a re-plan leaves alone, and cost hygiene."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from tests.terraform.conftest import PROJECT
from tests.terraform.planfile import (
    API_FUNCTIONS,
    ROOT,
    Plan,
    function_kind,
    repository_functions,
    run_check,
)
from tests.terraform.test_deploy import DEPLOY_DOC

FUNCTION_TYPE = "google_cloudfunctions2_function"
WEB_TYPES = ROOT / "web" / "src" / "types.ts"


def configured(plan: Plan, address: str) -> dict[str, Any]:
    """The configuration block of `address` (its expressions, references and depends_on)."""
    resources = plan.document["configuration"]["root_module"]["resources"]
    (found,) = [r for r in resources if r["address"] == address]
    return dict(found)


def functions(plan: Plan) -> dict[str, dict[str, Any]]:
    planned = plan.of_type(FUNCTION_TYPE)
    return {f.values["build_config"][0]["entry_point"]: f.values for f in planned}


# --- 1. the first apply: alerts wait for the log-based metrics they read ----------------------


def test_alert_policies_on_log_metrics_wait_until_monitoring_knows_them(full_plans: Plan) -> None:
    # Monitoring answers 404 "Cannot find metric(s) ... it could take up to 10 minutes" to a
    # policy on a log-based metric created moments before, and the provider does not retry
    # (https://github.com/hashicorp/terraform-provider-google/issues/11102).
    metrics = {m.values["name"]: m.address for m in full_plans.of_type("google_logging_metric")}
    sleep = full_plans.one("time_sleep")
    assert int(sleep.values["create_duration"].removesuffix("s")) >= 600
    # It starts once both metrics exist (its triggers name them), so it ends 10 minutes later.
    triggers = sleep.values["triggers"]
    references = set(configured(full_plans, sleep.address)["expressions"]["triggers"]["references"])
    assert {metrics[name] for name in triggers.values()} <= references
    waiting = 0
    for policy in full_plans.of_type("google_monitoring_alert_policy"):
        named = set(re.findall(r"logging\.googleapis\.com/user/(\w+)", json.dumps(policy.values)))
        if not named:
            continue  # log-match conditions name no metric
        waiting += 1
        unwaited = named - set(triggers.values())
        assert not unwaited, f"{policy.address} reads {unwaited} without waiting for them"
        assert sleep.address in configured(full_plans, policy.address).get("depends_on", [])
    assert waiting, "no alert policy reads a log-based metric"


# --- 2. re-apply after destroy: the database ---------------------------------------------------


def test_destroy_keeps_the_database_unless_told_otherwise(plan: Plan, full_plans: Plan) -> None:
    # https://registry.terraform.io/providers/hashicorp/google/latest/docs/resources/firestore_database#deletion_policy
    assert plan.one("google_firestore_database").values["deletion_policy"] == "ABANDON"
    assert full_plans.one("google_firestore_database").values["deletion_policy"] == "DELETE"


def test_deploy_doc_gives_the_import_commands_for_what_destroy_leaves(plan: Plan) -> None:
    # An abandoned database and Identity Platform (which cannot be switched off) answer 409 /
    # "already enabled" to the next apply's create; importing them first is the way back.
    text = " ".join(DEPLOY_DOC.read_text().split())
    database = plan.one("google_firestore_database")
    auth = plan.one("google_identity_platform_config")
    assert (
        f"terraform -chdir=terraform import -var project_id=PROJECT_ID {database.address} "
        "'projects/PROJECT_ID/databases/(default)'" in text
    )
    assert (
        f"terraform -chdir=terraform import -var project_id=PROJECT_ID {auth.address} "
        "projects/PROJECT_ID/config" in text
    )
    assert "firestore_deletion_policy" in text


# --- 3. sign-in ----------------------------------------------------------------------------------


def web_config_keys() -> tuple[set[str], set[str], set[str]]:
    """(required firebase keys, optional firebase keys, required top-level keys) of the web
    app's `Config` (web/src/types.ts), which main.ts reads from config.json."""
    source = WEB_TYPES.read_text()
    body = re.search(r"interface Config \{(.*?)\n\}", source, re.S)
    assert body, f"{WEB_TYPES} defines no Config"
    firebase = re.search(r"firebase: \{([^}]*)\}", body.group(1))
    assert firebase
    fields = re.findall(r"(\w+)(\??):", firebase.group(1))
    required = {name for name, optional in fields if not optional}
    optional = {name for name, mark in fields if mark}
    top = re.sub(r"\{[^{}]*\}", "", re.sub(r"\{[^{}]*\}", "", body.group(1)))
    top_required = {name for name, mark in re.findall(r"(\w+)(\??):", top) if not mark}
    return required, optional, top_required


def test_users_sign_in_with_email_through_identity_platform(plan: Plan, full_plans: Plan) -> None:
    for which in (plan, full_plans):
        services = {s.values["service"] for s in which.of_type("google_project_service")}
        assert {
            "identitytoolkit.googleapis.com",
            "securetoken.googleapis.com",
            "apikeys.googleapis.com",
        } <= services
        (sign_in,) = which.one("google_identity_platform_config").values["sign_in"]
        assert sign_in["email"] == [{"enabled": True, "password_required": True}]
        assert not sign_in["anonymous"] and not sign_in["phone_number"]


def test_the_browser_key_serves_only_the_web_apps_sdks_from_its_origins(
    plan: Plan, full_plans: Plan
) -> None:
    default = [f"https://{PROJECT}.web.app", f"https://{PROJECT}.firebaseapp.com"]
    browser_key_for(plan, default)
    browser_key_for(full_plans, ["https://app.example.com"])


def browser_key_for(plan: Plan, origins: list[str]) -> None:
    key = plan.one("google_apikeys_key")
    (restrictions,) = key.values["restrictions"]
    assert restrictions["browser_key_restrictions"] == [
        {"allowed_referrers": [f"{origin}/*" for origin in origins]}
    ]
    # Firebase Auth (sign-in, token refresh) and Firestore listeners; nothing else.
    assert {t["service"] for t in restrictions["api_targets"]} == {
        "identitytoolkit.googleapis.com",
        "securetoken.googleapis.com",
        "firestore.googleapis.com",
    }
    assert not any(restrictions[k] for k in ("server_key_restrictions", "android_key_restrictions"))
    # Named at creation time: a destroyed key's name stays taken for 30 days
    # (https://github.com/hashicorp/terraform-provider-google/issues/11726).
    assert key.unknown["name"] is True
    name = configured(plan, key.address)["expressions"]["name"]
    assert "time_static.web_key" in name["references"]
    # The API answers CORS for the same origins.
    api = functions(plan)["api"]["service_config"][0]["environment_variables"]
    assert json.loads(api["API_ALLOWED_ORIGINS"]) == origins
    for function_name, function in functions(plan).items():
        env = function["service_config"][0]["environment_variables"]
        if function_name not in API_FUNCTIONS:
            assert "API_ALLOWED_ORIGINS" not in env, function_name


def test_the_web_app_config_output_is_what_the_web_app_reads(full_plans: Plan) -> None:
    required, optional, top = web_config_keys()
    assert {"apiKey", "projectId"} <= required and top == {"firebase", "apiUrl"}
    change = full_plans.document["output_changes"]["web_app_config"]
    known, unknown = change["after"], change["after_unknown"]
    firebase = set(known["firebase"]) | set(unknown["firebase"])
    assert required <= firebase <= required | optional
    assert set(known) | set(unknown) == top
    assert known["firebase"]["projectId"] == PROJECT
    expression = full_plans.document["configuration"]["root_module"]["outputs"]["web_app_config"]
    assert "google_apikeys_key.web.key_string" in expression["expression"]["references"]
    assert expression["sensitive"] is True


def test_make_deploy_says_how_to_open_the_web_app() -> None:
    done = subprocess.run(
        ["make", "-n", "deploy", "PROJECT_ID=demo-project"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "terraform -chdir=terraform output -json web_app_config > web/dist/config.json" in (
        done.stdout
    )
    assert "make web-build" in done.stdout


# --- 4. memory -------------------------------------------------------------------------------


def test_memory_is_set_per_function_from_the_measured_sizes(plan: Plan) -> None:
    # The sizes come from the production-parity run's worst case (tests/parity), which fails
    # when a function needs more than 85% of what this plan gives it.
    sizes = {n: f["service_config"][0]["available_memory"] for n, f in functions(plan).items()}
    assert sizes["research"] == "1Gi"
    assert {sizes[name] for name in repository_functions() if name != "research"} == {"512Mi"}


# --- 5. the vector index -----------------------------------------------------------------------


# The index's fields as the Firestore API returns them (in the provider's state shape).
STORED_VECTOR_FIELDS: list[dict[str, Any]] = [
    {"field_path": "business_id", "order": "ASCENDING", "vector_config": []},
    {"field_path": "__name__", "order": "ASCENDING", "vector_config": []},
    {"field_path": "embedding", "order": None, "vector_config": [{"dimension": 384, "flat": [{}]}]},
]


def test_the_vector_index_is_declared_as_firestore_stores_it(full_plans: Plan) -> None:
    # Firestore adds `__name__` before the vector field, in the direction of the last ordered
    # field (https://github.com/firebase/firebase-tools/pull/9407); the provider ignores only a
    # trailing `__name__`, and any other difference in `fields` replaces the index.
    vector = [
        i.values
        for i in full_plans.of_type("google_firestore_index")
        if any(f["vector_config"] for f in i.values["fields"])
    ]
    (index,) = vector
    declared = [(f["field_path"], f["order"], bool(f["vector_config"])) for f in index["fields"]]
    stored = [
        (f["field_path"], f["order"] or None, bool(f["vector_config"]))
        for f in STORED_VECTOR_FIELDS
    ]
    assert declared == stored


def test_a_replan_of_the_stored_vector_index_changes_nothing(plan: Plan, tmp_path: Path) -> None:
    # Plan from a state holding the index with its fields as the Firestore API returns them
    # (the other attributes as planned): nothing to do. Without `__name__` in the configuration
    # the fields differ, which the real provider answers with a replacement.
    address = "google_firestore_index.evidence_vectors"
    (index,) = [r for r in plan.resources if r.address == address]
    name = f"projects/{PROJECT}/databases/(default)/collectionGroups/evidence/indexes/CICAgJim14AK"
    blank: dict[str, Any] = {"array_config": None, "search_config": []}
    attributes = {
        **index.values,
        "id": name,
        "name": name,
        "project": PROJECT,
        # What Google fills in.
        "deletion_policy": "DELETE",
        "density": "SPARSE_ALL",
        "unique": False,
        "fields": [{**blank, **field} for field in STORED_VECTOR_FIELDS],
    }
    state = {
        "version": 4,
        "terraform_version": "1.5.0",
        "serial": 1,
        "lineage": "tests-terraform-vector-index",
        "outputs": {},
        "resources": [
            {
                "mode": "managed",
                "type": "google_firestore_index",
                "name": "evidence_vectors",
                "provider": 'provider["registry.terraform.io/hashicorp/google"]',
                "instances": [{"schema_version": 0, "attributes": attributes}],
            }
        ],
    }
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(state))
    out = tmp_path / "plan.json"
    run_check(out, f"project_id={PROJECT}", state=state_file)
    (change,) = [c for c in Plan.load(out).document["resource_changes"] if c["address"] == address]
    assert change["change"]["actions"] == ["no-op"], change["change"]


# --- 6. hygiene --------------------------------------------------------------------------------


def test_old_source_zips_are_deleted_30_days_after_being_replaced(full_plans: Plan) -> None:
    bucket = full_plans.one("google_storage_bucket").values
    assert bucket["versioning"] == [{"enabled": True}]
    (rule,) = bucket["lifecycle_rule"]
    assert rule["action"][0]["type"] == "Delete"
    (condition,) = rule["condition"]
    # Only noncurrent versions: a live zip (named by its hash, never overwritten) is never aged.
    assert condition["days_since_noncurrent_time"] == 30
    assert not condition.get("age") and not condition.get("created_before")


def test_function_images_live_in_a_repository_that_cleans_itself(full_plans: Plan) -> None:
    repository = full_plans.one("google_artifact_registry_repository").values
    assert repository["format"] == "DOCKER"
    assert repository["cleanup_policy_dry_run"] is False
    policies = {p["id"]: p for p in repository["cleanup_policies"]}
    keep, delete = policies["keep-newest"], policies["delete-old"]
    assert keep["action"] == "KEEP"
    assert keep["most_recent_versions"][0]["keep_count"] >= 1
    assert delete["action"] == "DELETE"
    assert delete["condition"][0]["tag_state"] == "ANY"
    assert delete["condition"][0]["older_than"] == f"{30 * 86400}s"
    path = (
        f"projects/{PROJECT}/locations/{repository['location']}/repositories/"
        f"{repository['repository_id']}"
    )
    for name, function in functions(full_plans).items():
        assert function["build_config"][0]["docker_repository"] == path, name


def test_a_budget_exists_exactly_when_a_billing_account_is_given(
    plan: Plan, full_plans: Plan
) -> None:
    assert not plan.of_type("google_billing_budget")
    assert "billingbudgets.googleapis.com" not in {
        s.values["service"] for s in plan.of_type("google_project_service")
    }
    budget = full_plans.one("google_billing_budget")
    assert budget.values["billing_account"] == "012345-6789AB-CDEF01"
    (amount,) = budget.values["amount"]
    assert amount["specified_amount"][0]["units"] == "200"
    assert amount["specified_amount"][0]["currency_code"] == "USD"
    (scope,) = budget.values["budget_filter"]
    assert len(scope["projects"]) == 1 and scope["projects"][0].startswith("projects/")
    rules = {(r["threshold_percent"], r["spend_basis"]) for r in budget.values["threshold_rules"]}
    assert {(0.5, None), (0.9, None), (1.0, None), (1.0, "FORECASTED_SPEND")} == rules
    # Mailed to the alert address's channel too (the alerts' notification channels).
    (rule,) = configured(full_plans, "google_billing_budget.project")["expressions"][
        "all_updates_rule"
    ]
    assert "local.notification_ids" in rule["monitoring_notification_channels"]["references"]
    assert budget.values["all_updates_rule"][0]["disable_default_iam_recipients"] is False
    assert "billingbudgets.googleapis.com" in {
        s.values["service"] for s in full_plans.of_type("google_project_service")
    }


def test_every_service_account_is_the_identity_of_a_workload(plan: Plan, full_plans: Plan) -> None:
    # The backend is the API function (rf-fn-api); an rf-backend account nothing ran as held
    # workflows.invoker and datastore.user.
    identities_of_workloads(plan)
    identities_of_workloads(full_plans)


def identities_of_workloads(plan: Plan) -> None:
    accounts = {
        f"{a.values['account_id']}@{PROJECT}.iam.gserviceaccount.com"
        for a in plan.of_type("google_service_account")
    }
    runs_as = {f["service_config"][0]["service_account_email"] for f in functions(plan).values()}
    runs_as.add(plan.one("google_workflows_workflow").values["service_account"])
    runs_as |= {
        f["build_config"][0]["service_account"].rsplit("/", 1)[1] for f in functions(plan).values()
    }
    assert accounts == runs_as
    assert not [a for a in accounts if a.startswith("rf-backend@")]
    api_roles = {
        role
        for _, role, member in plan.iam_members()
        if member == f"serviceAccount:rf-fn-api@{PROJECT}.iam.gserviceaccount.com"
    }
    assert {"roles/workflows.invoker", "roles/datastore.user"} <= api_roles
    assert function_kind("api") == "api"
