"""Following a run on a terminal: the live progress line, the summary, the status JSON, and
the export of its results (`raptorflow run`, `watch`, `status`)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from common.analysis.phases import phase_ref
from common.models import PHASE_ORDER, PHASE_OUTPUTS, PhaseName
from common.platform.secrets import redact
from common.platform.settings import get_settings
from common.runs import documents, lifecycle
from common.runs.documents import Run

RESULTS_DIR = Path(".local") / "runs"


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
