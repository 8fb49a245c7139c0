"""Cloud Function: the strategy phase (marketing 7Ps and north-star metrics) of one run."""

import flask
import functions_framework

from common.analysis.phases import PhaseRequest, answer
from common.platform import http

http.serve_json_errors()


@functions_framework.http
def strategy(request: flask.Request) -> http.Answer:
    """POST {"run_id", "business_id"?}: run the phase (or return its stored result), answer
    its summary."""
    return http.respond(lambda: answer(http.parse(request, PhaseRequest), "strategy"))
