"""Load-time validation from files: messages carry the file, the line and the step."""

from __future__ import annotations

from pathlib import Path

import pytest

from workflows.engine import WorkflowSyntaxError, load_workflow


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "marketing_analysis.workflows.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_unknown_key_reports_file_line_and_step(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "main:\n  params: [args]\n  steps:\n    - init:\n        assign:\n          - x: 1\n"
        "    - call_research:\n        call: http.post\n        arg:\n          url: http://x\n",
    )
    with pytest.raises(WorkflowSyntaxError) as info:
        load_workflow(path)
    error = info.value
    assert (error.source, error.line, error.step) == (str(path), 7, "call_research")
    assert str(error) == f"{path}:7: step 'call_research': unknown step key(s) ['arg']"


def test_missing_next_target_in_a_subworkflow(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "main:\n  steps:\n    - a:\n        call: helper\n"
        "helper:\n  steps:\n    - first:\n        next: second\n",
    )
    with pytest.raises(WorkflowSyntaxError) as info:
        load_workflow(path)
    assert (info.value.line, info.value.step) == (7, "first")
    assert "next target 'second' does not exist" in str(info.value)


def test_unsupported_callback_fails_at_load_not_mid_run(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "- log:\n    call: sys.log\n    args:\n      text: before\n"
        "- wait:\n    call: events.await_callback\n    args:\n      callback: {}\n",
    )
    with pytest.raises(WorkflowSyntaxError) as info:
        load_workflow(path)
    assert (info.value.line, info.value.step) == (5, "wait")
    assert "not supported" in str(info.value)


def test_invalid_yaml_reports_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "- a:\n    assign:\n      - x: [1, 2\n")
    with pytest.raises(WorkflowSyntaxError) as info:
        load_workflow(path)
    assert info.value.line is not None
    assert "invalid YAML" in str(info.value)


def test_workflow_id_comes_from_the_file_name(tmp_path: Path) -> None:
    path = write(tmp_path, '- r:\n    return: ${sys.get_env("GOOGLE_CLOUD_WORKFLOW_ID")}\n')
    assert load_workflow(path).name == "marketing_analysis"
