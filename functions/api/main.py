"""Cloud Function: the backend API that clients call on behalf of signed-in users.

The only function reachable from the internet; every request carries a Firebase ID token.
Routes, auth and answers are in `common.backend.app` (OpenAPI document: GET /v1/openapi.json).
"""

import flask
import functions_framework

from common.backend.app import handle
from common.platform import http

http.serve_json_errors()


@functions_framework.http
def api(request: flask.Request) -> flask.Response:
    """Any /v1/... request: route it, check the caller, answer JSON (or CSV)."""
    return handle(request)
