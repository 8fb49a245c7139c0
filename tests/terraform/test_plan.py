"""Assertions over the offline plan of terraform/: what `terraform apply` would create."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from common.platform.settings import Settings
from tests.terraform.conftest import PROJECT
from tests.terraform.planfile import (
    API_FUNCTIONS,
    BASIC_ROLES,
    CONTROL_FUNCTIONS,
    PACKAGES_FILE,
    PUBLIC_MEMBERS,
    ROOT,
    RULES_FILE,
    WORKFLOW_FILE,
    CheckFailed,
    Plan,
    Resource,
    function_kind,
    repository_functions,
    run_check,
    secrets_read_by_code,
    unindexed,
)

FUNCTION_TYPE = "google_cloudfunctions2_function"
# Names Workflows itself provides to sys.get_env.
WORKFLOWS_BUILTIN_ENV = frozenset(
    {
        "GOOGLE_CLOUD_PROJECT_ID",
        "GOOGLE_CLOUD_PROJECT_NUMBER",
        "GOOGLE_CLOUD_LOCATION",
        "GOOGLE_CLOUD_WORKFLOW_ID",
        "GOOGLE_CLOUD_WORKFLOW_REVISION_ID",
        "GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID",
    }
)


def functions_by_entry_point(plan: Plan) -> dict[str, Resource]:
    return {f.values["build_config"][0]["entry_point"]: f for f in plan.of_type(FUNCTION_TYPE)}


def service_config(function: Resource) -> dict[str, object]:
    config: dict[str, object] = function.values["service_config"][0]
    return config


def grants_by_member(plan: Plan) -> dict[str, set[tuple[str, str]]]:
    """member -> {(resource type, role)} over every IAM grant in the plan."""
    grants: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for resource, role, member in plan.iam_members():
        grants[member].add((resource.type, role))
    return grants


def known_and_unknown_keys(values: dict[str, object] | None, unknown: object) -> set[str]:
    keys = set(values or {})
    if isinstance(unknown, dict):
        keys |= set(unknown)
    return keys


# --- functions -------------------------------------------------------------------------------


def test_one_function_per_directory_with_the_entry_point_its_main_defines(plan: Plan) -> None:
    repository = repository_functions()
    assert repository, "functions/ holds no <name>/main.py"
    for name, entry_points in repository.items():
        assert entry_points == [name], (
            f"functions/{name}/main.py must define exactly one @functions_framework.http "
            f"function named {name!r}; found {entry_points}"
        )
    planned = functions_by_entry_point(plan)
    assert sorted(planned) == sorted(repository)
    assert len(plan.of_type(FUNCTION_TYPE)) == len(repository)
    for name, function in planned.items():
        assert function.values["name"] == name.replace("_", "-")
        assert function.values["build_config"][0]["runtime"] == "python311"


def test_every_function_is_an_instance_of_one_resource_block(plan: Plan) -> None:
    # Phases and control functions differ only in what their identities may do (iam.tf,
    # secrets.tf), so one block declares them all.
    addresses = {f.address for f in plan.of_type(FUNCTION_TYPE)}
    assert addresses == {f'{FUNCTION_TYPE}.function["{name}"]' for name in repository_functions()}


def state_with(instances: dict[tuple[str, str], dict[str, dict[str, object]]]) -> dict[str, object]:
    """A Terraform state (format 4) holding (type, name) -> {key: attributes} instances."""
    return {
        "version": 4,
        "terraform_version": "1.5.0",
        "serial": 1,
        "lineage": "tests-terraform",
        "outputs": {},
        "resources": [
            {
                "mode": "managed",
                "type": type_,
                "name": name,
                "provider": 'provider["registry.terraform.io/hashicorp/google"]',
                "instances": [
                    {"index_key": key, "schema_version": 0, "attributes": attributes}
                    for key, attributes in keyed.items()
                ],
            }
            for (type_, name), keyed in instances.items()
        ],
    }


def test_a_deployment_made_with_the_former_blocks_keeps_its_functions(tmp_path: Path) -> None:
    # Phases and control functions were two blocks, Firestore indexes one per field count; a
    # deployment made then must see its instances move, not be destroyed and created again.
    functions = repository_functions()
    old_function: dict[str, dict[str, object]] = {
        name: {"name": name.replace("_", "-"), "location": "us-central1", "project": PROJECT}
        for name in functions
    }
    state = state_with(
        {
            (FUNCTION_TYPE, "phase"): {
                n: a for n, a in old_function.items() if n not in CONTROL_FUNCTIONS
            },
            (FUNCTION_TYPE, "control"): {
                n: a for n, a in old_function.items() if n in CONTROL_FUNCTIONS
            },
            ("google_firestore_index", "two_fields"): {
                "usage_by_business_day": {"collection": "usage"}
            },
        }
    )
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(state))
    out = tmp_path / "plan.json"
    run_check(out, f"project_id={PROJECT}", state=state_file)
    changes = {c["address"]: c for c in Plan.load(out).document["resource_changes"]}
    for name in functions:
        kind = "control" if name in CONTROL_FUNCTIONS else "phase"
        change = changes[f'{FUNCTION_TYPE}.function["{name}"]']
        assert change.get("previous_address") == f'{FUNCTION_TYPE}.{kind}["{name}"]'
        assert "create" not in change["change"]["actions"], name
    index = changes['google_firestore_index.composite["usage_by_business_day"]']
    assert "create" not in index["change"]["actions"]
    deleted = [a for a, c in changes.items() if "delete" in c["change"]["actions"]]
    assert not deleted, f"destroyed instead of moved: {deleted}"


def test_each_zip_holds_main_its_import_closure_and_requirements_under_its_hash(
    plan: Plan,
) -> None:
    packages = json.loads(PACKAGES_FILE.read_text())
    objects = {o.key: o for o in plan.of_type("google_storage_bucket_object")}
    for name, function in functions_by_entry_point(plan).items():
        archive = plan.data[f'data.archive_file.source["{name}"]']
        files = {source["filename"]: source["content"] for source in archive["source"]}
        assert files.pop("main.py") == (ROOT / "functions" / name / "main.py").read_text()
        assert files.pop("requirements.txt") == (ROOT / "functions/requirements.txt").read_text()
        assert sorted(files) == packages[name], f"{name}: the zip is not its import closure"
        for path, content in files.items():
            assert path.startswith("common/"), f"{name}: {path} is never deployed"
            assert content == (ROOT / path).read_text(), f"{name}: {path} differs"
        # Each function's own needs, not everyone's: the phases carry no backend API code, the
        # run bookkeeping no phase code.
        if function_kind(name) == "phase":
            assert not [f for f in files if f.startswith("common/backend/")], name
        if name == "lifecycle":
            assert "common/analysis/phases.py" not in files

        uploaded = objects[name].values
        assert uploaded["name"] == f"{name}/{archive['output_md5']}.zip"
        assert uploaded["source"] == archive["output_path"]
        storage = function.values["build_config"][0]["source"][0]["storage_source"][0]
        assert storage["object"] == uploaded["name"]
        assert storage["bucket"] == uploaded["bucket"]


def test_packages_file_is_the_import_closure_of_each_function() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "terraform/scripts/packages.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_requirements_file_matches_pyproject() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "terraform/scripts/requirements.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_only_the_api_is_reachable_from_the_internet(plan: Plan) -> None:
    for name, function in functions_by_entry_point(plan).items():
        ingress = service_config(function)["ingress_settings"]
        if name in API_FUNCTIONS:
            assert ingress == "ALLOW_ALL", name
        else:
            assert ingress in {"ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"}, name
    bucket = plan.one("google_storage_bucket").values
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["uniform_bucket_level_access"] is True


@pytest.mark.parametrize("which", ["plan", "full_plan"])
def test_no_basic_roles_and_nothing_public_but_the_api(
    which: str, request: pytest.FixtureRequest
) -> None:
    plan: Plan = request.getfixturevalue(which)
    grants = list(plan.iam_members())
    assert grants
    public = set()
    for resource, role, member in grants:
        assert role not in BASIC_ROLES, f"{resource.address} grants {role}"
        if member in PUBLIC_MEMBERS:
            public.add((resource.type, resource.values.get("service"), role, member))
            continue
        assert member.startswith("serviceAccount:"), f"{resource.address}: {member}"
    # The API checks every request's Firebase ID token itself (decision 007).
    assert public == {
        ("google_cloud_run_service_iam_member", "api", "roles/run.invoker", "allUsers")
    }
    assert not [r.address for r in plan.resources if r.type.endswith(("_iam_policy", "_binding"))]


# --- secrets ---------------------------------------------------------------------------------


def test_every_secret_the_code_reads_is_declared_without_a_value(plan: Plan) -> None:
    read = secrets_read_by_code()
    assert {"OPENAI_API_KEY", "GEMINI_API_KEY"} <= read
    declared = {s.values["secret_id"] for s in plan.of_type("google_secret_manager_secret")}
    assert read <= declared
    assert not plan.of_type("google_secret_manager_secret_version"), "no secret value in Terraform"


@pytest.mark.parametrize(
    ("which", "read"),
    [
        ("plan", {"OPENAI_API_KEY", "GEMINI_API_KEY"}),
        # With Gemini through Vertex AI the code never reads GEMINI_API_KEY (common/llm/setup.py).
        ("full_plan", {"OPENAI_API_KEY"}),
    ],
)
def test_secrets_are_read_through_the_api_and_only_by_the_phases(
    which: str, read: set[str], request: pytest.FixtureRequest
) -> None:
    # The code reads keys from Secret Manager's API (common/secrets.py); a mounted copy would be
    # a second, plaintext path to the same value, and a function mounting a secret with no
    # version cannot start.
    plan: Plan = request.getfixturevalue(which)
    assert read <= secrets_read_by_code()
    accessors = {
        (r.values["secret_id"], r.values["member"])
        for r in plan.of_type("google_secret_manager_secret_iam_member")
        if r.values["role"] == "roles/secretmanager.secretAccessor"
    }
    expected_accessors = set()
    for name, function in functions_by_entry_point(plan).items():
        config = service_config(function)
        assert not config.get("secret_environment_variables"), f"{name} mounts secrets"
        assert not config.get("secret_volumes"), f"{name} mounts secrets"
        plain = config["environment_variables"]
        assert isinstance(plain, dict)
        assert not secrets_read_by_code() & set(plain), f"{name} passes a secret in plain text"
        if function_kind(name) == "phase":
            member = f"serviceAccount:{config['service_account_email']}"
            expected_accessors |= {(secret, member) for secret in read}
    assert accessors == expected_accessors
    project_roles = {r.values["role"] for r in plan.of_type("google_project_iam_member")}
    assert "roles/secretmanager.secretAccessor" not in project_roles


# --- identities ------------------------------------------------------------------------------


# What each kind of function's code needs at project level. Vertex AI only for the phases, and
# only with a feature on it switched on (the full plan: Vector Search, Gemini through Vertex AI);
# by default evidence is in Firestore and embeddings come from the shipped model.
PROJECT_ROLES = {
    "control": {"roles/datastore.user", "roles/logging.logWriter"},
    "api": {"roles/datastore.user", "roles/logging.logWriter", "roles/workflows.invoker"},
    "phase": {"roles/datastore.user", "roles/logging.logWriter"},
}


@pytest.mark.parametrize(("which", "vertex"), [("plan", False), ("full_plan", True)])
def test_every_function_runs_as_its_own_least_privilege_account(
    which: str, vertex: bool, request: pytest.FixtureRequest
) -> None:
    plan: Plan = request.getfixturevalue(which)
    accounts = {
        f"{a.values['account_id']}@{PROJECT}.iam.gserviceaccount.com"
        for a in plan.of_type("google_service_account")
    }
    grants = grants_by_member(plan)
    functions = functions_by_entry_point(plan)
    emails = [str(service_config(f)["service_account_email"]) for f in functions.values()]
    assert len(set(emails)) == len(functions), "functions share a service account"
    for name, function in functions.items():
        kind = function_kind(name)
        email = str(service_config(function)["service_account_email"])
        assert email in accounts, f"{name} runs as {email}, which this plan does not create"
        project = {role for kind_, role in grants[f"serviceAccount:{email}"] if "project" in kind_}
        expected = set(PROJECT_ROLES[kind])
        if kind == "phase" and vertex:
            expected.add("roles/aiplatform.user")
        assert project == expected, f"{name}: {project}"
        others = {
            (kind_, role)
            for kind_, role in grants[f"serviceAccount:{email}"]
            if kind_ != "google_project_iam_member"
        }
        allowed = (
            {("google_secret_manager_secret_iam_member", "roles/secretmanager.secretAccessor")}
            if kind == "phase"
            else set()
        )
        assert others == allowed, f"{name}: {others}"


def test_workflow_identity_may_only_invoke_each_function_and_write_logs(plan: Plan) -> None:
    workflow = plan.one("google_workflows_workflow").values
    member = f"serviceAccount:{workflow['service_account']}"
    assert workflow["service_account"].startswith("rf-workflow@")
    grants = grants_by_member(plan)[member]
    assert grants == {
        ("google_project_iam_member", "roles/logging.logWriter"),
        ("google_cloud_run_service_iam_member", "roles/run.invoker"),
    }
    invoked = {
        r.values["service"]
        for r in plan.of_type("google_cloud_run_service_iam_member")
        if r.values["member"] == member
    }
    # Every function but the API, which clients call.
    called = {n for n in repository_functions() if n not in API_FUNCTIONS}
    assert invoked == {n.replace("_", "-") for n in called}
    # Nobody else may invoke them.
    for resource in plan.of_type("google_cloud_run_service_iam_member"):
        if resource.values["service"] not in API_FUNCTIONS:
            assert resource.values["member"] == member


def test_builds_run_as_a_dedicated_account(plan: Plan) -> None:
    # https://cloud.google.com/functions/docs/securing/build-custom-sa and
    # https://cloud.google.com/run/docs/configuring/services/build-service-account: logs, images in
    # Artifact Registry, the source from Cloud Storage (Viewer suffices to read it; decision 005).
    email = f"rf-build@{PROJECT}.iam.gserviceaccount.com"
    for function in plan.of_type(FUNCTION_TYPE):
        build = function.values["build_config"][0]
        assert build.get("service_account") == f"projects/{PROJECT}/serviceAccounts/{email}"
    assert {role for _, role in grants_by_member(plan)[f"serviceAccount:{email}"]} == {
        "roles/logging.logWriter",
        "roles/artifactregistry.writer",
        "roles/storage.objectViewer",
    }


# --- workflow --------------------------------------------------------------------------------


def test_workflow_source_is_the_repository_yaml_byte_for_byte(plan: Plan) -> None:
    workflow = plan.one("google_workflows_workflow").values
    assert workflow["source_contents"].encode() == WORKFLOW_FILE.read_bytes()
    # The local engine names a workflow after its file stem.
    assert workflow["name"] == WORKFLOW_FILE.name.removesuffix(".workflows.yaml")


def test_every_environment_name_the_workflow_reads_is_in_user_env_vars(plan: Plan) -> None:
    workflow = plan.one("google_workflows_workflow")
    provided = known_and_unknown_keys(
        workflow.values.get("user_env_vars"), workflow.unknown.get("user_env_vars")
    )
    read = set(re.findall(r"sys\.get_env\(\s*[\"']([^\"']+)[\"']", WORKFLOW_FILE.read_text()))
    assert read, "the workflow reads no environment variable"
    assert read - WORKFLOWS_BUILTIN_ENV <= provided
    urls = {f"{name.upper()}_URL" for name in repository_functions() if name not in API_FUNCTIONS}
    assert urls <= provided, "every URL of a function it calls reaches the workflow"
    assert provided <= urls | read


# --- settings passed to functions --------------------------------------------------------------


def settings_env_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(name.upper())
        alias = field.validation_alias
        choices = getattr(alias, "choices", [alias] if isinstance(alias, str) else [])
        names |= {str(choice).upper() for choice in choices}
    return names


@pytest.mark.parametrize("which", ["plan", "full_plan"])
def test_functions_get_production_settings_the_code_reads(
    which: str, request: pytest.FixtureRequest
) -> None:
    plan: Plan = request.getfixturevalue(which)
    known = settings_env_names()
    for function in plan.of_type(FUNCTION_TYPE):
        config = service_config(function)
        env = config["environment_variables"]
        assert isinstance(env, dict)
        assert env["GOOGLE_CLOUD_PROJECT"] == PROJECT
        assert env["APP_MODE"] == "production"
        assert env["REGION"] == "us-central1"
        names = known_and_unknown_keys(
            env, function.unknown["service_config"][0].get("environment_variables")
        )
        assert names <= known, f"{function.address}: not settings: {names - known}"


def test_timeouts_are_the_settings_chain(plan: Plan) -> None:
    # One chain, derived in common/platform/settings.py: a model call's deadline, the hold that
    # pays for it, the phase, the function's request timeout (Cloud Run answers 504 past it:
    # https://cloud.google.com/run/docs/configuring/request-timeout), the workflow's wait for a
    # function (http.post `timeout`, at most 1800 s:
    # https://cloud.google.com/workflows/docs/reference/stdlib/http/post) and the phase lease.
    settings = Settings(_env_file=None)
    for function in plan.of_type(FUNCTION_TYPE):
        timeout = service_config(function)["timeout_seconds"]
        assert timeout == settings.function_timeout_seconds, function.address
    workflow = plan.one("google_workflows_workflow").values
    call_timeout = int(workflow["user_env_vars"]["FUNCTION_CALL_TIMEOUT"])
    assert call_timeout == settings.workflow_call_timeout_seconds
    assert re.search(
        r'timeout: \$\{int\(sys\.get_env\("FUNCTION_CALL_TIMEOUT"\)\)\}', WORKFLOW_FILE.read_text()
    ), "the workflow's http.post timeout is not FUNCTION_CALL_TIMEOUT"
    assert settings.function_timeout_seconds < call_timeout <= 1800
    assert settings.phase_lease_seconds > settings.function_timeout_seconds
    assert settings.phase_deadline_seconds < settings.function_timeout_seconds
    assert settings.budget_block_ttl_seconds > settings.llm_call_deadline_seconds


def test_a_function_timeout_below_the_settings_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckFailed) as failure:
        run_check(tmp_path / "plan.json", f"project_id={PROJECT}", "function_timeout_seconds=120")
    assert "function_timeout_seconds must be a whole number of seconds from 300" in " ".join(
        str(failure.value).split()
    )


def test_vector_search_is_off_by_default(plan: Plan) -> None:
    assert not [r.address for r in plan.resources if r.type.startswith("google_vertex_ai")]
    for function in plan.of_type(FUNCTION_TYPE):
        env = service_config(function)["environment_variables"]
        assert isinstance(env, dict)
        assert "PLATFORM_DAILY_CAP_USD" not in env, "the cap comes from common/budget/tiers.yaml"
        # Evidence in Firestore vector search, which every function shares (no local disk).
        assert env["VECTOR_BACKEND"] == "firestore" and "VECTOR_DIR" not in env
        # Evidence embeddings match the Firestore vector index (384 dimensions, local model).
        assert env["EMBEDDING_BACKEND"] == "local"
        assert "GEMINI_USE_VERTEX" not in env
    # Nothing calls Vertex AI, so nobody may.
    assert not [r for r in plan.iam_members() if r[1] == "roles/aiplatform.user"]


def test_vector_search_when_enabled_reaches_every_function(full_plan: Plan) -> None:
    index = full_plan.one("google_vertex_ai_index").values
    assert index["metadata"][0]["config"][0]["dimensions"] == 768
    assert index["index_update_method"] == "STREAM_UPDATE"
    full_plan.one("google_vertex_ai_index_endpoint")
    deployed = full_plan.one("google_vertex_ai_index_endpoint_deployed_index").values
    for function in full_plan.of_type(FUNCTION_TYPE):
        env = service_config(function)["environment_variables"]
        unknown = function.unknown["service_config"][0]["environment_variables"]
        assert isinstance(env, dict)
        assert env["VECTOR_BACKEND"] == "vertex"
        assert env["VERTEX_DEPLOYED_INDEX_ID"] == deployed["deployed_index_id"]
        assert env["EMBEDDING_BACKEND"] == "vertex"
        assert env["VERTEX_EMBEDDING_DIMENSION"] == "768"
        assert {"VERTEX_INDEX", "VERTEX_INDEX_ENDPOINT", "VERTEX_MATCH_ENDPOINT"} <= set(unknown)
        assert env["PLATFORM_DAILY_CAP_USD"] == "500"
        assert env["GEMINI_USE_VERTEX"] == "true"


# --- Firestore -------------------------------------------------------------------------------


def test_firestore_native_with_indexes_ttl_and_rules(plan: Plan) -> None:
    database = plan.one("google_firestore_database").values
    assert database["type"] == "FIRESTORE_NATIVE"
    assert database["name"] == "(default)"
    indexes = {
        (i.values["collection"], tuple((f["field_path"], f["order"]) for f in i.values["fields"]))
        for i in plan.of_type("google_firestore_index")
        if not any(f["vector_config"] for f in i.values["fields"])
    }
    # The queries that need a composite index: the API's usage report (equality on the
    # business, a range of days), the router's recent outcomes (the usage records' shards, newest
    # first) and the API's run history (equality on the business and maybe the status, newest
    # first; Firestore appends `__name__` in the last field's direction itself).
    assert indexes == {
        ("usage", (("business_id", "ASCENDING"), ("day", "ASCENDING"))),
        ("usage", (("shard", "ASCENDING"), ("created_at", "DESCENDING"))),
        ("runs", (("business_id", "ASCENDING"), ("created_at", "DESCENDING"))),
        (
            "runs",
            (("business_id", "ASCENDING"), ("status", "ASCENDING"), ("created_at", "DESCENDING")),
        ),
    }
    # Built over an existing deployment's documents, an index may take longer than the
    # provider's default 20 minutes (docs/deploy.md, "Upgrading a deployment").
    for index in plan.of_type("google_firestore_index"):
        if index.address.startswith("google_firestore_index.composite"):
            assert index.values["timeouts"]["create"] == "60m", index.address
    ttls = [f.values for f in plan.of_type("google_firestore_field") if f.values["ttl_config"]]
    # Reservations purged after their periods; the API's idempotency keys after 24 hours.
    assert {(ttl["collection"], ttl["field"]) for ttl in ttls} == {
        ("reservations", "purge_at"),
        ("idempotency_keys", "expires_at"),
    }
    # Legacy reservations (no code writes them since the budget's escrow blocks) keep their
    # automatic indexes; an idempotency key's expiry, a time that only grows, keeps none.
    configs = {ttl["collection"]: ttl["index_config"] for ttl in ttls}
    assert configs == {"reservations": [], "idempotency_keys": [{"indexes": []}]}

    ruleset = plan.one("google_firebaserules_ruleset").values
    (file,) = ruleset["source"][0]["files"]
    assert file["content"] == RULES_FILE.read_text()
    assert plan.one("google_firebaserules_release").values["name"] == "cloud.firestore"


def test_times_that_only_grow_keep_no_automatic_index(plan: Plan) -> None:
    # https://firebase.google.com/docs/firestore/solutions/shard-timestamp: Firestore sustains
    # 500 writes a second to a collection whose documents hold an indexed field that only grows.
    # Every such field a run writes is listed (tests/integration/test_run_footprint.py):
    # each is exempt from every automatic index (an empty index_config).
    exempt = {
        (f.values["collection"], f.values["field"])
        for f in plan.of_type("google_firestore_field")
        if f.values["index_config"] == [{"indexes": []}]
    }
    assert exempt == unindexed() | {("idempotency_keys", "expires_at")}
    # They go once the functions are deployed: the code before them needed some (the recent
    # outcomes ordered every usage record by `created_at`).
    (config,) = [
        r
        for r in plan.document["configuration"]["root_module"]["resources"]
        if r["address"] == "google_firestore_field.unindexed"
    ]
    assert config["depends_on"] == [f"{FUNCTION_TYPE}.function"]
    # A composite index that holds one of them starts with a field whose values are spread
    # (a business, a shard): each of its values is its own range of the index.
    for index in plan.of_type("google_firestore_index"):
        collection = index.values["collection"]
        first, *rest = (f["field_path"] for f in index.values["fields"])
        assert (collection, first) not in exempt, index.address
        if any((collection, field) in exempt for field in rest):
            assert first in {"business_id", "shard"}, index.address


def test_evidence_has_a_vector_index_prefiltered_by_business(plan: Plan) -> None:
    # https://cloud.google.com/firestore/docs/vector-search: a nearest-neighbour query with an
    # equality pre-filter needs a composite index of the filter fields, then the vector field
    # (flat, of the embeddings' dimension).
    (index,) = [
        i.values
        for i in plan.of_type("google_firestore_index")
        if any(f["vector_config"] for f in i.values["fields"])
    ]
    assert index["collection"] == "evidence"
    assert index["database"] == "(default)"
    # Firestore stores `__name__` before the vector field; declared so, a re-plan is empty
    # (tests/terraform/test_day_one.py).
    business, name, embedding = index["fields"]
    assert (business["field_path"], business["order"]) == ("business_id", "ASCENDING")
    assert (name["field_path"], name["order"]) == ("__name__", "ASCENDING")
    assert embedding["field_path"] == "embedding"
    assert embedding["order"] is None
    (vector,) = embedding["vector_config"]
    assert vector["dimension"] == 384  # all-MiniLM-L6-v2, the local embedding model
    assert vector["flat"] == [{}]


def test_production_protects_the_database(plan: Plan, full_plan: Plan) -> None:
    dev = plan.one("google_firestore_database").values
    prod = full_plan.one("google_firestore_database").values
    assert prod["delete_protection_state"] == "DELETE_PROTECTION_ENABLED"
    assert dev["delete_protection_state"] == "DELETE_PROTECTION_DISABLED"


def test_destroy_removes_dev_and_production_refuses_it(plan: Plan, full_plan: Plan) -> None:
    # docs/deploy.md ends with `terraform destroy`. Provider 7+ protects workflows by default
    # (https://registry.terraform.io/providers/hashicorp/google/latest/docs/resources/workflows_workflow#deletion_protection);
    # a versioned bucket is never empty after its objects are destroyed, so only force_destroy
    # lets it go (https://registry.terraform.io/providers/hashicorp/google/latest/docs/resources/storage_bucket#force_destroy).
    for which, protected in ((plan, False), (full_plan, True)):
        assert which.one("google_workflows_workflow").values["deletion_protection"] is protected
        bucket = which.one("google_storage_bucket").values
        assert bucket["versioning"] == [{"enabled": True}]
        assert bucket["force_destroy"] is not protected
        for secret in which.of_type("google_secret_manager_secret"):
            assert secret.values["deletion_protection"] is protected, secret.address
    # By default the data outlives any destroy: Terraform forgets the database and leaves it
    # (firestore_deletion_policy; tests/terraform/test_day_one.py).
    assert plan.one("google_firestore_database").values["deletion_policy"] == "ABANDON"


# --- APIs and monitoring ---------------------------------------------------------------------


def test_required_apis_are_enabled(plan: Plan) -> None:
    services = {s.values["service"] for s in plan.of_type("google_project_service")}
    assert {
        "cloudfunctions.googleapis.com",
        "run.googleapis.com",
        "cloudbuild.googleapis.com",
        "artifactregistry.googleapis.com",
        "workflows.googleapis.com",
        "firestore.googleapis.com",
        "secretmanager.googleapis.com",
        "aiplatform.googleapis.com",
        "logging.googleapis.com",
        "monitoring.googleapis.com",
        "iam.googleapis.com",
        "firebaserules.googleapis.com",
        "storage.googleapis.com",
    } <= services
    for service in plan.of_type("google_project_service"):
        assert service.values["disable_on_destroy"] is False, service.address


def test_log_metrics_read_the_events_the_code_writes(plan: Plan) -> None:
    metrics = {m.values["name"]: m.values for m in plan.of_type("google_logging_metric")}
    cost = metrics["raptorflow_llm_cost_usd"]
    assert 'jsonPayload.event="usage_settled"' in cost["filter"]
    assert cost["value_extractor"] == "EXTRACT(jsonPayload.cost_usd)"
    assert cost["label_extractors"]["tier"] == "EXTRACT(jsonPayload.tier)"
    calls = metrics["raptorflow_model_calls"]
    assert 'jsonPayload.event="usage_settled"' in calls["filter"]
    assert calls["label_extractors"]["model"] == "EXTRACT(jsonPayload.model)"
    errors = metrics["raptorflow_model_errors"]
    assert "jsonPayload.ok=false" in errors["filter"]
    assert "model" in errors["label_extractors"]
    duration = metrics["raptorflow_phase_duration_ms"]
    assert 'jsonPayload.event="phase_completed"' in duration["filter"]
    assert duration["value_extractor"] == "EXTRACT(jsonPayload.duration_ms)"
    assert duration["label_extractors"]["phase"] == "EXTRACT(jsonPayload.phase)"
    for metric in metrics.values():
        declared = {label["key"] for label in metric["metric_descriptor"][0]["labels"]}
        assert declared == set(metric.get("label_extractors") or {}), metric["name"]

    dashboard = json.loads(plan.one("google_monitoring_dashboard").values["dashboard_json"])
    text = json.dumps(dashboard)
    for name in metrics:
        assert name in text, f"the dashboard does not chart {name}"


def test_alerts_cover_budget_warnings_error_rate_and_failed_runs(
    plan: Plan, full_plan: Plan
) -> None:
    policies = {
        p.values["display_name"]: p for p in full_plan.of_type("google_monitoring_alert_policy")
    }
    conditions = json.dumps([p.values["conditions"] for p in policies.values()])
    assert 'jsonPayload.event=\\"budget_warning\\"' in conditions
    assert 'jsonPayload.event=\\"run_failed\\"' in conditions
    assert "raptorflow_model_errors" in conditions and "raptorflow_model_calls" in conditions
    channel = full_plan.one("google_monitoring_notification_channel").values
    assert channel["labels"] == {"email_address": "ops@example.com"}
    for policy in policies.values():
        assert policy.unknown.get("notification_channels") == [True], policy.address
    # Without an email the alerts still exist, with nobody to notify.
    assert not plan.of_type("google_monitoring_notification_channel")
    assert len(plan.of_type("google_monitoring_alert_policy")) == len(policies)


def test_threshold_alerts_filter_on_metric_and_resource_type(full_plan: Plan) -> None:
    # MetricThreshold.filter "must specify the metric type and the resource type"
    # (https://cloud.google.com/monitoring/api/ref_v3/rest/v3/projects.alertPolicies#MetricThreshold).
    # Log-based metrics carry the monitored resource of their log entries; Cloud Run functions
    # log as their Cloud Run revision (https://cloud.google.com/run/docs/logging).
    thresholds = [
        condition
        for policy in full_plan.of_type("google_monitoring_alert_policy")
        for entry in policy.values["conditions"]
        for condition in entry["condition_threshold"]
    ]
    assert thresholds, "no threshold condition (the model error-rate alert)"
    for condition in thresholds:
        filters = [condition["filter"]]
        if condition.get("denominator_filter"):
            filters.append(condition["denominator_filter"])
        for text in filters:
            assert re.search(r'\bmetric\.type\s*=\s*"[^"]+"', text), text
            assert re.search(r'\bresource\.type\s*=\s*"cloud_run_revision"', text), text


# Units of a MetricDescriptor, as its reference gives the grammar
# (https://cloud.google.com/monitoring/api/ref_v3/rest/v3/projects.metricDescriptors#MetricDescriptor):
#   Expression = Component { "." Component } { "/" Component } ;
#   Component = ( [ PREFIX ] UNIT | "%" ) [ Annotation ] | Annotation | "1" ;
#   Annotation = "{" NAME "}" ;  NAME: non-blank printable ASCII without { and }.
# Its examples also put a prefix before an annotation (k{watt}.h, k{page_views}/d), so that too.
_UNIT = r"(?:bit|By|s|min|h|d|1)"
_PREFIX = r"(?:k|M|G|T|P|E|Z|Y|m|u|n|p|f|a|z|y|Ki|Mi|Gi|Ti|Pi)"
_ANNOTATION = r"\{[!-z|~]+\}"
_COMPONENT = rf"(?:(?:{_PREFIX}?(?:{_UNIT}|{_ANNOTATION})|%)(?:{_ANNOTATION})?)"
METRIC_UNIT = re.compile(rf"{_COMPONENT}(?:\.{_COMPONENT})*(?:/{_COMPONENT})*")


@pytest.mark.parametrize(
    ("unit", "valid"),
    [
        # The reference's own examples ...
        ("{request}/s", True),
        ("By{transmitted}/s", True),
        ("kBy/{email}", True),
        ("GBy.d", True),
        ("k{watt}.h", True),
        ("1/d", True),
        ("{new-users}/d", True),
        ("k{page_views}/d", True),
        ("ms", True),
        ("%", True),
        # ... and what it does not define: currencies are annotations, not units.
        ("USD", False),
        ("{USD", False),
        ("dollars", False),
    ],
)
def test_the_unit_grammar_matches_the_reference(unit: str, valid: bool) -> None:
    assert bool(METRIC_UNIT.fullmatch(unit)) is valid


def test_log_metric_units_follow_the_metric_descriptor_grammar(plan: Plan) -> None:
    units = {
        m.values["name"]: m.values["metric_descriptor"][0]["unit"]
        for m in plan.of_type("google_logging_metric")
    }
    assert units["raptorflow_llm_cost_usd"] == "{USD}"
    for name, unit in units.items():
        assert METRIC_UNIT.fullmatch(unit), f"{name}: {unit!r} is not a metric unit"


# --- provider ---------------------------------------------------------------------------------


def test_requests_name_the_project_as_their_quota_project(plan: Plan) -> None:
    # With user credentials, client-based APIs (Firebase Rules among them) need a quota project
    # (https://cloud.google.com/docs/authentication/adc-troubleshooting/user-creds); the provider
    # sends one when user_project_override is on, billing_project naming it
    # (https://registry.terraform.io/providers/hashicorp/google/latest/docs/guides/provider_reference#user_project_override).
    google = plan.document["configuration"]["provider_config"]["google"]["expressions"]
    assert google["user_project_override"] == {"constant_value": True}
    assert google["billing_project"] == {"references": ["var.project_id"]}


def test_the_oldest_allowed_google_provider_accepts_the_configuration(tmp_path: Path) -> None:
    # versions.tf admits 7.41 to 8.x; the plans above use the newest, so check the oldest too.
    output = run_check(tmp_path / "unused.json", plan=False, providers=("hashicorp/google=7.41.0",))
    assert "The configuration is valid" in output


# --- variables -------------------------------------------------------------------------------


def test_bad_variables_are_refused_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(CheckFailed) as failure:
        run_check(
            tmp_path / "plan.json",
            "project_id=Not_A_Project",
            "alert_email=nobody",
            "region=moon",
        )
    message = " ".join(str(failure.value).split())
    assert "project_id must be a Google Cloud project id" in message
    assert "alert_email must be an email address" in message
    assert "region must be a Google Cloud region name" in message
