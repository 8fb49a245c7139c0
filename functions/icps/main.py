"""Cloud Function: the ICP phase (ideal customer profiles) of one run."""

import flask
import functions_framework

from common.analysis.phases import PhaseRequest, answer
from common.platform import http

http.serve_json_errors()


@functions_framework.http
def icps(request: flask.Request) -> http.Answer:
    """POST {"run_id", "business_id"?}: run the phase (or return its stored result), answer
    its summary."""
    return http.respond(lambda: answer(http.parse(request, PhaseRequest), "icps"))
