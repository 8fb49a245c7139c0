"""The Workflows Executions API: where a run's workflow execution is started.

On Google Cloud `ExecutionsClient` talks to the Workflows Executions API; locally
(`Settings.executions_endpoint`) the same client talks to our engine over plain gRPC.
"""

from __future__ import annotations

import json

import grpc
from google.cloud.workflows import executions_v1
from google.cloud.workflows.executions_v1.services.executions.transports import (
    ExecutionsGrpcTransport,
)

from common.platform.settings import get_settings


def executions_client() -> executions_v1.ExecutionsClient:
    """The Executions API client: the local engine if configured, else Google's service."""
    endpoint = get_settings().executions_endpoint
    if endpoint:
        channel = grpc.insecure_channel(endpoint)
        return executions_v1.ExecutionsClient(transport=ExecutionsGrpcTransport(channel=channel))
    return executions_v1.ExecutionsClient()


def workflow_path() -> str:
    settings = get_settings()
    return executions_v1.ExecutionsClient.workflow_path(
        settings.project_id, settings.region, settings.workflow_id
    )


def start_execution(
    run_id: str, business_id: str, *, client: executions_v1.ExecutionsClient | None = None
) -> executions_v1.Execution:
    """Start the workflow for `run_id` of `business_id` (its only arguments: the run lives in
    Firestore; the business's id lets each step read the run and the business's documents in
    one round trip).

    Raises:
        google.api_core.exceptions.GoogleAPICallError: the Executions API refused or failed.
    """
    client = client or executions_client()
    return client.create_execution(
        parent=workflow_path(),
        execution=executions_v1.Execution(
            argument=json.dumps({"run_id": run_id, "business_id": business_id})
        ),
    )
