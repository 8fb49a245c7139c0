"""The backend API's routes and their handlers: each a small typed function of a routed `Call`.

Order of checks on every request: the route (404 unknown path, 405 wrong method with `Allow`),
the caller (401 without a valid Firebase ID token), membership (403; 404 for a run), then the
request itself (400 naming the field), then idempotency, rate limit and tier gating before
anything is started. Dispatch is `routes.serve`; bodies, limits and the JSON error shape come
from the shared HTTP edge, `common.platform.http`. The JSON keeps each model's field order.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import flask
from pydantic import BaseModel, create_model

from common.analysis import launch
from common.analysis.phases import phase_ref
from common.backend import access, idempotency, openapi, ratelimit, reports
from common.backend.routes import Call, Query, Reply, Route, serve
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
from common.platform import http
from common.platform.errors import InvalidInput
from common.platform.settings import get_settings
from common.runs import documents, events, history, lifecycle
from common.tenants import members

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
    return http.read_json(request, max_bytes=http.MAX_CLIENT_BODY_BYTES)


def me(call: Call) -> Reply:
    assert call.user is not None
    return Reply(
        Me(uid=call.uid, email=call.user.email, businesses=members.businesses_of(call.uid))
    )


def start(call: Call) -> Reply:
    business_id = call.params["business_id"]
    access.member_business(call.uid, business_id)
    key = idempotency.parse_key(call.request.headers.get(idempotency.HEADER))
    body = _body(call.request)
    if "business_id" in body:
        raise InvalidInput(
            "business_id comes from the path, not the body",
            code="invalid_field",
            field="business_id",
        )
    request = http.validate(body, RunRequest)
    business = BusinessInput.model_validate({**request.model_dump(), "business_id": business_id})

    def launch_run(run_id: str | None = None) -> str:
        # The rate limit is taken only by a request that starts a run: a replay spends nothing.
        ratelimit.take_run_token(call.uid)
        return launch.start_run(business, run_id=run_id)

    if key is None:
        return _started(launch_run(), business_id, "queued", replayed=False)
    fingerprint = idempotency.fingerprint(business_id, request)
    started = idempotency.start_once(call.uid, key, business_id, fingerprint, launch_run)
    status = documents.get_run(started.run_id).status if started.replayed else "queued"
    return _started(started.run_id, business_id, status, replayed=started.replayed)


def _started(run_id: str, business_id: str, status: str, *, replayed: bool) -> Reply:
    path = f"{documents.RUNS}/{run_id}"
    started = RunStarted(
        run_id=run_id,
        business_id=business_id,
        status=status,
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
    headers = {"Location": started.links["run"]}
    if replayed:
        headers["Idempotent-Replayed"] = "true"  # Stripe's header for a replayed answer
    return Reply(started, status=200 if replayed else 201, headers=headers)


def list_runs(call: Call) -> Reply:
    business_id = call.params["business_id"]
    access.member_business(call.uid, business_id)
    query = history.parse(business_id, call.request.args.to_dict(flat=False))
    return Reply(history.page(query))


def get_run(call: Call) -> Reply:
    return Reply(access.member_run(call.uid, call.params["run_id"]))


def results(call: Call) -> Reply:
    run = access.member_run(call.uid, call.params["run_id"])
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
    access.member_run(call.uid, call.params["run_id"])
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
    return Reply(members.add_member(business_id, change, by=call.uid))


def remove_member(call: Call) -> Reply:
    business_id = call.params["business_id"]
    access.owned_business(call.uid, business_id)
    uid = call.request.args.get("uid", "")
    if not uid:
        raise InvalidInput("name the member to remove: ?uid=...", code="missing_field", field="uid")
    return Reply(members.remove_member(business_id, uid, by=call.uid))


def openapi_document(call: Call) -> Reply:
    # Never from the request's Host header: a forged one would make the document point
    # clients elsewhere. Without a configured URL, clients resolve paths against the
    # document's own.
    return Reply(openapi.document(ROUTES, server_url=get_settings().api_public_url))


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
        headers=(
            Query(
                "Idempotency-Key",
                "Makes the start safe to retry (Stripe's convention): the same key and request "
                "within 24 hours answer the first run (200, `Idempotent-Replayed: true`); the "
                "same key with another request is a 409. At most 255 printable ASCII "
                "characters; a UUID per request is usual.",
                {"type": "string", "minLength": 1, "maxLength": idempotency.MAX_KEY_CHARS},
            ),
        ),
        statuses=((200, "An earlier request with this `Idempotency-Key` started the run"),),
        errors=(402, 409, 429, 503),
    ),
    Route(
        "GET",
        "/v1/businesses/{business_id}/runs",
        list_runs,
        "listRuns",
        "The business's runs, newest first, a page at a time (filter by status and dates)",
        history.RunPage,
        query=(
            Query(
                "status",
                "only runs in this state",
                {"type": "string", "enum": list(history.STATUSES)},
            ),
            Query(
                "from",
                "only runs created on or after this UTC day, YYYY-MM-DD",
                {"type": "string", "format": "date"},
            ),
            Query(
                "to",
                "only runs created on or before this UTC day, YYYY-MM-DD",
                {"type": "string", "format": "date"},
            ),
            Query(
                "limit",
                f"runs per page (default {history.DEFAULT_LIMIT})",
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": history.MAX_LIMIT,
                    "default": history.DEFAULT_LIMIT,
                },
            ),
            Query(
                "cursor",
                "the `next_cursor` of the previous page, unchanged (with the same filters)",
                {"type": "string"},
            ),
        ),
        errors=(400,),
    ),
    Route(
        "GET",
        "/v1/runs/{run_id}",
        get_run,
        "getRun",
        "A run's live state (404 also for a run of a business the caller is not a member of)",
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
        errors=(409, 429),
    ),
    Route(
        "DELETE",
        "/v1/businesses/{business_id}/members",
        remove_member,
        "removeMember",
        "Remove a member (owners only; the last owner stays)",
        members.Members,
        query=(Query("uid", "the member to remove", {"type": "string"}),),
        errors=(400, 404, 409, 429),
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


# --- Entry point ------------------------------------------------------------------------------


def handle(request: flask.Request) -> flask.Response:
    """Answer one API request (the `api` Cloud Function)."""
    return serve(ROUTES, request)
