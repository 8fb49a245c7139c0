"""No workflow, however long or deeply nested, ends in a Python RecursionError.

Expressions are at most 400 characters (https://cloud.google.com/workflows/quotas), which bounds
how deeply they nest; a definition or a value nested deeper than the engine's stack is a
load-time error or a ResourceLimitError, never a traceback.
"""

from __future__ import annotations

import pytest

from workflows.engine import (
    VirtualClock,
    WorkflowError,
    WorkflowSyntaxError,
    parse_workflow,
    run_workflow,
)


def test_a_long_expression_is_a_load_error_naming_the_limit() -> None:
    expression = "+".join(["1"] * 3000)  # a Python RecursionError before the limit existed
    with pytest.raises(WorkflowSyntaxError) as info:
        parse_workflow(f"- r:\n    return: ${{{expression}}}\n", source="long.workflows.yaml")
    assert "long.workflows.yaml:1: step 'r': expression is 5999 characters long" in str(info.value)
    assert "at most 400 are allowed" in str(info.value)


def test_a_definition_nested_too_deeply_is_a_load_error() -> None:
    text = "- r:\n    return: " + "[" * 5000 + "]" * 5000 + "\n"
    with pytest.raises(WorkflowSyntaxError) as info:
        parse_workflow(text, source="deep.workflows.yaml")
    assert str(info.value) == "deep.workflows.yaml: the definition is nested too deeply"


def test_a_value_nested_too_deeply_ends_the_run_with_a_resource_limit_error() -> None:
    workflow = parse_workflow(
        "- init:\n    assign:\n      - x: []\n"
        "- t:\n    try:\n      steps:\n"
        "        - nest:\n            for:\n              value: i\n"
        "              range: [1, 3000]\n              steps:\n"
        "                - wrap:\n                    assign:\n                      - x: ${[x]}\n"
        "    except:\n      steps:\n        - caught:\n            return: caught\n"
    )
    with pytest.raises(WorkflowError) as info:
        run_workflow(workflow, clock=VirtualClock())
    assert info.value.tags == ["ResourceLimitError"]
    assert info.value.error["message"] == "a value is nested too deeply"
    assert info.value.step == "wrap"
