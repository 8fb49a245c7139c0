"""Run the offline Terraform check and read its plan JSON; read what the repository defines.

The plan is `terraform show -json` of a plan on an empty state made by the vendored
tools/terraform-offline/check (real Terraform core against the providers' published schemas).
Values computed by Google (URLs, ids) are unknown there and listed in `unknown`.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = ROOT / "terraform"
FUNCTIONS_DIR = ROOT / "functions"
WORKFLOW_FILE = ROOT / "workflows" / "marketing_analysis.workflows.yaml"
RULES_FILE = ROOT / "firestore.rules"

# Functions that call no model (budget check, run bookkeeping), the backend API that clients call;
# every other function is an analysis phase.
CONTROL_FUNCTIONS = frozenset({"budget_check", "lifecycle"})
API_FUNCTIONS = frozenset({"api"})
PACKAGES_FILE = TERRAFORM_DIR / "packages.json"
# Fields that keep no automatic single-field index (collection => fields): times that only grow,
# and what a phase produced.
UNINDEXED_FILE = TERRAFORM_DIR / "firestore_unindexed.json"
BASIC_ROLES = frozenset({"roles/owner", "roles/editor", "roles/viewer"})
PUBLIC_MEMBERS = frozenset({"allUsers", "allAuthenticatedUsers"})


class CheckFailed(RuntimeError):
    """The offline check rejected the configuration; the message is Terraform's output."""


def check_script() -> Path:
    """The vendored offline checker, tools/terraform-offline (TERRAFORM_OFFLINE_CHECK overrides)."""
    configured = os.environ.get("TERRAFORM_OFFLINE_CHECK")
    return Path(configured) if configured else ROOT / "tools/terraform-offline/check"


def run_check(
    out: Path,
    *variables: str,
    plan: bool = True,
    providers: tuple[str, ...] = (),
    state: Path | None = None,
) -> str:
    """Run the offline check (fmt, init, validate, plan) on terraform/; returns its output.

    `variables` are `name=value` pairs passed as `-var`; `providers` are `NS/TYPE=VERSION` pins
    (default: the newest served version the constraints allow); `state` is a state file to plan
    from instead of an empty state. Raises `CheckFailed` on exit status 1 and `RuntimeError` when
    the checker, its Python packages or Terraform are missing.
    """
    script = check_script()
    if not script.is_file():
        raise RuntimeError(f"the offline Terraform checker is missing: {script}")
    if shutil.which("terraform") is None:
        raise RuntimeError("terraform is not installed (the offline check runs real Terraform)")
    args = [str(script), str(TERRAFORM_DIR)]
    args += ["--plan-json", str(out)] if plan else ["--no-plan"]
    for pin in providers:
        args += ["--provider", pin]
    if state is not None:
        args += ["--state", str(state)]
    args.append("--")
    for variable in variables:
        args += ["-var", variable]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    output = done.stdout + done.stderr
    if done.returncode == 1:
        raise CheckFailed(output)
    if done.returncode != 0:
        raise RuntimeError(f"the offline check could not run (exit {done.returncode}):\n{output}")
    return output


_plans: dict[tuple[tuple[str, ...], tuple[str, ...]], Plan] = {}


def planned(directory: Path, *variables: str, providers: tuple[str, ...] = ()) -> Plan:
    """The plan for `variables` (with `providers` pinned, see `run_check`), made once per test
    session (the check takes ~25 s): the Terraform tests and the production-parity run share
    it. Raises `CheckFailed`."""
    key = (variables, providers)
    if key not in _plans:
        out = directory / f"plan-{len(_plans)}.json"
        run_check(out, *variables, providers=providers)
        _plans[key] = Plan.load(out)
    return _plans[key]


def function_kind(name: str) -> str:
    """How terraform/functions.tf classifies functions/<name>: control, api or phase."""
    if name in CONTROL_FUNCTIONS:
        return "control"
    return "api" if name in API_FUNCTIONS else "phase"


@dataclass(frozen=True)
class Resource:
    """One planned resource instance: its known values and the names of unknown ones."""

    address: str
    type: str
    name: str
    key: str | int | None
    values: dict[str, Any]
    unknown: dict[str, Any]


class Plan:
    """The planned resources (all creations on an empty state) and the data sources read."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.resources = [
            Resource(
                address=change["address"],
                type=change["type"],
                name=change["name"],
                key=change.get("index"),
                values=change["change"]["after"] or {},
                unknown=change["change"]["after_unknown"] or {},
            )
            for change in document["resource_changes"]
            if change["mode"] == "managed"
        ]
        prior = document.get("prior_state", {}).get("values", {}).get("root_module", {})
        self.data = {
            item["address"]: item["values"]
            for item in prior.get("resources", [])
            if item["mode"] == "data"
        }

    @classmethod
    def load(cls, path: Path) -> Plan:
        """Read a plan JSON file."""
        return cls(json.loads(path.read_text()))

    def of_type(self, type_: str) -> list[Resource]:
        """Every planned instance of a resource type."""
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str) -> Resource:
        """The only planned instance of a type (fails when there are none or several)."""
        (found,) = self.of_type(type_)
        return found

    def iam_members(self) -> Iterator[tuple[Resource, str, str]]:
        """(resource, role, member) for every IAM grant of any kind in the plan."""
        for resource in self.resources:
            if "_iam_" not in resource.type:
                continue
            role = resource.values.get("role", "")
            members = resource.values.get("members") or [resource.values.get("member")]
            for member in members:
                yield resource, role, member
            for binding in resource.values.get("binding") or []:
                for member in binding.get("members", []):
                    yield resource, binding.get("role", ""), member


def http_entry_points(main: Path) -> list[str]:
    """Names of the functions that main.py decorates with `functions_framework.http`."""
    tree = ast.parse(main.read_text(), filename=str(main))
    found = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            target = decorator.func if isinstance(decorator, ast.Call) else decorator
            if (
                isinstance(target, ast.Attribute)
                and target.attr == "http"
                and isinstance(target.value, ast.Name)
                and target.value.id == "functions_framework"
            ) or (isinstance(target, ast.Name) and target.id == "http"):
                found.append(node.name)
    return found


def repository_functions() -> dict[str, list[str]]:
    """Every functions/<name>/main.py, with the HTTP entry points it defines."""
    mains = sorted(FUNCTIONS_DIR.glob("*/main.py"))
    return {main.parent.name: http_entry_points(main) for main in mains}


def secrets_read_by_code() -> set[str]:
    """Secret names passed as literals to `get_secret`/`find_secret` in common/ and functions/."""
    names: set[str] = set()
    for path in [*ROOT.glob("common/**/*.py"), *FUNCTIONS_DIR.glob("*/*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if (
                called in {"get_secret", "find_secret"}
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                names.add(first.value)
    return names


def unindexed() -> set[tuple[str, str]]:
    """(collection, field) of every field UNINDEXED_FILE exempts from automatic indexes."""
    declared: dict[str, list[str]] = json.loads(UNINDEXED_FILE.read_text())
    return {(collection, field) for collection, fields in declared.items() for field in fields}
