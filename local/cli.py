"""`raptorflow`: start, watch, cancel and inspect runs; check a business's budget.

    raptorflow run [BUSINESS.json] [--local]   start an analysis and watch it to the end
    raptorflow watch RUN_ID                    live progress of a run
    raptorflow cancel RUN_ID                   stop a run at its next check
    raptorflow status RUN_ID                   a run's state and totals
    raptorflow budget BUSINESS_ID              a business's budget right now
    raptorflow register BUSINESS_ID --tier T   register (or re-tier) a business, with overrides
    raptorflow pause --reason TEXT | resume    the operator kill switch for every business
    raptorflow router-report [--business B] [--from D] [--to D]
                                               how calls ended, by task type and model tier

`--local` starts the whole local stack for the run (Firestore emulator, every function,
the workflow engine) and stops it afterwards; without it the CLI talks to whatever the
environment configures (GOOGLE_CLOUD_PROJECT, FIRESTORE_EMULATOR_HOST, EXECUTIONS_ENDPOINT).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from common.analysis.launch import start_run
from common.analysis.phases import phase_ref
from common.budget.businesses import Business, save_business
from common.budget.check import get_budget_status
from common.budget.controls import set_paused
from common.budget.usage import router_report
from common.models import BusinessInput
from common.platform.errors import AppError, problems
from common.platform.secrets import find_secret
from common.platform.settings import get_settings
from common.runs import documents, lifecycle
from common.runs.documents import Run
from local import stack
from local.emulator import EmulatorError

SAMPLE = Path(__file__).with_name("samples") / "tidewater.json"
RESULTS_DIR = Path(".local") / "runs"
OFFLINE_BANNER = (
    "OFFLINE MODE: no OPENAI_API_KEY or GEMINI_API_KEY is set, so a deterministic offline\n"
    "provider answers every call. Its outputs are PLACEHOLDERS built from your business\n"
    "description; costs are what the routed models would charge for the same tokens."
)


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
        step = (run.step or run.status)[:60]
        line = f"[{bar}] {run.percent:3d}%  {step}  {eta}  ${run.cost_usd:.4f}"
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


def _export(run: Run) -> Path:
    """Write the run and every phase's output to .local/runs/RUN_ID.json."""
    phases: dict[str, Any] = {}
    for name in run.phases:
        snapshot = phase_ref(run.run_id, name).get()
        if snapshot.exists:
            phases[name] = (snapshot.to_dict() or {}).get("output")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{run.run_id}.json"
    summary = lifecycle.summarize(run).model_dump(mode="json")
    path.write_text(json.dumps({"summary": summary, "results": phases}, indent=2, default=str))
    return path


def print_summary(run: Run, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    summary = lifecycle.summarize(run)
    duration = f"{summary.duration_seconds:.1f} s" if summary.duration_seconds is not None else "-"
    out.write(f"\nRun {run.run_id}: {summary.status.upper()}")
    if summary.reason:
        out.write(f" ({summary.reason})")
    out.write(f" in {duration}, total cost ${summary.total_cost_usd:.6f}\n")
    if run.error and summary.status != "succeeded":
        out.write(f"  why: {run.error[:300]}\n")
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
    """Show live progress until the run ends, then the summary; returns the final state."""
    view = ProgressView(out)
    try:
        final = documents.watch(run_id, view.show)
    finally:
        view.close()
    print_summary(final, out)
    return final


def _run(args: argparse.Namespace) -> int:
    business = _load_business(args.business or SAMPLE)
    if args.local:
        print("Starting the local stack (Firestore emulator, functions, workflow engine)...")
        function_env = {"OFFLINE_LATENCY_MS": os.environ.get("OFFLINE_LATENCY_MS", "800")}
        with stack.running(function_env=function_env) as local:
            os.environ.update(local.client_env)
            get_settings.cache_clear()
            save_business(
                Business(business_id=business.business_id, name=business.name, tier=args.tier)
            )
            return _start_and_follow(business, local_note=local.firestore.host)
    return _start_and_follow(business, local_note=None)


def _start_and_follow(business: BusinessInput, local_note: str | None) -> int:
    if _offline():
        print(OFFLINE_BANNER)
    run_id = start_run(business)
    print(f"Run {run_id} started for {business.name}")
    final = follow(run_id)
    path = _export(final)
    print(
        f"  Exported: {path}" + (f" (the emulator at {local_note} stops now)" if local_note else "")
    )
    return 0 if final.status == "succeeded" else 1


def _status(args: argparse.Namespace) -> int:
    run = documents.get_run(args.run_id)
    if args.json:
        print(json.dumps(lifecycle.summarize(run).model_dump(mode="json"), indent=2))
    else:
        ProgressView().show(run)
        print_summary(run)
    return 0


def _cancel(args: argparse.Namespace) -> int:
    run = lifecycle.request_cancel(args.run_id)
    print(f"Cancellation requested: run {run.run_id} stops at its next check (now {run.status}).")
    return 0


def _budget(args: argparse.Namespace) -> int:
    print(json.dumps(get_budget_status(args.business_id).model_dump(mode="json"), indent=2))
    return 0


def _register(args: argparse.Namespace) -> int:
    overrides = {
        "daily_limit_usd": args.daily_limit_usd,
        "monthly_limit_usd": args.monthly_limit_usd,
        "max_icps": args.max_icps,
    }
    data = {"business_id": args.business_id, "name": args.name or "", "tier": args.tier}
    try:
        business = Business.model_validate({**data, "overrides": overrides})
    except ValidationError as error:
        field, message = problems(error)[0]
        raise CliError(f"{field}: {message}") from error
    save_business(business)
    limits = business.limits
    print(
        f"Business {args.business_id} registered on the {args.tier} tier: "
        f"${limits.daily_limit_usd}/day, ${limits.monthly_limit_usd}/month, "
        f"up to {limits.max_icps} ICPs, models {', '.join(sorted(limits.model_tiers))}."
    )
    return 0


def _pause(args: argparse.Namespace) -> int:
    set_paused(True, args.reason)
    print(f"RaptorFlow is paused for every business: {args.reason}")
    return 0


def _resume(_args: argparse.Namespace) -> int:
    set_paused(False)
    print("RaptorFlow is running again.")
    return 0


def _router_report(args: argparse.Namespace) -> int:
    print(router_report(args.business, args.start, args.end).table())
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="raptorflow", description=__doc__.split("\n\n")[0])
    commands = root.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start an analysis and watch it to the end")
    run.add_argument("business", nargs="?", type=Path, help="business JSON (default: a sample)")
    run.add_argument("--local", action="store_true", help="run on a local stack started for it")
    run.add_argument(
        "--tier",
        choices=["basic", "pro", "enterprise"],
        default="enterprise",
        help="tier to register the business on with --local (default: enterprise)",
    )
    run.set_defaults(handler=_run)
    for name, handler, text in (
        (
            "watch",
            lambda a: 0 if follow(a.run_id).status == "succeeded" else 1,
            "follow a run live",
        ),
        ("cancel", _cancel, "stop a run at its next check"),
        ("status", _status, "a run's state and totals"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("run_id")
        command.set_defaults(handler=handler)
        if name == "status":
            command.add_argument("--json", action="store_true", help="print the totals as JSON")
    budget = commands.add_parser("budget", help="a business's budget right now")
    budget.add_argument("business_id")
    budget.set_defaults(handler=_budget)
    register = commands.add_parser("register", help="register (or re-tier) a business")
    register.add_argument("business_id")
    register.add_argument("--tier", choices=["basic", "pro", "enterprise"], required=True)
    register.add_argument("--name")
    register.add_argument("--daily-limit-usd", help="override the tier's daily limit")
    register.add_argument("--monthly-limit-usd", help="override the tier's monthly limit")
    register.add_argument("--max-icps", help="override the tier's ICP limit (3-9)")
    register.set_defaults(handler=_register)
    pause = commands.add_parser("pause", help="operator kill switch: refuse every new task")
    pause.add_argument("--reason", required=True)
    pause.set_defaults(handler=_pause)
    commands.add_parser("resume", help="lift the kill switch").set_defaults(handler=_resume)
    report = commands.add_parser(
        "router-report", help="how calls ended (first try, repaired, fell back, failed)"
    )
    report.add_argument("--business", help="one business (default: all)")
    report.add_argument("--from", dest="start", type=dt.date.fromisoformat, help="YYYY-MM-DD")
    report.add_argument("--to", dest="end", type=dt.date.fromisoformat, help="YYYY-MM-DD")
    report.set_defaults(handler=_router_report)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except (CliError, AppError, EmulatorError, stack.StackError) as error:
        code = f" ({error.code})" if isinstance(error, AppError) else ""
        print(f"error: {error}{code}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
