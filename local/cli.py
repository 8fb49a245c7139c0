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
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import shutil
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import google.auth.exceptions
from google.api_core import exceptions as google_errors
from pydantic import TypeAdapter, ValidationError

from common.analysis.launch import start_run
from common.analysis.phases import phase_ref
from common.analysis.report import report
from common.backend import access, reports
from common.budget.businesses import Business, business_ref, get_business, save_business
from common.budget.check import get_budget_status
from common.budget.controls import set_paused
from common.budget.usage import router_report
from common.models import (
    PHASE_ORDER,
    PHASE_OUTPUTS,
    BusinessInput,
    PhaseName,
    RunId,
    Slug,
    unicode_text,
)
from common.money import format_usd
from common.platform.errors import AppError, problems
from common.platform.secrets import find_secret, redact
from common.platform.settings import get_settings
from common.runs import documents, lifecycle
from common.runs.documents import Run
from local import stack
from local.emulator import EmulatorError

SAMPLE = Path(__file__).with_name("samples") / "tidewater.json"
WEB_USER, WEB_EMAIL, WEB_PASSWORD = "demo-owner", "owner@tidewater.example", "raptorflow"
RESULTS_DIR = Path(".local") / "runs"
OFFLINE_BANNER = (
    "OFFLINE MODE: no OPENAI_API_KEY or GEMINI_API_KEY is set, so a deterministic offline\n"
    "provider answers every call. Its outputs are PLACEHOLDERS built from your business\n"
    "description; costs are what the routed models would charge for the same tokens."
)
NO_BACKEND = (
    "no Firestore to talk to: FIRESTORE_EMULATOR_HOST is not set and no Google Cloud "
    "credentials were found.\n"
    "  Here: `raptorflow run --local` starts a local stack for one run; for other commands, "
    "set FIRESTORE_EMULATOR_HOST (and EXECUTIONS_ENDPOINT) to a stack you run.\n"
    "  Google Cloud: `gcloud auth application-default login` and set GOOGLE_CLOUD_PROJECT."
)
TIERS = ["basic", "pro", "enterprise"]
EXIT_ERROR, EXIT_BROKEN_PIPE, EXIT_INTERRUPTED = 2, 141, 130  # 141: 128 + SIGPIPE, as a shell


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


class ProgressView:
    """One live progress line on a terminal; a line per change when output is not a terminal."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self.last = ""

    def show(self, run: Run) -> None:
        width = 28
        filled = width * run.percent // 100
        bar = "█" * filled + "░" * (width - filled)
        eta = f"ETA {run.eta_seconds}s" if run.eta_seconds is not None else "ETA --"
        step = run.step or run.status
        line = redact(f"[{bar}] {run.percent:3d}%  {step}  {eta}  ${run.cost_usd:.4f}")
        if line == self.last:
            return
        self.last = line
        if self.tty:
            columns = shutil.get_terminal_size((120, 20)).columns
            self.out.write("\r\x1b[2K" + line[: columns - 1])
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.tty and self.last:
            self.out.write("\n")


# --- Arguments -------------------------------------------------------------------------------


def _checked(adapter: TypeAdapter[str], what: str) -> Callable[[str], str]:
    """An argparse type: the text if `adapter` accepts it, else a one-line usage error."""

    def check(text: str) -> str:
        try:
            return adapter.validate_python(text)
        except ValidationError:
            raise argparse.ArgumentTypeError(f"{text[:80]!r} is not {what}") from None

    return check


run_id_arg = _checked(TypeAdapter(RunId), "a run id (32 hexadecimal characters)")
business_id_arg = _checked(
    TypeAdapter(Slug),
    "a business id (2-63 lower-case letters, digits, '-' or '_', starting with a letter or digit)",
)


def date_arg(text: str) -> dt.date:
    """An argparse type: a date YYYY-MM-DD, else a one-line usage error."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a date YYYY-MM-DD") from None


def text_arg(text: str) -> str:
    """An argparse type for free text that is stored: Unicode (no lone surrogates from
    undecodable bytes), at most 500 characters."""
    try:
        unicode_text(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if len(text) > 500:
        raise argparse.ArgumentTypeError("at most 500 characters")
    return text


# --- Where the CLI talks to --------------------------------------------------------------------


def _reachable(address: str, what: str, variable: str) -> None:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=2):
            return
    except (OSError, ValueError):
        raise CliError(
            f"{what} answers at {address} ({variable}): start one "
            f"(`raptorflow run --local` starts a whole stack for one run) or unset {variable}"
        ) from None


def connect(*, executions: bool = False) -> None:
    """Fail now, in one line, when what the command needs is not there (instead of a client
    retrying for minutes against a closed port); missing credentials surface as `NO_BACKEND`."""
    emulator = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if emulator:
        _reachable(emulator, "no Firestore emulator", "FIRESTORE_EMULATOR_HOST")
    if not executions:
        return
    endpoint = get_settings().executions_endpoint
    if endpoint:
        _reachable(endpoint, "no workflow engine", "EXECUTIONS_ENDPOINT")
    elif emulator:
        raise CliError(
            "FIRESTORE_EMULATOR_HOST points at a local Firestore but EXECUTIONS_ENDPOINT is not "
            "set: set it to the local workflow engine (host:port), or use `raptorflow run --local`"
        )


# --- Runs ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _talking_to(env: dict[str, str]) -> Iterator[None]:
    """This process talks to a stack it started (its emulator, engine, project) until it stops;
    afterwards the environment is as it was (the CLI also runs inside other programs' processes,
    tests among them)."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()


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


def _in_schema_order(phase: PhaseName, output: Any) -> Any:
    # Firestore hands a map's fields back in an order of its own; the schema's is the one a
    # person reads (situation before threats, week 1 before week 12).
    try:
        return PHASE_OUTPUTS[phase].model_validate(output).model_dump(mode="json")
    except ValidationError:
        return output  # stored by an older schema: as it is


def export(run: Run) -> Path:
    """Write the run's summary and every finished phase's output, in the schema's field order
    and the phases' order, to .local/runs/RUN_ID.json."""
    results: dict[str, Any] = {}
    for name in PHASE_ORDER:
        snapshot = phase_ref(run.run_id, name).get()
        if snapshot.exists:
            results[name] = _in_schema_order(name, (snapshot.to_dict() or {}).get("output"))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{run.run_id}.json"
    summary = lifecycle.summarize(run).model_dump(mode="json")
    path.write_text(json.dumps({"summary": summary, "results": results}, indent=2, default=str))
    return path


def _tokens(run: Run) -> tuple[int, int]:
    """Input and output tokens of the phases finished so far."""
    done = run.phases.values()
    return (
        sum(int(p.get("input_tokens", 0)) for p in done),
        sum(int(p.get("output_tokens", 0)) for p in done),
    )


def status_json(run: Run) -> dict[str, Any]:
    """The run's totals with its live state (phase, step, ETA, tokens) after `percent`."""
    tokens_in, tokens_out = _tokens(run)
    live = {
        "phase": run.phase,
        "step": run.step,
        "eta_seconds": run.eta_seconds,
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "error": run.error,
    }
    answer: dict[str, Any] = {}
    for key, value in lifecycle.summarize(run).model_dump(mode="json").items():
        answer[key] = value
        if key == "percent":
            answer.update(live)
    return answer


def headline(run: Run) -> str:
    """What became of the run, in one line."""
    summary = lifecycle.summarize(run)
    if run.status not in documents.TERMINAL:
        eta = f", ETA {run.eta_seconds} s" if run.eta_seconds is not None else ""
        tokens_in, tokens_out = _tokens(run)
        return (
            f"Run {run.run_id}: {run.status.upper()} {run.percent}%, {run.step or '-'}{eta}, "
            f"${summary.total_cost_usd:.6f} so far, tokens {tokens_in:,} in / {tokens_out:,} out"
        )
    if run.status == "budget_exceeded" and run.stop_reason == lifecycle.PAUSED:
        outcome = "STOPPED: RaptorFlow is paused by an operator"
    else:
        outcome = summary.status.upper() + (f" ({summary.reason})" if summary.reason else "")
    duration = f"{summary.duration_seconds:.1f} s" if summary.duration_seconds is not None else "-"
    return f"Run {run.run_id}: {outcome} in {duration}, total cost ${summary.total_cost_usd:.6f}"


def print_summary(run: Run, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    summary = lifecycle.summarize(run)
    out.write(f"\n{headline(run)}\n")
    if run.error and summary.status != "succeeded":
        out.write(f"  why: {lifecycle.readable_error(run.error)}\n")
    header = f"{'phase':<12}{'model':<24}{'provider':<10}{'tokens in/out':>16}{'cost':>12}"
    out.write(f"\n  {header}{'time':>9}\n")
    for name, total in summary.phases.items():
        phase = run.phases.get(name, {})
        tokens = f"{phase.get('input_tokens', 0):,}/{phase.get('output_tokens', 0):,}"
        seconds = f"{(total.duration_ms or 0) / 1000:.1f} s"
        out.write(
            f"  {name:<12}{total.model or '-':<24}{total.provider or '-':<10}{tokens:>16}"
            f"{'$' + format(total.cost_usd, '.6f'):>12}{seconds:>9}\n"
        )
    out.write(f"\n  Models used: {', '.join(summary.models_used) or '-'}\n")
    for warning in summary.warnings:
        out.write(f"  Warning: {warning}\n")
    out.write(
        f"  Results: Firestore {summary.results_path} (project {get_settings().project_id})\n"
    )


def follow(run_id: str, out: TextIO | None = None) -> Run:
    """Show live progress until the run ends, then the summary; returns the final state.

    Raises:
        NotFound: there is no such run (`run_not_found`).
    """
    documents.get_run(run_id)  # a run that never existed says so (not "was deleted")
    view = ProgressView(out)
    try:
        final = documents.watch(run_id, view.show)
    finally:
        view.close()
    print_summary(final, out)
    return final


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
    with stack.running(function_env=function_env) as local, _talking_to(local.client_env):
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
        f"  today:  ${status.today_spent:.6f} spent + ${status.today_reserved:.6f} reserved by "
        f"calls under way; ${status.today_remaining:.6f} left of ${status.daily_limit:.2f} "
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
    return save_business(business), stored is None


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
            change = access.MemberChange(uid=args.uid, owner=owner)
        except ValidationError as error:
            raise CliError(_problem(error)) from error
        members = access.add_member(business.business_id, change)
    elif args.action == "remove":
        members = access.remove_member(business.business_id, args.uid)
    else:
        members = access.members_of(business)
    listed = [f"{uid} (owner)" if uid in members.owners else uid for uid in members.members]
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
        _plot(
            args.plot, args.business_id, reports.daily_cost_by_model(args.business_id, first, last)
        )
        print(f"Plot written to {args.plot}", file=sys.stderr if args.csv else sys.stdout)
    return 0


def _plot(path: Path, business_id: str, days: dict[str, dict[str, int]]) -> None:
    """Cost per day, stacked by model, as a PNG (matplotlib, without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    models = sorted({model for spend in days.values() for model in spend})
    labels = list(days)
    figure, axes = pyplot.subplots(figsize=(max(6.0, 0.35 * len(labels)), 4.0))
    bottom = [0.0] * len(labels)
    for model in models:
        heights = [days[day].get(model, 0) / 1e9 for day in labels]
        axes.bar(labels, heights, bottom=bottom, label=model)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    axes.set_title(f"{business_id}: cost per day by model (USD)")
    axes.set_ylabel("USD")
    axes.tick_params(axis="x", labelrotation=60, labelsize=7)
    if models:
        axes.legend()
    figure.tight_layout()
    try:
        figure.savefig(path, format="png")
    except OSError as error:
        raise CliError(f"cannot write {path}: {error.strerror}") from error
    finally:
        pyplot.close(figure)


def _report(args: argparse.Namespace) -> int:
    sys.stdout.write(report(args.run_id, args.format))
    return 0


def _router_report(args: argparse.Namespace) -> int:
    print(router_report(args.business, args.start, args.end).table())
    return 0


def _web(args: argparse.Namespace) -> int:
    # Local-only pieces (Node, the Auth emulator): imported here, never on a function's path.
    from local import auth_emulator, webapp

    print("Starting the local stack with the Auth emulator and the web app...")
    function_env = {"OFFLINE_LATENCY_MS": os.environ.get("OFFLINE_LATENCY_MS", "800")}
    try:
        with (
            webapp.running(port=args.port, function_env=function_env) as web,
            _talking_to(web.local.client_env),
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


def completion_script(root: argparse.ArgumentParser) -> str:
    """A bash completion script for `root`: its commands, then each command's options and
    sub-commands (files where nothing else fits)."""
    words: dict[str, list[str]] = {}
    for action in root._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                words[name] = [o for a in command._actions for o in a.option_strings] + [
                    sub
                    for a in command._actions
                    if isinstance(a, argparse._SubParsersAction)
                    for sub in a.choices
                ]
    cases = "\n".join(
        f'    {name}) COMPREPLY=($(compgen -W "{" ".join(found)}" -- "$cur")) ;;'
        for name, found in words.items()
    )
    return f"""_raptorflow() {{
  local cur="${{COMP_WORDS[COMP_CWORD]}}"
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "{" ".join(words)} --version --help" -- "$cur"))
    return
  fi
  case "${{COMP_WORDS[1]}}" in
{cases}
  esac
}}
complete -o default -F _raptorflow raptorflow"""


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
        "router-report", _router_report, "how calls ended (first try, repaired, fell back, failed)"
    )
    outcomes.add_argument("--business", type=business_id_arg, help="one business (default: all)")
    outcomes.add_argument("--from", dest="start", type=date_arg, metavar="DATE")
    outcomes.add_argument("--to", dest="end", type=date_arg, metavar="DATE")
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
