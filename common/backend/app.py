"""The backend API: one function answering every route (`handle`), each a small typed handler.

Order of checks on every request: the route (404 unknown path, 405 wrong method with `Allow`),
the caller (401 without a valid Firebase ID token), membership (403), then the request itself
(400 naming the field), then rate limit and tier gating before anything is started.
Answers are JSON in the error shape of `common.api`; the JSON keeps each model's field order.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import flask
from pydantic import BaseModel, create_model

from common.analysis import launch
from common.analysis.phases import phase_ref
from common.backend import access, auth, openapi, ratelimit, reports
from common.backend.routes import Call, Query, Reply, Route, match
from common.budget.status import BudgetStatus, get_budget_status
from common.models import (
    PHASE_ORDER,
    AnalyticsOutput,
    BusinessInput,
    ContentOutput,
    IcpOutput,
    PositioningOutput,
    ResearchOutput,
    StrategyOutput,
    Strict,
)
from common.platform import http, log
from common.platform.errors import AppError, InvalidInput, NotFound
from common.platform.settings import get_settings
from common.runs import documents, events, lifecycle
from common.tenants import members

MAX_BODY_BYTES = 64 * 1024
logger = logging.getLogger(__name__)


class BodyTooLarge(AppError):
    status = 413
    code = "body_too_large"


class MethodNotAllowed(AppError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, *, allow: list[str]) -> None:
        super().__init__(message)
        self.allow = allow


# --- Request and response models ---------------------------------------------------------------

# The business input without its id, which comes from the path.
RunRequest: type[Strict] = create_model(  # type: ignore[call-overload]
    "RunRequest",
    __base__=Strict,
    __doc__="What the business tells RaptorFlow to start an analysis (its id is in the path).",
    **{
        name: (info.annotation, info)
        for name, info in BusinessInput.model_fields.items()
        if name != "business_id"
    },
)


class ListenPaths(BaseModel):
    """Firestore documents and collections a client listens to (realtime listeners)."""

    run: str
    events: str
    phases: str
    budget_status: str


class RunStarted(BaseModel):
    run_id: str
    business_id: str
    status: str
    listen: ListenPaths
    links: dict[str, str]


class Results(BaseModel):
    """Each finished phase's output, in phase order, each in its schema's field order."""

    run_id: str
    status: str
    completed: list[str]
    research: ResearchOutput | None = None
    positioning: PositioningOutput | None = None
    icps: IcpOutput | None = None
    strategy: StrategyOutput | None = None
    content: ContentOutput | None = None
    analytics: AnalyticsOutput | None = None


class Me(BaseModel):
    uid: str
    email: str | None
    businesses: list[members.Membership]


# --- Handlers ----------------------------------------------------------------------------------


def _body(request: flask.Request) -> dict[str, Any]:
    """The JSON object in the body; never a 5xx, however malformed or deep."""
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise BodyTooLarge(f"the body is over {MAX_BODY_BYTES} bytes", field="body")
    raw = request.get_data(cache=True)
    if len(raw) > MAX_BODY_BYTES:
        raise BodyTooLarge(f"the body is over {MAX_BODY_BYTES} bytes", field="body")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as error:  # RecursionError: absurdly deep nesting
        detail = str(error) if isinstance(error, ValueError) else "nested too deeply"
        raise InvalidInput(
            f"the body is not valid JSON: {detail[:200]}", code="invalid_json", field="body"
        ) from error
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object", code="invalid_json", field="body")
    return body


def _member_run(call: Call) -> documents.Run:
    run = documents.get_run(call.params["run_id"])
    access.member_business(call.uid, run.business_id)
    return run


def me(call: Call) -> Reply:
    assert call.user is not None
    return Reply(
        Me(uid=call.uid, email=call.user.email, businesses=members.businesses_of(call.uid))
    )


def start(call: Call) -> Reply:
    business_id = call.params["business_id"]
    access.member_business(call.uid, business_id)
    body = _body(call.request)
    if "business_id" in body:
        raise InvalidInput(
            "business_id comes from the path, not the body",
            code="invalid_field",
            field="business_id",
        )
    request = http.validate(body, RunRequest)
    business = BusinessInput.model_validate({**request.model_dump(), "business_id": business_id})
    ratelimit.take_run_token(call.uid)
    run_id = launch.start_run(business)
    path = f"{documents.RUNS}/{run_id}"
    started = RunStarted(
        run_id=run_id,
        business_id=business_id,
        status="queued",
        listen=ListenPaths(
            run=path,
            events=f"{path}/{events.EVENTS}",
            phases=f"{path}/{documents.PHASES}",
            budget_status=f"budget_status/{business_id}",
        ),
        links={
            "run": f"/v1/runs/{run_id}",
            "results": f"/v1/runs/{run_id}/results",
            "cancel": f"/v1/runs/{run_id}:cancel",
        },
    )
    return Reply(started, status=201, headers={"Location": started.links["run"]})


def get_run(call: Call) -> Reply:
    return Reply(_member_run(call))


def results(call: Call) -> Reply:
    run = _member_run(call)
    outputs: dict[str, Any] = {}
    for phase in PHASE_ORDER:
        snapshot = phase_ref(run.run_id, phase).get()
        if snapshot.exists:
            outputs[phase] = (snapshot.to_dict() or {}).get("output")
    return Reply(
        Results.model_validate(
            {"run_id": run.run_id, "status": run.status, "completed": list(outputs), **outputs}
        )
    )


def cancel(call: Call) -> Reply:
    _member_run(call)
    return Reply(lifecycle.request_cancel(call.params["run_id"]), status=202)


def budget(call: Call) -> Reply:
    business_id = call.params["business_id"]
    access.member_business(call.uid, business_id)
    return Reply(get_budget_status(business_id))


def usage(call: Call) -> Reply:
    business_id = call.params["business_id"]
    access.member_business(call.uid, business_id)
    args = call.request.args
    first, last, group_by = reports.parse_range(
        args.get("from"), args.get("to"), args.get("group_by"), dt.datetime.now(dt.UTC).date()
    )
    report = reports.usage_report(business_id, first, last, group_by)
    if _wants_csv(call.request):
        name = f"usage-{business_id}-{first}-{last}-{group_by}.csv"
        return Reply(
            reports.to_csv(report),
            content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return Reply(report)


def _wants_csv(request: flask.Request) -> bool:
    best = request.accept_mimetypes.best_match(["application/json", "text/csv"])
    return best == "text/csv"


def list_members(call: Call) -> Reply:
    return Reply(members.members_of(access.owned_business(call.uid, call.params["business_id"])))


def add_member(call: Call) -> Reply:
    business_id = call.params["business_id"]
    access.owned_business(call.uid, business_id)
    change = http.validate(_body(call.request), members.MemberChange)
    return Reply(members.add_member(business_id, change))


def remove_member(call: Call) -> Reply:
    business_id = call.params["business_id"]
    access.owned_business(call.uid, business_id)
    uid = call.request.args.get("uid", "")
    if not uid:
        raise InvalidInput("name the member to remove: ?uid=...", code="missing_field", field="uid")
    return Reply(members.remove_member(business_id, uid))


def openapi_document(call: Call) -> Reply:
    return Reply(openapi.document(ROUTES, server_url=call.request.host_url.rstrip("/")))


ROUTES: list[Route] = [
    Route("GET", "/v1/me", me, "getMe", "The caller and the businesses they belong to", Me),
    Route(
        "POST",
        "/v1/businesses/{business_id}/runs",
        start,
        "startRun",
        "Start an analysis (tier, kill switch and budget are checked first)",
        RunStarted,
        status=201,
        body=RunRequest,
        errors=(402, 429, 503),
    ),
    Route(
        "GET",
        "/v1/runs/{run_id}",
        get_run,
        "getRun",
        "A run's live state",
        documents.Run,
        errors=(404,),
    ),
    Route(
        "GET",
        "/v1/runs/{run_id}/results",
        results,
        "getResults",
        "Every finished phase's output, in schema order",
        Results,
        errors=(404,),
    ),
    Route(
        "POST",
        "/v1/runs/{run_id}:cancel",
        cancel,
        "cancelRun",
        "Ask a run to stop at its next check",
        documents.Run,
        status=202,
        errors=(404, 409),
    ),
    Route(
        "GET",
        "/v1/businesses/{business_id}/budget",
        budget,
        "getBudget",
        "The business's budget right now",
        BudgetStatus,
    ),
    Route(
        "GET",
        "/v1/businesses/{business_id}/usage",
        usage,
        "getUsage",
        "Usage over a range of days, grouped (JSON, or CSV with `Accept: text/csv`)",
        reports.UsageReport,
        query=(
            Query(
                "from",
                "first day, YYYY-MM-DD (default: this month's first)",
                {"type": "string", "format": "date"},
            ),
            Query(
                "to",
                "last day, YYYY-MM-DD (default: today, UTC)",
                {"type": "string", "format": "date"},
            ),
            Query(
                "group_by",
                "how rows are grouped (default: model)",
                {"type": "string", "enum": list(reports.GROUP_FIELDS)},
            ),
        ),
        errors=(400,),
        csv=True,
    ),
    Route(
        "GET",
        "/v1/businesses/{business_id}/members",
        list_members,
        "listMembers",
        "The business's members and owners (owners only)",
        members.Members,
    ),
    Route(
        "POST",
        "/v1/businesses/{business_id}/members",
        add_member,
        "addMember",
        "Add a member, or change whether they are an owner (owners only)",
        members.Members,
        body=members.MemberChange,
        errors=(409,),
    ),
    Route(
        "DELETE",
        "/v1/businesses/{business_id}/members",
        remove_member,
        "removeMember",
        "Remove a member (owners only; the last owner stays)",
        members.Members,
        query=(Query("uid", "the member to remove", {"type": "string"}),),
        errors=(400, 404, 409),
    ),
    Route(
        "GET",
        "/v1/openapi.json",
        openapi_document,
        "getOpenApi",
        "This document (no sign-in needed)",
        None,
        auth=False,
    ),
]


# --- Dispatch ----------------------------------------------------------------------------------


def _json(body: Any) -> str:
    if isinstance(body, BaseModel):
        return body.model_dump_json()
    return json.dumps(body)


def _cors(request: flask.Request) -> dict[str, str]:
    allowed = get_settings().api_allowed_origins
    origin = request.headers.get("Origin")
    if "*" in allowed:
        value = "*"
    elif origin in allowed:
        value = origin
    else:
        return {}
    return {
        "Access-Control-Allow-Origin": value,
        "Access-Control-Expose-Headers": "Retry-After, Location, Allow",
        "Vary": "Origin",
    }


def _error(error: AppError) -> Reply:
    headers: dict[str, str] = {}
    if isinstance(error, auth.Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="raptorflow"'
    if isinstance(error, ratelimit.TooManyRequests):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, MethodNotAllowed):
        headers["Allow"] = ", ".join(error.allow)
    level = logging.WARNING if error.status >= 500 else logging.INFO
    logger.log(
        level,
        error.message,
        extra=log.fields(event="api_rejected", status=error.status, code=error.code),
    )
    return Reply(http.error_body(error), status=error.status, headers=headers)


def _dispatch(request: flask.Request) -> Reply:
    candidates = match(ROUTES, request.path)
    if not candidates:
        raise NotFound(f"no such path: {request.path[:200]}", code="unknown_path")
    allowed = sorted({route.method for route, _ in candidates} | {"OPTIONS"})
    if request.method == "OPTIONS":
        return Reply(
            "",
            status=204,
            headers={
                "Allow": ", ".join(allowed),
                "Access-Control-Allow-Methods": ", ".join(allowed),
                "Access-Control-Allow-Headers": "Authorization, Content-Type, Accept",
                "Access-Control-Max-Age": "3600",
            },
        )
    for route, params in candidates:
        if route.method == request.method:
            user = auth.verify(request.headers.get("Authorization")) if route.auth else None
            return route.handler(Call(request=request, user=user, params=params))
    raise MethodNotAllowed(
        f"{request.method} is not allowed here; use {', '.join(allowed)}", allow=allowed
    )


def handle(request: flask.Request) -> flask.Response:
    """Answer one API request (the `api` Cloud Function)."""
    log.configure()
    try:
        reply = _dispatch(request)
    except AppError as error:
        reply = _error(error)
    text = reply.body if isinstance(reply.body, str) else _json(reply.body)
    if reply.status == 204:
        text = ""
    response = flask.Response(text, status=reply.status, content_type=reply.content_type)
    response.headers.update({**_cors(request), **reply.headers})
    return response
