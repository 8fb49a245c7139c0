"""Load a workflow definition: YAML (or JSON) text to a validated tree of steps.

Everything that can be checked before running is checked here, with file, line and step name:
unknown keys, `next` targets, calls to unknown functions or subworkflows, duplicate step names,
argument names, misplaced `break`/`continue`/`return`, and unsupported features.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import WorkflowSyntaxError
from ..runtime import Workflow
from .steps import StepCompiler

WORKFLOW_SUFFIX = ".workflows.yaml"


def workflow_id(path: Path) -> str:
    """`marketing_analysis.workflows.yaml` → `marketing_analysis`."""
    name = path.name
    for suffix in (WORKFLOW_SUFFIX, ".yaml", ".yml", ".json"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def parse_workflow(text: str, source: str = "<string>", name: str | None = None) -> Workflow:
    """Parse and validate a workflow definition.

    Args:
        text: YAML or JSON.
        source: Shown in error messages (a file name).
        name: The workflow id reported by GOOGLE_CLOUD_WORKFLOW_ID (default: from `source`).

    Raises:
        WorkflowSyntaxError: With file, line and step name.
    """
    try:
        return StepCompiler(source, name or workflow_id(Path(source))).workflow(text)
    except RecursionError:
        raise WorkflowSyntaxError(
            "the definition is nested too deeply", source=source, line=None, step=None
        ) from None


def load_workflow(path: Path) -> Workflow:
    """Read and validate a workflow file; its id is the file name without `.workflows.yaml`."""
    return parse_workflow(path.read_text(encoding="utf-8"), str(path), workflow_id(path))
