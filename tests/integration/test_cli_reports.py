"""`raptorflow usage` and `raptorflow report` (issue 14): what a business spent, as a table, a
CSV or a chart, and a run's analysis as a document."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import pty
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from common.analysis.phases import run_phase
from common.models import PHASE_ORDER
from common.tenants.businesses import Business
from local.cli import main
from tests.spending import spend

pytestmark = pytest.mark.emulator
DAY1 = dt.datetime(2026, 11, 3, 10, tzinfo=dt.UTC)


def test_usage_by_model_as_csv_sums_to_the_table_and_plots_per_day(
    register: Callable[..., Business],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    business = register("reporting", "enterprise")
    spend(business, 3_000_000, model="gpt-5-mini", tier="mini", when=DAY1)
    spend(business, 12_000_000, model="gpt-5", tier="full", when=DAY1)
    spend(business, 1_500_000, model="gpt-5-mini", tier="mini", when=DAY1 + dt.timedelta(days=2))
    period = ["--from", "2026-11-01", "--to", "2026-11-30"]

    assert main(["usage", "reporting", "--by", "model", *period]) == 0
    table = capsys.readouterr().out
    assert "gpt-5-mini" in table and "$0.016500" in table  # the total

    chart = tmp_path / "cost.png"
    assert main(["usage", "reporting", "--by", "day", *period, "--csv", "--plot", str(chart)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["group"], int(r["cost_nanos"])) for r in rows] == [
        ("2026-11-03", 15_000_000),
        ("2026-11-05", 1_500_000),
    ]
    assert sum(int(r["cost_nanos"]) for r in rows) == 16_500_000
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 5_000


def test_usage_refuses_a_bad_range_in_one_line(
    register: Callable[..., Business], capsys: pytest.CaptureFixture[str]
) -> None:
    register("reporting", "pro")
    assert main(["usage", "reporting", "--from", "2026-12-09", "--to", "2026-12-01"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "--from" in err


def test_report_prints_the_analysis_as_markdown_or_html_or_writes_a_pdf(
    new_run: Callable[..., str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run_id = new_run()
    for phase in PHASE_ORDER:
        run_phase(run_id, phase)

    assert main(["report", run_id]) == 0
    assert "## 12-week content calendar" in capsys.readouterr().out
    assert main(["report", run_id, "--format", "html"]) == 0
    assert capsys.readouterr().out.startswith("<!doctype html>")
    document = tmp_path / "strategy.pdf"
    assert main(["report", run_id, "--format", "pdf", "--output", str(document)]) == 0
    assert f"Report written to {document}" in capsys.readouterr().err
    assert document.read_bytes().startswith(b"%PDF-")
    assert main(["report", run_id, "--output", str(tmp_path / "missing" / "x.md")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_a_pdf_is_not_written_to_a_terminal(firestore_emulator: object) -> None:
    terminal, screen = pty.openpty()  # the command's output is a terminal, as in a shell
    try:
        done = subprocess.run(
            [sys.executable, "-m", "local.cli", "report", "0" * 32, "--format", "pdf"],
            stdout=screen,
            stderr=subprocess.PIPE,
            cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, "GOOGLE_CLOUD_PROJECT": "demo-terminal"},
            timeout=120,
            check=False,
        )
    finally:
        os.close(screen)
        os.close(terminal)
    assert done.returncode == 2
    assert done.stderr.decode().strip() == (
        "error: a PDF is binary: give --output FILE.pdf (or redirect the output)"
    )
