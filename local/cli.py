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
    raptorflow report RUN_ID [--format md|html|pdf] [-o FILE]   the analysis as a document
    raptorflow router-report [--business B] [--from D] [--to D]
                                              how model calls ended, by task type and tier
    raptorflow router-feedback [--business B] [--from D --to D] [--prompts F] [--out F]
                                              each call's attempts as router training data (JSONL)
    raptorflow web [--port 8080]              the web app on a local stack, until Ctrl-C
    raptorflow up [--port 8080] | down        a local stack kept running in the background
    raptorflow token [--email E]              an ID token from that stack's Auth emulator
    raptorflow completion bash                `source <(raptorflow completion bash)` completes

`--local` starts the whole local stack for the run (Firestore emulator, every function,
the workflow engine) and stops it afterwards (or uses the stack of `up`); without it the CLI
talks to whatever the environment configures (GOOGLE_CLOUD_PROJECT, FIRESTORE_EMULATOR_HOST,
EXECUTIONS_ENDPOINT), else to the stack of `up` (.local/stack.json).
Every failure is one line saying what to set or start (exit status 2); a run that did not
succeed exits 1; output cut short by a closed pipe (`| head`) ends quietly.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import google.auth.exceptions
from google.api_core import exceptions as google_errors
from pydantic import ValidationError

from common.analysis.launch import start_run
from common.analysis.report import report
from common.backend import reports
from common.models import (
    BusinessInput,
)
from common.platform.errors import AppError, problems
from common.platform.secrets import find_secret, redact
from common.runs import documents, lifecycle
from local import businesses, devstack, emulator, pdf, processes, stack
from local.arguments import business_id_arg, completion_script, date_arg, run_id_arg, text_arg
from local.auth_emulator import AuthEmulatorError
from local.connection import NO_BACKEND, CliError, connect, talking_to
from local.emulator import EmulatorError
from local.runview import ProgressView, export, follow, print_summary, status_json
from local.webapp import WebAppError

SAMPLE = Path(__file__).with_name("samples") / "tidewater.json"
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


def _function_env() -> dict[str, str]:
    return {"OFFLINE_LATENCY_MS": os.environ.get("OFFLINE_LATENCY_MS", "800")}


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
        return _start_and_follow(business, local_note=None)[0]
    tier, function_env = args.tier or "enterprise", _function_env()
    if (up := devstack.running_state()) is not None:
        print(f"On the local stack of `raptorflow up` (project {up.project_id}).")
        with talking_to(up.client_env):
            businesses.register_business(business.business_id, tier=tier, name=business.name)
            return _start_and_follow(business, local_note=None)[0]
    print("Starting the local stack (Firestore emulator, functions, workflow engine)...")
    # Started on the data earlier stacks saved, and saved when the run has ended, so that
    # `raptorflow up` shows this run too.
    firestore = emulator.start(log_dir=stack.local_dir() / "logs", seed=devstack.firestore_seed())
    try:
        with (
            stack.running(function_env=function_env, firestore=firestore) as local,
            talking_to(local.client_env),
        ):
            businesses.register_business(business.business_id, tier=tier, name=business.name)
            code, run_id = _start_and_follow(business, local_note=local.firestore.host)
        devstack.save(firestore, None)  # the functions have stopped: nothing is half-written
    finally:
        firestore.stop()
    print(devstack.keep_exploring(run_id, business.business_id))
    return code


def _start_and_follow(business: BusinessInput, local_note: str | None) -> tuple[int, str]:
    run_id = start_run(business)  # first: when it cannot start, its error is all there is to say
    if _offline():
        print(OFFLINE_BANNER)
    print(f"Run {run_id} started for {business.name}")
    return _follow_and_export(run_id, local_note), run_id


def _follow_and_export(run_id: str, local_note: str | None = None) -> int:
    final = follow(run_id)
    path = export(final)
    print(f"  Exported: {path}" + (f" (the stack at {local_note} stops now)" if local_note else ""))
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


def _report(args: argparse.Namespace) -> int:
    # Checked before the report is built: a PDF is binary, and a terminal is no place for it.
    if args.format == "pdf" and args.output is None and sys.stdout.isatty():
        raise CliError("a PDF is binary: give --output FILE.pdf (or redirect the output)")
    page = report(args.run_id, "md" if args.format == "md" else "html")
    document = pdf.from_html(page) if args.format == "pdf" else page.encode()
    if args.output is None:
        if args.format == "pdf":
            sys.stdout.flush()
            sys.stdout.buffer.write(document)
            sys.stdout.buffer.flush()
        else:
            sys.stdout.write(page)
        return 0
    try:
        args.output.write_bytes(document)
    except OSError as error:
        raise CliError(f"cannot write {args.output}: {error.strerror}") from error
    print(f"Report written to {args.output}", file=sys.stderr)
    return 0


def _web(args: argparse.Namespace) -> int:
    print("Starting the local stack with the Auth emulator and the web app...")

    def ready(state: devstack.State) -> None:
        if _offline():
            print(OFFLINE_BANNER)
        print(devstack.describe(state) + "\nPress Ctrl-C to stop.", flush=True)

    devstack.serve(args.port, ready, _function_env())
    return 0


def _up(args: argparse.Namespace) -> int:
    print("Starting the local stack in the background (emulators, functions, web app)...")
    state, new = devstack.up(args.port)
    print(("" if new else "It was up already.\n") + devstack.describe(state))
    return 0


def _down(_args: argparse.Namespace) -> int:
    state = devstack.down()
    if state is None:
        print("No local stack is up.")
    else:
        print(f"The local stack is stopped; its data is kept in {devstack.data_dir()}.")
    return 0


def _token(args: argparse.Namespace) -> int:
    from local import auth_emulator

    state = devstack.running_state()
    if state is None:
        raise CliError("no local stack is up: `raptorflow up` starts one (with the Auth emulator)")
    try:
        print(auth_emulator.sign_in(state.auth, args.email, args.password))
    except auth_emulator.AuthEmulatorError as error:
        raise CliError(str(error)) from error
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
    budget = command("budget", businesses.budget_command, "a business's budget right now")
    budget.add_argument("business_id", type=business_id_arg)
    budget.add_argument("--json", action="store_true", help="as JSON")
    register = command(
        "register", businesses.register_command, "register a business, or change only what is given"
    )
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
    members = command(
        "members", businesses.members_command, "list, add or remove the members of a business"
    )
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
    pause = command(
        "pause", businesses.pause_command, "operator kill switch: refuse every new model call"
    )
    pause.add_argument("--reason", required=True, type=text_arg)
    command("resume", businesses.resume_command, "lift the kill switch")
    usage = command(
        "usage", businesses.usage_command, "a business's usage (from its usage records)"
    )
    usage.add_argument("business_id", type=business_id_arg)
    usage.add_argument("--by", choices=list(reports.GROUP_FIELDS), default="model")
    usage.add_argument("--from", dest="start", metavar="DATE", help="first day (default: the 1st)")
    usage.add_argument("--to", dest="end", metavar="DATE", help="last day (default: today)")
    usage.add_argument("--csv", action="store_true", help="as CSV (sums to the totals)")
    usage.add_argument("--plot", type=Path, metavar="FILE.png", help="cost per day by model")
    document = command("report", _report, "a run's analysis as a strategy document")
    document.add_argument("run_id", type=run_id_arg)
    document.add_argument(
        "--format",
        choices=["md", "html", "pdf"],
        default="md",
        help="Markdown, an HTML page (phones and print), or PDF (default md)",
    )
    document.add_argument(
        "-o", "--output", type=Path, metavar="FILE", help="write to FILE instead of the output"
    )
    outcomes = command(
        "router-report",
        businesses.router_report_command,
        "how calls ended (first try, repaired, fell back, escalated, failed)",
    )
    outcomes.add_argument("--business", type=business_id_arg, help="one business (default: all)")
    outcomes.add_argument("--from", dest="start", type=date_arg, metavar="DATE")
    outcomes.add_argument("--to", dest="end", type=date_arg, metavar="DATE")
    feedback = command(
        "router-feedback",
        businesses.router_feedback_command,
        "each call's attempts as router training data",
    )
    feedback.add_argument("--business", type=business_id_arg, help="one business (default: all)")
    feedback.add_argument("--from", dest="start", type=date_arg, metavar="DATE")
    feedback.add_argument("--to", dest="end", type=date_arg, metavar="DATE")
    feedback.add_argument(
        "--prompts", type=Path, metavar="FILE", help="JSONL of call_key and prompt to join"
    )
    feedback.add_argument("--out", type=Path, metavar="FILE", help="default: standard output")
    web = command("web", _web, "serve the web app on a local stack until Ctrl-C", backend=False)
    up = command("up", _up, "keep a local stack running in the background", backend=False)
    for sub in (web, up):
        sub.add_argument("--port", type=int, default=8080, help="the web app's port (default 8080)")
    command("down", _down, "stop the local stack of `raptorflow up`", backend=False)
    token = command("token", _token, "an ID token from the local stack's Auth emulator")
    token.add_argument("--email", default=devstack.DEMO_EMAIL, help="default: the demo owner")
    token.add_argument("--password", default=devstack.DEMO_PASSWORD)
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
        # A signal ends the command as a KeyboardInterrupt, so that what it started stops.
        with processes.interruptible():
            if args.handler in (_up, _down, _web, _token):
                return int(args.handler(args))
            with devstack.attached():  # the stack of `raptorflow up`, unless told otherwise
                if args.backend:
                    connect()
                return int(args.handler(args))
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    except (
        CliError,
        AppError,
        EmulatorError,
        AuthEmulatorError,
        WebAppError,
        stack.StackError,
        pdf.PdfError,
    ) as error:
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


def entry() -> NoReturn:
    """The `raptorflow` command: `main`, then an exit that no thread left behind by a client
    library (a Firestore listener, a gRPC pool) can hold up once everything has stopped."""
    code = main()
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
