"""The `raptorflow` CLI against the local stack, as a user types it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from common.models import (
    PHASE_ORDER,
    BusinessInput,
    CalendarWeek,
    ResearchOutput,
    SituationAnalysis,
)
from local.cli import OFFLINE_BANNER, main
from local.stack import LocalStack


@pytest.fixture
def business_file(
    business_input: BusinessInput, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.chdir(tmp_path)  # exports land in tmp_path/.local/runs
    business = business_input.model_copy(update={"business_id": f"cli-{uuid.uuid4().hex[:10]}"})
    path = tmp_path / "business.json"
    path.write_text(business.model_dump_json())
    return path


@pytest.mark.emulator
def test_run_shows_progress_and_a_summary_and_exports_the_results(
    on_stack: LocalStack, business_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    business_id = json.loads(business_file.read_text())["business_id"]
    assert main(["register", business_id, "--tier", "pro"]) == 0

    assert main(["run", str(business_file)]) == 0

    out = capsys.readouterr().out
    assert OFFLINE_BANNER.splitlines()[0] in out
    assert "100%" in out and "SUCCEEDED" in out
    for phase in PHASE_ORDER:
        assert f"  {phase} " in out
    assert "gpt-5 " not in out  # the pro tier has no full model: strategy was downgraded
    run_id = out.split("Run ")[1].split(" ")[0]
    export = Path(".local") / "runs" / f"{run_id}.json"
    exported = json.loads(export.read_text())
    assert list(exported["results"]) == list(PHASE_ORDER)
    assert exported["summary"]["status"] == "succeeded"
    # In the schema's field order, not the order Firestore hands a map back in.
    research = exported["results"]["research"]
    assert list(research) == list(ResearchOutput.model_fields)
    assert list(research["situation_analysis"]) == list(SituationAnalysis.model_fields)
    assert list(exported["results"]["content"]["calendar"][0]) == list(CalendarWeek.model_fields)

    export.unlink()
    assert main(["watch", run_id]) == 0  # an ended run: its summary at once, exported again
    assert "SUCCEEDED" in capsys.readouterr().out
    assert json.loads(export.read_text()) == exported

    assert main(["status", run_id, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["status"] == "succeeded" and status["percent"] == 100

    assert main(["budget", business_id, "--json"]) == 0
    budget = json.loads(capsys.readouterr().out)
    assert budget["tier"] == "pro" and budget["today_spent"] == pytest.approx(
        status["total_cost_usd"]
    )
    assert budget["today_reserved"] == 0

    assert main(["cancel", run_id]) == 2
    assert "already ended succeeded" in capsys.readouterr().err


@pytest.mark.emulator
def test_a_bad_business_file_is_explained_field_by_field(
    on_stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"business_id": "x y", "icp_count": 12}))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "business_id:" in err and "icp_count:" in err and "name: Field required" in err
    (tmp_path / "broken.json").write_text("{not json")
    assert main(["run", str(tmp_path / "broken.json")]) == 2
    assert "not valid JSON" in capsys.readouterr().err


@pytest.mark.emulator
def test_unknown_runs_and_businesses_are_reported_not_raised(
    on_stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = "0" * 32
    assert main(["status", missing]) == 2
    assert f"run {missing} does not exist" in capsys.readouterr().err
    assert main(["budget", "no-such-business"]) == 2
    assert "unknown_business" in capsys.readouterr().err


@pytest.mark.emulator
def test_operators_register_overrides_and_pause_everything(
    on_stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    business_id = f"ops-{uuid.uuid4().hex[:8]}"
    assert main(["register", business_id, "--tier", "basic", "--daily-limit-usd", "-5"]) == 2
    assert (
        "daily_limit_usd: Input should be greater than or equal to 0.01" in capsys.readouterr().err
    )
    assert main(["register", business_id, "--tier", "basic", "--daily-limit-usd", "2.5"]) == 0
    assert "$2.5/day" in capsys.readouterr().out
    assert main(["pause", "--reason", "provider incident"]) == 0
    assert main(["budget", business_id]) == 0
    capsys.readouterr()
    from common.budget.check import check_budget_before_task

    allowed, decision = check_budget_before_task(
        business_id, "sentence_summary", [{"role": "user", "content": "hello"}]
    )
    assert not allowed and decision.reason == "platform_paused"
    assert main(["resume"]) == 0
    allowed, _ = check_budget_before_task(
        business_id, "sentence_summary", [{"role": "user", "content": "hello"}]
    )
    assert allowed


def test_a_missing_java_is_a_clear_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert main(["run", "--local"]) == 2
    assert "Java was not found on PATH" in capsys.readouterr().err
