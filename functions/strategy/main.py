"""Cloud Function: the strategy phase (marketing 7Ps and north-star metrics) of one run."""

import flask
import functions_framework

from common.analysis.phases import PhaseRequest, run_phase
from common.platform import http as api


@functions_framework.http
def strategy(request: flask.Request) -> tuple[api.Json, int]:
    """POST {"run_id": ...}: run the phase (or return its stored result) and answer its summary."""
    return api.respond(lambda: run_phase(api.parse(request, PhaseRequest).run_id, "strategy"))
