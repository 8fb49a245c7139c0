"""Cloud Function: run bookkeeping at the start and end of the workflow (status, totals)."""

import flask
import functions_framework

from common.platform import http
from common.runs.lifecycle import LifecycleRequest, RunSummary, transition

http.serve_json_errors()


@functions_framework.http
def lifecycle(request: flask.Request) -> http.Answer:
    """POST {"run_id", "transition", "reason"?, "message"?, "business_id"?}: move the run,
    answer its totals (400 `business_mismatch` if the run is not `business_id`'s)."""

    def move() -> RunSummary:
        body = http.parse(request, LifecycleRequest)
        return transition(
            body.run_id,
            body.transition,
            reason=body.reason,
            message=body.message,
            business_id=body.business_id,
        )

    return http.respond(move)
