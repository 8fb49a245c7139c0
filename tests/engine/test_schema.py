"""Every conformance workflow also passes the SchemaStore schema, except the documented differences.

The schema (see tests/schemas.py) types backoff values as integers and does not
allow expressions there, and takes `args` only as a map; Workflows accepts all three (the sys.log
page's own examples pass a list). Cases marked `schema_valid: false` exercise those (and one
deliberately invalid auth type); the test checks the schema still rejects exactly them, so a fixed
schema shows up here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.schemas import WORKFLOWS_SCHEMA

SCHEMA = WORKFLOWS_SCHEMA
CASES_DIR = Path(__file__).parent / "cases"
CHECK = Path(sys.executable).parent / "check-jsonschema"


def write_cases(folder: Path) -> tuple[list[Path], list[Path]]:
    valid: list[Path] = []
    invalid: list[Path] = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text(encoding="utf-8")):
            if "syntax_error" in case:
                continue
            target = folder / f"{path.stem}__{case['name']}.workflows.yaml"
            target.write_text(case["workflow"], encoding="utf-8")
            (valid if case.get("schema_valid", True) else invalid).append(target)
    return valid, invalid


def check(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK), "--schemafile", str(SCHEMA), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_conformance_workflows_match_the_schema(tmp_path: Path) -> None:
    valid, _ = write_cases(tmp_path)
    assert len(valid) > 100
    done = check(*valid)
    assert done.returncode == 0, done.stdout + done.stderr


def test_schema_rejects_the_documented_differences(tmp_path: Path) -> None:
    _, invalid = write_cases(tmp_path)
    assert {p.name.split("__")[1] for p in invalid} == {
        "decimal_backoff_values.workflows.yaml",
        "retry_values_from_expressions.workflows.yaml",
        "bad_auth_type_is_value_error.workflows.yaml",
        "sys_log_takes_its_pages_list_form_args.workflows.yaml",
        "sys_log_list_form_args_bind_by_position.workflows.yaml",
    }
    for path in invalid:
        assert check(path).returncode == 1, path.name
