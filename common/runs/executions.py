"""The backend's side of a run: start it as a Workflows execution, cancel it, follow it live.

On Google Cloud `ExecutionsClient` talks to the Workflows Executions API; locally
(`Settings.executions_endpoint`) the same client talks to our engine over plain gRPC.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import uuid
from collections.abc import Callable
from typing import Any

import grpc
from google.api_core import exceptions
from google.cloud import firestore
from google.cloud.workflows import executions_v1
from google.cloud.workflows.executions_v1.services.executions.transports import (
    ExecutionsGrpcTransport,
)

from common.analysis import prompts
from common.analysis.phases import PHASES, output_model
from common.budget.businesses import get_business
from common.budget.ledger import check_budget_before_task
from common.models import BusinessInput
from common.platform import log
from common.platform.errors import Conflict, NotFound, PaymentRequired
from common.platform.settings import get_settings
from common.platform.store import db
from common.runs import documents as progress

logger = logging.getLogger(__name__)


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


def start_run(
    business: BusinessInput, *, client: executions_v1.ExecutionsClient | None = None
) -> str:
    """Check the request against the business's tier and budget, then start the workflow.

    Returns:
        The new run's id.

    Raises:
        NotFound: the business is not registered (`unknown_business`).
        PaymentRequired: the tier does not allow the request (`feature_limit_exceeded`) or the
            budget cannot pay for the first phase; nothing is created.
    """
    registered = get_business(business.business_id)
    limits = registered.limits
    if business.icp_count > limits.max_icps:
        raise PaymentRequired(
            f"the {registered.tier} tier allows at most {limits.max_icps} ICPs; "
            f"{business.icp_count} were requested",
            code="feature_limit_exceeded",
            field="icp_count",
        )
    first = PHASES["research"]
    allowed, decision = check_budget_before_task(
        business.business_id,
        first.task_type,
        prompts.phase_messages("research", business, {}),
        schema=output_model("research", business),
    )
    if not allowed:
        raise PaymentRequired(decision.message, code=decision.reason)

    run_id = uuid.uuid4().hex
    ref = progress.run_ref(run_id)
    ref.create(progress.new_run_document(run_id, business, registered.tier))
    client = client or executions_client()
    try:
        execution = client.create_execution(
            parent=workflow_path(),
            execution=executions_v1.Execution(argument=json.dumps({"run_id": run_id})),
        )
    except exceptions.GoogleAPICallError as error:
        # Keep the run as a record of the failed start, with why.
        ref.update({"status": "failed", "error": f"could not start the workflow: {error.message}"})
        raise
    ref.update({"execution": execution.name})
    logger.info(
        "run started",
        extra=log.fields(event="run_requested", run_id=run_id, business_id=business.business_id),
    )
    return run_id


def cancel_run(run_id: str) -> progress.Run:
    """Ask a run to stop: it ends `cancelled` at its next check, keeping finished phases."""
    run = progress.get_run(run_id)
    if run.status in progress.TERMINAL:
        raise Conflict(f"run {run_id} already ended {run.status}", code="run_final")
    batch = db().batch()
    batch.update(
        progress.run_ref(run_id),
        {"cancel_requested": True, "updated_at": firestore.SERVER_TIMESTAMP},
    )
    batch.create(
        progress.run_ref(run_id).collection(progress.EVENTS).document("run.cancel_requested"),
        progress.event_document(
            "cancel_requested", phase=None, step="cancel requested", percent=run.percent, data={}
        ),
    )
    with contextlib.suppress(exceptions.AlreadyExists):  # asked before
        batch.commit()
    return progress.get_run(run_id)


def watch(
    run_id: str,
    on_change: Callable[[progress.Run], None],
    *,
    timeout: float | None = None,
) -> progress.Run:
    """Call `on_change` with every new state of the run until it ends; return the final state.

    Uses a Firestore realtime listener. Listener callbacks run on Firestore's thread, where an
    exception would silently kill the listener, so they only hand snapshots over to this thread.

    Raises:
        TimeoutError: the run did not end within `timeout` seconds.
    """
    updates: queue.Queue[progress.Run | BaseException | None] = queue.Queue()

    def forward(snapshots: list[Any], _changes: Any, _read_time: Any) -> None:
        try:
            if not snapshots:  # the document was deleted
                updates.put(None)
                return
            updates.put(progress.run_from(snapshots[0]))
        except BaseException as error:  # handed to the watching thread, raised there
            updates.put(error)

    listener = progress.run_ref(run_id).on_snapshot(forward)
    timer = None
    if timeout is not None:
        message = f"run {run_id} did not end within {timeout:.0f} s"
        timer = threading.Timer(timeout, updates.put, args=(TimeoutError(message),))
        timer.start()
    try:
        while True:
            update = updates.get()
            if update is None:
                raise NotFound(f"run {run_id} was deleted", code="run_not_found")
            if isinstance(update, BaseException):
                raise update
            on_change(update)
            if update.status in progress.TERMINAL:
                return update
    finally:
        listener.unsubscribe()
        if timer is not None:
            timer.cancel()
