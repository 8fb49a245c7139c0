"""The conformance suite: small workflows in cases/*.yaml with their expected results or errors.

Each case holds `workflow` (the YAML), optional `argument` and `env`, and one expectation:
`result` (compared with types: 2 and 2.0 differ), `error` (a raised string, or a map whose keys
must match the error map; `message_contains` matches part of the message), or `syntax_error` (part
of the load-time message). `sleeps` lists the delays the virtual clock must have seen.
HTTP cases reach a loopback server through `sys.get_env("BASE_URL")`.

The cases of cases/docs_*.yaml each encode a sentence of one of Google's pages, named by `doc`.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from workflows.engine import (
    VirtualClock,
    WorkflowError,
    WorkflowSyntaxError,
    parse_workflow,
    run_workflow,
)

CASES_DIR = Path(__file__).parent / "cases"


def load_cases() -> list[Any]:
    params = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text(encoding="utf-8")):
            params.append(pytest.param(case, id=f"{path.stem}:{case['name']}"))
    return params


CASES = load_cases()


def same(expected: Any, actual: Any) -> bool:
    """Equality that also tells int from double and bool from int."""
    if type(expected) is not type(actual):
        return False
    if isinstance(expected, dict):
        return expected.keys() == actual.keys() and all(
            same(v, actual[k]) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return len(expected) == len(actual) and all(map(same, expected, actual))
    return bool(expected == actual)


def check_error(expected: Any, actual: Any) -> None:
    if not isinstance(expected, dict):
        assert same(expected, actual), actual
        return
    assert isinstance(actual, dict), actual
    for key, value in expected.items():
        if key == "message_contains":
            assert value in actual["message"], actual
        else:
            assert same(value, actual.get(key)), f"{key}: {actual}"


def test_suite_is_large_enough() -> None:
    assert len(CASES) >= 300


def test_documented_cases_cite_their_page() -> None:
    for path in sorted(CASES_DIR.glob("docs_*.yaml")):
        for case in yaml.safe_load(path.read_text(encoding="utf-8")):
            assert str(case.get("doc", "")).startswith("https://cloud.google.com/workflows/"), (
                f"{path.name}:{case['name']} names no documentation page"
            )


@pytest.mark.parametrize("case", CASES)
def test_case(case: dict[str, Any], http_server: str, refused_url: str) -> None:
    source = f"{case['name']}.workflows.yaml"
    if "syntax_error" in case:
        with pytest.raises(WorkflowSyntaxError) as info:
            parse_workflow(case["workflow"], source=source)
        assert case["syntax_error"] in str(info.value)
        assert source in str(info.value)
        return
    workflow = parse_workflow(case["workflow"], source=source)
    env = {
        "BASE_URL": http_server,
        "REFUSED_URL": refused_url,
        "CASE": f"{case['name']}-{uuid.uuid4().hex[:8]}",
        **case.get("env", {}),
    }
    clock = VirtualClock()

    def run() -> Any:
        return run_workflow(
            workflow, case.get("argument"), env=env, clock=clock, project="proj", location="loc"
        )

    if "error" in case:
        with pytest.raises(WorkflowError) as error:
            run()
        check_error(case["error"], error.value.error)
    else:
        result = run()
        assert same(case["result"], result), result
    if "sleeps" in case:
        assert clock.sleeps == pytest.approx(case["sleeps"])
