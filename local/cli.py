"""`raptorflow`: start, watch, cancel and inspect runs; check and set a business's budget.

    raptorflow run [BUSINESS.json] [--local [--tier T]]   start an analysis and watch it to the end
    raptorflow watch RUN_ID                   live progress of a run, then its summary and export
    raptorflow cancel RUN_ID                  stop a run at its next check
    raptorflow status RUN_ID [--json]         a run's state (step, ETA, cost, tokens) and totals
    raptorflow budget BUSINESS_ID [--json]    spent, reserved and left today and this month
    raptorflow register BUSINESS_ID [--tier T] [--name N] [--daily-limit-usd X] ...
                                              register a business, or change only what is given
    raptorflow members list|add|remove BUSINESS_ID [UID] [--owner]   who may use a business
    raptorflow pause --reason TEXT | resume   the operator kill switch for every business
    raptorflow usage BUSINESS_ID [--by model|tier|task|day] [--from D --to D] [--csv] [--plot F]
                                              what a business spent, grouped (CSV, a chart)
    raptorflow report RUN_ID [--format md|html]   a run's analysis as a strategy document
    raptorflow router-report [--business B] [--from D] [--to D]
                                              how model calls ended, by task type and tier
    raptorflow router-feedback [--business B] [--from D --to D] [--prompts F] [--out F]
                                              each call's attempts as router training data (JSONL)
    raptorflow web [--port 8080]              the web app on a local stack, until Ctrl-C
    raptorflow completion bash                `source <(raptorflow completion bash)` completes

`--local` starts the whole local stack for the run (Firestore emulator, every function,
the workflow engine) and stops it afterwards; without it the CLI talks to whatever the
environment configures (GOOGLE_CLOUD_PROJECT, FIRESTORE_EMULATOR_HOST, EXECUTIONS_ENDPOINT).
Every failure is one line saying what to set or start (exit status 2); a run that did not
succeed exits 1; output cut short by a closed pipe (`| head`) ends quietly.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import google.auth.exceptions
from google.api_core import exceptions as google_errors
from pydantic import ValidationError

from common.analysis.launch import start_run
from common.analysis.report import report
from common.backend import reports
from common.budget.operator import set_paused
from common.budget.status import get_budget_status, publish
from common.budget.usage import router_feedback, router_report
from common.models import (
    BusinessInput,
)
from common.money import format_usd
from common.platform.errors import AppError, problems
from common.platform.secrets import find_secret, redact
from common.runs import documents, lifecycle
from common.tenants import members
from common.tenants.businesses import Business, business_ref, get_business, save_business
from local import stack
from local.arguments import business_id_arg, completion_script, date_arg, run_id_arg, text_arg
from local.charts import plot_daily_cost
from local.connection import NO_BACKEND, CliError, connect, talking_to
from local.emulator import EmulatorError
from local.runview import ProgressView, export, follow, print_summary, status_json

SAMPLE = Path(__file__).with_name("samples") / "tidewater.json"
WEB_USER, WEB_EMAIL, WEB_PASSWORD = "demo-owner", "owner@tidewater.example", "raptorflow"
OFFLINE_BANNER = (
    "OFFLINE MODE: no OPENAI_API_KEY or GEMINI_API_KEY is set, so a deterministic offline\n"
    "provider answers every call. Its outputs are PLACEHOLDERS built from your business\n"
    "description; costs are what the routed models would charge for the same tokens."
)
TIERS = ["basic", "pro", "enterprise"]
EXIT_ERROR, EXIT_BROKEN_PIPE, EXIT_INTERRUPTED = 2, 141, 130  # 141: 128 + SIGPIPE, as a shell


# --- Arguments -------------------------------------------------------------------------------


# --- Runs ------------------------------------------------------------------------------------


def _load_business(path: Path) -> BusinessInput:
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise CliError(f"cannot read {path}: {error.strerror}") from error
    except json.JSONDecodeError as error:
        raise CliError(f"{path} is not valid JSON: {error}") from error
    try:
        return BusinessInput.model_validate(data)
    except ValidationError as error:
        found = "\n".join(f"  {field}: {message}" for field, message in problems(error))
        raise CliError(f"{path} is not a valid business description:\n{found}") from error


def _offline() -> bool:
    return find_secret("OPENAI_API_KEY") is None and find_secret("GEMINI_API_KEY") is None


def _run(args: argparse.Namespace) -> int:
    business = _load_business(args.business or SAMPLE)
    if not args.local:
        if args.tier is not None:
            raise CliError(
                "--tier applies with --local only (it registers the business on the stack it "
                f"starts); elsewhere set it with `raptorflow register {business.business_id} "
                f"--tier {args.tier}`"
            )
        connect(executions=True)
        return _start_and_follow(business, local_note=None)
    print("Starting the local stack (Firestore emulator, functions, workflow engine)...")
    function_env = {"OFFLINE_LATENCY_MS": os.environ.get("OFFLINE_LATENCY_MS", "800")}
    with stack.running(function_env=function_env) as local, talking_to(local.client_env):
        register_business(business.business_id, tier=args.tier or "enterprise", name=business.name)
        return _start_and_follow(business, local_note=local.firestore.host)


def _start_and_follow(business: BusinessInput, local_note: str | None) -> int:
    run_id = start_run(business)  # first: when it cannot start, its error is all there is to say
    if _offline():
        print(OFFLINE_BANNER)
    print(f"Run {run_id} started for {business.name}")
    return _follow_and_export(run_id, local_note)


def _follow_and_export(run_id: str, local_note: str | None = None) -> int:
    final = follow(run_id)
    path = export(final)
    print(
        f"  Exported: {path}" + (f" (the emulator at {local_note} stops now)" if local_note else "")
    )
    return 0 if final.status == "succeeded" else 1


def _watch(args: argparse.Namespace) -> int:
    return _follow_and_export(args.run_id)


def _status(args: argparse.Namespace) -> int:
    run = documents.get_run(args.run_id)
    if args.json:
        print(json.dumps(status_json(run), indent=2))
    else:
        ProgressView().show(run)
        print_summary(run)
    return 0


def _cancel(args: argparse.Namespace) -> int:
    run = lifecycle.request_cancel(args.run_id)
    print(f"Cancellation requested: run {run.run_id} stops at its next check (now {run.status}).")
    return 0


# --- Businesses and the platform -------------------------------------------------------------


def _budget(args: argparse.Namespace) -> int:
    status = get_budget_status(args.business_id)
    if args.json:
        print(json.dumps(status.model_dump(mode="json"), indent=2))
        return 0
    print(f"Business {status.business_id} ({status.tier} tier)")
    print(
        f"  today:  ${status.today_spent:.6f} spent + ${status.today_reserved:.6f} held by "
        f"work in flight; ${status.today_remaining:.6f} left of ${status.daily_limit:.2f} "
        f"({status.percent_used:.0f}% used)"
    )
    month_left = status.month_remaining
    print(
        f"  month:  ${status.month_spent:.6f} spent + ${status.month_reserved:.6f} reserved; "
        f"${month_left:.6f} left of ${status.monthly_limit:.2f} "
        f"(projected ${status.projected_monthly:.2f})"
    )
    if status.warning_level is not None:
        print(f"  warning: {status.warning_level}% of a limit reached")
    if status.platform_paused:
        print(
            f"  PAUSED: RaptorFlow is paused by an operator ({status.paused_reason or 'no reason'})"
            ": every model call is refused until `raptorflow resume`"
        )
    return 0


def _problem(error: ValidationError) -> str:
    field, message = problems(error)[0]
    message = message.removeprefix("Value error, ")
    return message if field == "(top level)" else f"{field}: {message}"


def register_business(
    business_id: str,
    *,
    tier: str | None = None,
    name: str | None = None,
    overrides: dict[str, str | None] | None = None,
) -> tuple[Business, bool]:
    """Create a business, or change only what is given on one that exists (its members and
    other overrides are kept); an override given as None goes back to the tier's value.

    Returns:
        What was saved, and whether the business is new.
    """
    snapshot = business_ref(business_id).get()
    stored = (snapshot.to_dict() or {}) if snapshot.exists else None
    if stored is None and tier is None:
        raise CliError(f"business {business_id} is not registered yet: give its --tier")
    data = {key: value for key, value in (stored or {}).items() if key in Business.model_fields}
    data["business_id"] = business_id
    if tier is not None:
        data["tier"] = tier
    if name is not None:
        data["name"] = name
    kept = dict(data.get("overrides") or {})
    for field, value in (overrides or {}).items():
        if value is None:
            kept.pop(field, None)
        else:
            kept[field] = value
    data["overrides"] = kept
    try:
        business = Business.model_validate(data)
    except ValidationError as error:
        raise CliError(_problem(error)) from error
    saved = save_business(business)
    # Clients listen to the published status: a new limit shows there now, not at the next spend.
    publish(saved.business_id)
    return saved, stored is None


def _register(args: argparse.Namespace) -> int:
    given = {
        field: getattr(args, field)
        for field in ("daily_limit_usd", "monthly_limit_usd", "max_icps")
        if getattr(args, field) is not None
    }
    overrides = {field: None if value == "tier" else value for field, value in given.items()}
    business, new = register_business(
        args.business_id, tier=args.tier, name=args.name, overrides=overrides
    )
    limits = business.limits
    print(
        f"Business {business.business_id} {'registered' if new else 'updated'} on the "
        f"{business.tier} tier: ${limits.daily_limit_usd}/day, ${limits.monthly_limit_usd}/month,"
        f" up to {limits.max_icps} ICPs, models {', '.join(sorted(limits.model_tiers))}; "
        f"members: {', '.join(business.members) or 'none'}."
    )
    return 0


def _members(args: argparse.Namespace) -> int:
    business = get_business(args.business_id)
    if args.action == "add":
        try:
            # Adding an owner again keeps them an owner unless they are demoted on purpose.
            owner = args.owner or args.uid in business.owners
            change = members.MemberChange(uid=args.uid, owner=owner)
        except ValidationError as error:
            raise CliError(_problem(error)) from error
        found = members.add_member(business.business_id, change, by=None)
    elif args.action == "remove":
        found = members.remove_member(business.business_id, args.uid, by=None)
    else:
        found = members.members_of(business)
    listed = [f"{uid} (owner)" if uid in found.owners else uid for uid in found.members]
    print(f"Members of {business.business_id}: {', '.join(listed) or 'none'}")
    return 0


def _usage(args: argparse.Namespace) -> int:
    today = dt.datetime.now(dt.UTC).date()
    try:
        first, last, group_by = reports.parse_range(args.start, args.end, args.by, today)
    except AppError as error:
        raise CliError(f"--{error.field}: {error.message}") from error
    get_business(args.business_id)  # a clear error for a business that is not registered
    found = reports.usage_report(args.business_id, first, last, group_by)
    if args.csv:
        sys.stdout.write(reports.to_csv(found))
    else:
        print(f"Usage of {args.business_id}, {found.from_day} to {found.to_day}, by {group_by}:")
        print(f"  {group_by:<28}{'calls':>8}{'tokens in':>12}{'tokens out':>12}{'cost':>14}")
        for row in [*found.groups, found.total]:
            print(
                f"  {row.group:<28}{row.calls:>8}{row.input_tokens:>12,}{row.output_tokens:>12,}"
                f"{format_usd(row.cost_nanos):>14}"
            )
    if args.plot:
        plot_daily_cost(
            args.plot, args.business_id, reports.daily_cost_by_model(args.business_id, first, last)
        )
        print(f"Plot written to {args.plot}", file=sys.stderr if args.csv else sys.stdout)
    return 0


def _report(args: argparse.Namespace) -> int:
    sys.stdout.write(report(args.run_id, args.format))
    return 0


def _router_report(args: argparse.Namespace) -> int:
    print(router_report(args.business, args.start, args.end).table())
    return 0


def _prompt_log(path: Path) -> dict[str, str]:
    """call key -> prompt, from a JSONL file of {"call_key": ..., "prompt": ...} lines."""
    found: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise CliError(f"--prompts: cannot read {path}: {error.strerror}") from error
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            found[str(item["call_key"])] = str(item["prompt"])
        except (ValueError, KeyError, TypeError) as error:
            raise CliError(
                f"--prompts: {path}:{number} must be a JSON object with call_key and prompt"
            ) from error
    return found


def _router_feedback(args: argparse.Namespace) -> int:
    prompts = _prompt_log(args.prompts) if args.prompts else None
    lines = router_feedback(args.business, args.start, args.end, prompts)
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        with_prompt = sum("prompt" in line for line in lines)
        print(f"{len(lines)} calls ({with_prompt} with a prompt) written to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _web(args: argparse.Namespace) -> int:
    # Local-only pieces (Node, the Auth emulator): imported here, never on a function's path.
    from local import auth_emulator, webapp

    print("Starting the local stack with the Auth emulator and the web app...")
    function_env = {"OFFLINE_LATENCY_MS": os.environ.get("OFFLINE_LATENCY_MS", "800")}
    try:
        with (
            webapp.running(port=args.port, function_env=function_env) as web,
            talking_to(web.local.client_env),
        ):
            sample = _load_business(SAMPLE)
            web.auth.create_user(WEB_USER, WEB_EMAIL, WEB_PASSWORD)
            save_business(
                Business(
                    business_id=sample.business_id,
                    name=sample.name,
                    tier="enterprise",
                    members=[WEB_USER],
                    owners=[WEB_USER],
                )
            )
            if _offline():
                print(OFFLINE_BANNER)
            print(
                f"\nThe web app: {web.web.url}\n"
                f"  Sign in as {WEB_EMAIL} / {WEB_PASSWORD} (owner of {sample.business_id}),"
                f" or create an account.\n"
                f"  API: {web.api_url}/v1/openapi.json   Logs: .local/logs/\n"
                "Press Ctrl-C to stop."
            )
            threading.Event().wait()
    except (auth_emulator.AuthEmulatorError, webapp.WebAppError) as error:
        raise CliError(str(error)) from error
    return 0


def _pause(args: argparse.Namespace) -> int:
    set_paused(True, args.reason)
    print(
        f"RaptorFlow is paused for every business: {args.reason}. Runs under way stop at their "
        "next budget check; `raptorflow resume` lifts it."
    )
    return 0


def _resume(_args: argparse.Namespace) -> int:
    set_paused(False)
    print("RaptorFlow is running again.")
    return 0


def _completion(args: argparse.Namespace) -> int:
    print(completion_script(parser()))
    return 0


def _version() -> str:
    try:
        return importlib.metadata.version("raptorflow")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="raptorflow", description=__doc__.split("\n\n")[0])
    root.add_argument("--version", action="version", version=f"raptorflow {_version()}")
    commands = root.add_subparsers(dest="command", required=True)

    def command(
        name: str, handler: Callable[[argparse.Namespace], int], text: str, *, backend: bool = True
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(handler=handler, backend=backend)
        return sub

    run = command("run", _run, "start an analysis and watch it to the end", backend=False)
    run.add_argument("business", nargs="?", type=Path, help="business JSON (default: a sample)")
    run.add_argument("--local", action="store_true", help="run on a local stack started for it")
    run.add_argument(
        "--tier",
        choices=TIERS,
        help="with --local: the tier to register the business on (default: enterprise)",
    )
    for name, handler, text in (
        ("watch", _watch, "follow a run live, then export its results"),
        ("cancel", _cancel, "stop a run at its next check"),
        ("status", _status, "a run's state and totals"),
    ):
        sub = command(name, handler, text)
        sub.add_argument("run_id", type=run_id_arg)
        if name == "status":
            sub.add_argument(
                "--json", action="store_true", help="as JSON, with the step, ETA and tokens"
            )
    budget = command("budget", _budget, "a business's budget right now")
    budget.add_argument("business_id", type=business_id_arg)
    budget.add_argument("--json", action="store_true", help="as JSON")
    register = command("register", _register, "register a business, or change only what is given")
    register.add_argument("business_id", type=business_id_arg)
    register.add_argument("--tier", choices=TIERS, help="required for a new business")
    register.add_argument("--name", type=text_arg)
    for option, what in (
        ("--daily-limit-usd", "daily limit"),
        ("--monthly-limit-usd", "monthly limit"),
        ("--max-icps", "ICP limit (3-9)"),
    ):
        register.add_argument(
            option, help=f"override the tier's {what}; 'tier' goes back to the tier's value"
        )
    members = command("members", _members, "list, add or remove the members of a business")
    actions = members.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="the members (owners marked)").add_argument(
        "business_id", type=business_id_arg
    )
    for action, text in (("add", "let a Firebase uid use the business"), ("remove", "revoke it")):
        sub = actions.add_parser(action, help=text)
        sub.add_argument("business_id", type=business_id_arg)
        sub.add_argument("uid")
        if action == "add":
            sub.add_argument("--owner", action="store_true", help="may also manage members")
    pause = command("pause", _pause, "operator kill switch: refuse every new model call")
    pause.add_argument("--reason", required=True, type=text_arg)
    command("resume", _resume, "lift the kill switch")
    usage = command("usage", _usage, "a business's usage (from its usage records)")
    usage.add_argument("business_id", type=business_id_arg)
    usage.add_argument("--by", choices=list(reports.GROUP_FIELDS), default="model")
    usage.add_argument("--from", dest="start", metavar="DATE", help="first day (default: the 1st)")
    usage.add_argument("--to", dest="end", metavar="DATE", help="last day (default: today)")
    usage.add_argument("--csv", action="store_true", help="as CSV (sums to the totals)")
    usage.add_argument("--plot", type=Path, metavar="FILE.png", help="cost per day by model")
    document = command("report", _report, "a run's analysis as a strategy document")
    document.add_argument("run_id", type=run_id_arg)
    document.add_argument("--format", choices=["md", "html"], default="md")
    outcomes = command(
        "router-report",
        _router_report,
        "how calls ended (first try, repaired, fell back, escalated, failed)",
    )
    outcomes.add_argument("--business", type=business_id_arg, help="one business (default: all)")
    outcomes.add_argument("--from", dest="start", type=date_arg, metavar="DATE")
    outcomes.add_argument("--to", dest="end", type=date_arg, metavar="DATE")
    feedback = command(
        "router-feedback", _router_feedback, "each call's attempts as router training data"
    )
    feedback.add_argument("--business", type=business_id_arg, help="one business (default: all)")
    feedback.add_argument("--from", dest="start", type=date_arg, metavar="DATE")
    feedback.add_argument("--to", dest="end", type=date_arg, metavar="DATE")
    feedback.add_argument(
        "--prompts", type=Path, metavar="FILE", help="JSONL of call_key and prompt to join"
    )
    feedback.add_argument("--out", type=Path, metavar="FILE", help="default: standard output")
    web = command("web", _web, "serve the web app on a local stack until Ctrl-C", backend=False)
    web.add_argument("--port", type=int, default=8080, help="the web app's port (default 8080)")
    completion = command(
        "completion", _completion, "print a shell completion script", backend=False
    )
    completion.add_argument("shell", choices=["bash"])
    return root


def _quiet_stdout() -> None:
    # The reader went away (`| head`): send what is still buffered nowhere, so that Python's
    # own flush at exit does not complain either (docs.python.org/3/library/signal.html,
    # "Note on SIGPIPE").
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exit:  # a usage error (argparse printed it), --help or --version
        return exit.code if isinstance(exit.code, int) else EXIT_ERROR
    try:
        if args.backend:
            connect()
        return int(args.handler(args))
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    except (CliError, AppError, EmulatorError, stack.StackError) as error:
        code = f" ({error.code})" if isinstance(error, AppError) else ""
        return _fail(f"{error}{code}")
    except google.auth.exceptions.DefaultCredentialsError:
        return _fail(NO_BACKEND)
    except google_errors.RetryError as error:
        return _fail(f"Google Cloud did not answer in time: {error.message}")
    except google_errors.GoogleAPICallError as error:
        return _fail(f"Google Cloud refused the request ({error.code}): {error.message}")
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _fail(message: str) -> int:
    print(f"error: {redact(message)}", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
