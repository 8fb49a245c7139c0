"""Cloud Function: the router/budget check the workflow makes before each phase."""

import flask
import functions_framework

from common.analysis import preflight
from common.platform import http

http.serve_json_errors()


@functions_framework.http
def budget_check(request: flask.Request) -> http.Answer:
    """POST {"run_id", "phase"} (the workflow) or {"business_id", "task_type", "input"} (a
    backend): 200 with the decision, 402 with the budget's reason when denied, 409
    `run_cancelled` once the run's cancellation was requested."""
    return http.respond(lambda: preflight.answer(http.json_body(request)))
