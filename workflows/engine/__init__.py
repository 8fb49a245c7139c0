"""A local, faithful Google Cloud Workflows engine.

Load a definition with `load_workflow` / `parse_workflow` (validated at load time), run it with
`run_workflow`, or serve a folder of `*.workflows.yaml` over the Executions gRPC API with `serve`.
"""

from .clock import CancelToken, Clock, SystemClock, VirtualClock
from .errors import ExecutionCancelled, Frame, WorkflowError, WorkflowSyntaxError
from .executions import ExecutionsServer, serve
from .loader import load_workflow, parse_workflow, workflow_id
from .runtime import Workflow, run_workflow

__all__ = [
    "CancelToken",
    "Clock",
    "ExecutionCancelled",
    "ExecutionsServer",
    "Frame",
    "SystemClock",
    "VirtualClock",
    "Workflow",
    "WorkflowError",
    "WorkflowSyntaxError",
    "load_workflow",
    "parse_workflow",
    "run_workflow",
    "serve",
    "workflow_id",
]
