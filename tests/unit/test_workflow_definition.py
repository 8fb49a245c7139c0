"""The deployed workflow file: valid for Google (SchemaStore schema), for our engine, and safe."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from local.stack import CALL_TIMEOUT_VARIABLE, WORKFLOWS_DIR, function_names, url_variable
from tests.schemas import WORKFLOWS_SCHEMA
from workflows.engine import load_workflow

WORKFLOW = WORKFLOWS_DIR / "marketing_analysis.workflows.yaml"
SCHEMA = WORKFLOWS_SCHEMA


def calls(node: Any) -> Iterator[dict[str, Any]]:
    """Every step body that makes a `call`, anywhere in the definition."""
    if isinstance(node, dict):
        if "call" in node:
            yield node
        for value in node.values():
            yield from calls(value)
    elif isinstance(node, list):
        for value in node:
            yield from calls(value)


def test_the_workflow_passes_the_schemastore_schema(tmp_path: Path) -> None:
    # One correction: the schema types a call's `timeout` as a number only, but Workflows
    # evaluates expressions in every call argument ("You can use expressions to: ... Form call
    # arguments": https://cloud.google.com/workflows/docs/reference/syntax/expressions), and the
    # http.post timeout is ${int(sys.get_env("FUNCTION_CALL_TIMEOUT"))}.
    schema = json.loads(SCHEMA.read_text())
    expression = {"type": "string", "pattern": "^\\$\\{.+\\}$"}
    timeout = schema["definitions"]["args"]["properties"]["timeout"]
    schema["definitions"]["args"]["properties"]["timeout"] = {"anyOf": [timeout, expression]}
    corrected = tmp_path / SCHEMA.name
    corrected.write_text(json.dumps(schema))
    checker = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(checker), "--schemafile", str(corrected), str(WORKFLOW)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_workflow_loads_in_our_engine() -> None:
    load_workflow(WORKFLOW)  # raises WorkflowSyntaxError with file, step and line


def test_every_http_call_carries_oidc_auth() -> None:
    definition = yaml.safe_load(WORKFLOW.read_text())
    http_calls = [c for c in calls(definition) if str(c["call"]).startswith("http.")]
    assert http_calls
    for call in http_calls:
        assert call["args"]["auth"] == {"type": "OIDC"}, call


def test_the_workflow_reads_one_url_variable_per_function_and_its_call_timeout() -> None:
    variables = set(re.findall(r'sys\.get_env\("([A-Z_]+)"\)', WORKFLOW.read_text()))
    # The API (functions/api) is called by clients, never by the workflow; each phase checks its
    # budget itself (the budget check answers other callers).
    urls = {url_variable(name) for name in function_names() if name not in ("api", "budget_check")}
    assert variables == urls | {CALL_TIMEOUT_VARIABLE}
