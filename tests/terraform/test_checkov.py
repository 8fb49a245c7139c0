"""checkov on terraform/, offline: no failing check unless terraform/.checkov.yaml lists it with a
reason, and no listed check that no longer fails (a stale skip hides nothing but confuses)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.terraform.planfile import ROOT, Plan

REQUIREMENTS = Path(__file__).with_name("checkov-requirements.txt")
SKIP_FILE = ROOT / "terraform" / ".checkov.yaml"
SKIP_LINE = re.compile(r"^\s*-\s*(CKV2?_[A-Z0-9_]+)\s*(?:#\s*reason:\s*(.*))?$")


@pytest.fixture(scope="session")
def checkov() -> Path:
    """checkov's executable in a venv of its own, created on first use (about 30 s)."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    # An empty XDG_CACHE_HOME counts as unset (XDG Base Directory spec), not as the working folder.
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    venv = cache / "raptorflow" / f"checkov-{digest}"
    executable = venv / "bin" / "checkov"
    if not executable.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        done = subprocess.run(
            [str(venv / "bin/pip"), "install", "--quiet", "-r", str(REQUIREMENTS)],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"could not install checkov:\n{done.stdout}{done.stderr}", pytrace=False)
    return executable


def run_checkov(checkov: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [str(checkov), *args, "--output", "json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        check=False,
    )
    # Exit 1 means failed checks, which the JSON lists; anything else is checkov itself failing.
    assert done.returncode in (0, 1), done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def skips_with_reasons() -> dict[str, str]:
    skips = {}
    for line in SKIP_FILE.read_text().splitlines():
        if match := SKIP_LINE.match(line):
            skips[match.group(1)] = (match.group(2) or "").strip()
    return skips


def test_every_skipped_check_has_a_reason() -> None:
    skips = skips_with_reasons()
    assert skips, f"{SKIP_FILE} lists no skipped check"
    for check, reason in skips.items():
        assert len(reason.split()) >= 5, f"{check} is skipped without a reason"


# A reason that says reads or access of data "are in Cloud Audit Logs".
AUDIT_LOG_CLAIM = re.compile(
    r"\b(access|reads?)\b[^;,]*\b(is|are)\b[^;,]*\bin (the )?Cloud Audit Logs", re.IGNORECASE
)


def test_no_skip_reason_relies_on_data_access_logs_that_are_off(plan: Plan) -> None:
    # Reads of objects are Data Access audit logs, off by default for Cloud Storage
    # (https://cloud.google.com/logging/docs/audit/configure-data-access); a reason may count on
    # them only if the plan turns them on.
    storage_reads_logged = any(
        audit.values["service"] in {"storage.googleapis.com", "allServices"}
        and any(log["log_type"] == "DATA_READ" for log in audit.values["audit_log_config"])
        for audit in plan.of_type("google_project_iam_audit_config")
    )
    for check, reason in skips_with_reasons().items():
        if AUDIT_LOG_CLAIM.search(reason):
            assert storage_reads_logged, f"{check}: {reason!r} counts on logs that are off"


def test_checkov_passes_with_the_committed_skip_file(checkov: Path) -> None:
    report = run_checkov(checkov, "--config-file", str(SKIP_FILE))
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 0
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in report["results"]["failed_checks"]
    ]
    assert not failed, "checks failing and not skipped with a reason:\n" + "\n".join(failed)


def test_every_skipped_check_still_fails_without_the_skip(checkov: Path, tmp_path: Path) -> None:
    # checkov reads .checkov.yaml from the scanned folder, so scan a copy without it.
    copy = tmp_path / "terraform"
    copy.mkdir()
    for source in (ROOT / "terraform").glob("*.tf"):
        shutil.copy(source, copy)
    report = run_checkov(
        checkov, "--directory", str(copy), "--framework", "terraform", "--skip-download"
    )
    failing = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert set(skips_with_reasons()) <= failing, "stale entries in the skip file"
