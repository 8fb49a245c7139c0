"""Starting a run: the tier and budget checks, the run document, the workflow execution."""

from __future__ import annotations

import logging
import uuid

from google.api_core import exceptions
from google.cloud.workflows import executions_v1

from common.analysis.admission import require_run_room
from common.budget.clock import server_clock
from common.budget.room import read_room
from common.models import BusinessInput
from common.platform import log
from common.platform.errors import Busy, PaymentRequired
from common.platform.secrets import redact
from common.runs import documents
from common.runs.executions import start_execution

logger = logging.getLogger(__name__)


def start_run(
    business: BusinessInput,
    *,
    run_id: str | None = None,
    client: executions_v1.ExecutionsClient | None = None,
) -> str:
    """Check the request against the business's tier and budget, then start the workflow.

    Args:
        business: What to analyse.
        run_id: The new run's id (default: a fresh one). A run is created once per id: a second
            start with the same id raises `google.api_core.exceptions.AlreadyExists` and starts
            nothing (the API's idempotent starts choose the id before starting).
        client: The Executions API client (default: the configured one).

    Returns:
        The new run's id.

    Raises:
        NotFound: the business is not registered (`unknown_business`).
        PaymentRequired: the tier does not allow the request (`feature_limit_exceeded`) or
            what the run is expected to cost does not fit the budget now; nothing is created.
        Busy: the Executions API refused to start the workflow (`workflow_unavailable`); the
            run is kept, failed, with why.
    """
    # The business and its budget in one read: the tier's limits, then the run's room.
    room, _ = read_room(business.business_id, server_clock.now(), shards=False)
    registered = room.business
    limits = registered.limits
    if business.icp_count > limits.max_icps:
        raise PaymentRequired(
            f"the {registered.tier} tier allows at most {limits.max_icps} ICPs; "
            f"{business.icp_count} were requested",
            code="feature_limit_exceeded",
            field="icp_count",
        )
    run_id = run_id or uuid.uuid4().hex
    require_run_room(run_id, business, registered.tier, room=room)

    ref = documents.run_ref(run_id)
    ref.create(documents.new_run_document(run_id, business, registered.tier))
    try:
        execution = start_execution(run_id, business.business_id, client=client)
    except exceptions.GoogleAPICallError as error:
        # Keep the run as a record of the failed start, with why.
        why = redact(f"could not start the workflow: {error.message}")
        ref.update({"status": "failed", "error": why})
        raise Busy(why, code="workflow_unavailable") from error
    ref.update({"execution": execution.name})
    logger.info(
        "run started",
        extra=log.fields(event="run_requested", run_id=run_id, business_id=business.business_id),
    )
    return run_id
