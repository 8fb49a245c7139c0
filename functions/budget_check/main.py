"""Cloud Function: the router/budget check the workflow makes before each phase."""

import flask
import functions_framework

from common import api
from common.budget import BudgetDecision
from common.gate import GateRequest, check_phase


@functions_framework.http
def budget_check(request: flask.Request) -> tuple[api.Json, int]:
    """POST {"run_id", "phase"}: 200 with the decision, 402 with the budget's reason when
    denied, 409 `run_cancelled` once the run's cancellation was requested."""

    def check() -> BudgetDecision:
        body = api.parse(request, GateRequest)
        return check_phase(body.run_id, body.phase)

    return api.respond(check)
