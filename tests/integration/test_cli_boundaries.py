"""The `raptorflow` CLI as a new user meets it (issue 13): every failure is one clear line, every
command does what it says and nothing more, and live state reads as what it is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.analysis.launch import start_run
from common.budget.ledger import BudgetLedger
from common.budget.status import STATUS
from common.models import BusinessInput
from common.money import nanos
from common.platform.settings import get_settings
from common.platform.store import db
from common.runs import documents
from common.tenants.businesses import business_ref, get_business
from local import stack
from local.cli import main
from local.stack import LocalStack
from tests.protocol.llm.servers import closed_port
from workflows.engine import VirtualClock

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.emulator


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`raptorflow ARGS` in a process of its own, as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", "local.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def bare_env(tmp_path: Path) -> dict[str, str]:
    """An environment with no stack and no Google credentials (and no look for a metadata
    server: this machine is no Compute Engine VM)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in {"FIRESTORE_EMULATOR_HOST", "EXECUTIONS_ENDPOINT", "GOOGLE_APPLICATION_CREDENTIALS"}
    }
    env.update(
        HOME=str(tmp_path),
        CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),
        NO_GCE_CHECK="true",
        GOOGLE_CLOUD_PROJECT=f"bare-{uuid.uuid4().hex[:8]}",
        DOTENV_PATH=str(tmp_path / "absent.env"),
    )
    return env


@pytest.fixture
def business(
    business_input: BusinessInput, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A business file with an id of its own; exports land in tmp_path/.local/runs."""
    monkeypatch.chdir(tmp_path)
    given = business_input.model_copy(update={"business_id": f"cli-{uuid.uuid4().hex[:10]}"})
    path = tmp_path / "business.json"
    path.write_text(given.model_dump_json())
    return path


def business_id_of(path: Path) -> str:
    return str(json.loads(path.read_text())["business_id"])


def wait_until_running(run_id: str) -> documents.Run:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = documents.get_run(run_id)
        if run.status == "running" and run.phase is not None:
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not start")


# --- No stack, no credentials ------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["status", "0" * 32],
        ["budget", "acme"],
        ["run"],
        ["watch", "0" * 32],
        ["register", "acme", "--tier", "pro"],
        ["pause", "--reason", "incident"],
    ],
    ids=lambda args: args[0],
)
def test_without_a_stack_or_credentials_a_command_says_what_to_set(
    args: list[str], bare_env: dict[str, str]
) -> None:
    done = cli(*args, env=bare_env)
    assert done.returncode == 2
    assert done.stderr.startswith("error: no Firestore to talk to"), done.stderr
    assert "raptorflow run --local" in done.stderr and "GOOGLE_CLOUD_PROJECT" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 3
    assert done.stdout == ""


def test_a_dead_emulator_address_is_named_at_once(bare_env: dict[str, str]) -> None:
    done = cli(
        "status",
        "0" * 32,
        env={**bare_env, "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{closed_port()}"},
    )
    assert done.returncode == 2
    assert "no Firestore emulator answers at 127.0.0.1:" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1


def test_run_on_an_emulator_without_a_workflow_engine_says_so(
    on_stack: LocalStack,
    business: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("EXECUTIONS_ENDPOINT")
    get_settings.cache_clear()
    assert main(["run", str(business)]) == 2
    assert "EXECUTIONS_ENDPOINT is not set" in capsys.readouterr().err


def test_tier_without_local_is_refused_not_ignored(
    business: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(business), "--tier", "basic"]) == 2
    captured = capsys.readouterr()
    assert "--tier applies with --local only" in captured.err
    assert f"raptorflow register {business_id_of(business)} --tier basic" in captured.err
    assert "started" not in captured.out


# --- Businesses ----------------------------------------------------------------------------


def test_register_changes_only_what_it_is_given_and_members_are_managed_apart(
    on_stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    business_id = f"yoga-{uuid.uuid4().hex[:8]}"
    assert main(["register", business_id, "--tier", "pro", "--name", "Northwind Yoga"]) == 0
    assert main(["members", "add", business_id, "uid-alice", "--owner"]) == 0
    assert main(["members", "add", business_id, "uid-bob"]) == 0
    assert main(["members", "add", business_id, "uid-alice"]) == 0  # stays an owner
    capsys.readouterr()

    assert main(["register", business_id, "--tier", "enterprise"]) == 0
    assert "updated on the enterprise tier" in capsys.readouterr().out
    stored = get_business(business_id)
    assert stored.name == "Northwind Yoga" and stored.tier == "enterprise"
    assert sorted(stored.members) == ["uid-alice", "uid-bob"] and stored.owners == ["uid-alice"]

    assert main(["register", business_id, "--daily-limit-usd", "20"]) == 0
    assert main(["register", business_id, "--max-icps", "5"]) == 0
    stored = get_business(business_id)
    assert stored.tier == "enterprise" and stored.limits.daily_limit_usd == 20
    assert stored.limits.max_icps == 5 and sorted(stored.members) == ["uid-alice", "uid-bob"]
    # What clients listen to shows the new limit at once, before anything is spent.
    published = db().collection(STATUS).document(business_id).get().to_dict() or {}
    assert published["daily_limit"] == 20
    assert main(["register", business_id, "--daily-limit-usd", "tier"]) == 0
    stored = get_business(business_id)
    assert stored.overrides.daily_limit_usd is None and stored.overrides.max_icps == 5

    assert main(["members", "remove", business_id, "uid-bob"]) == 0
    capsys.readouterr()
    assert main(["members", "list", business_id]) == 0
    assert capsys.readouterr().out == f"Members of {business_id}: uid-alice (owner)\n"
    assert main(["members", "add", business_id, "not a uid!"]) == 2
    assert "uid: String should match pattern" in capsys.readouterr().err
    assert get_business(business_id).members == ["uid-alice"]

    fresh = f"fresh-{uuid.uuid4().hex[:8]}"
    assert main(["register", fresh, "--daily-limit-usd", "5"]) == 2
    assert "not registered yet: give its --tier" in capsys.readouterr().err
    assert not business_ref(fresh).get().exists


def test_a_daily_limit_above_the_monthly_one_is_refused(
    on_stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    business_id = f"x2-{uuid.uuid4().hex[:8]}"
    # basic is $300 a month
    assert main(["register", business_id, "--tier", "basic", "--daily-limit-usd", "500"]) == 2
    assert "daily_limit_usd $500 exceeds monthly_limit_usd $300" in capsys.readouterr().err
    assert not business_ref(business_id).get().exists

    assert main(["register", business_id, "--tier", "basic", "--daily-limit-usd", "20"]) == 0
    assert main(["register", business_id, "--monthly-limit-usd", "10"]) == 2  # effective values
    assert "daily_limit_usd $20 exceeds monthly_limit_usd $10" in capsys.readouterr().err
    assert get_business(business_id).limits.monthly_limit_usd == 300


def test_budget_shows_reserved_money_next_to_spent(
    on_stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    business_id = f"held-{uuid.uuid4().hex[:8]}"
    assert main(["register", business_id, "--tier", "pro"]) == 0
    ledger = BudgetLedger(get_business(business_id))
    ledger.reserve(
        key=f"{business_id}:call", model="gpt-5-mini", tier="mini", upper_bound_nanos=nanos("0.25")
    )
    ledger.close()  # the end of the request: only what the call in flight holds stays out
    capsys.readouterr()
    assert main(["budget", business_id]) == 0
    out = capsys.readouterr().out
    assert "today:  $0.000000 spent + $0.250000 held by work in flight" in out
    assert "$49.750000 left of $50.00" in out
    assert "PAUSED" not in out


# --- Runs ----------------------------------------------------------------------------------


def test_watch_of_a_run_that_never_existed_says_so(
    on_stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["watch", "0123456789abcdef" * 2]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "deleted" not in err
    assert main(["watch", "nonexistent123"]) == 2
    assert "'nonexistent123' is not a run id (32 hexadecimal characters)" in capsys.readouterr().err


def test_status_of_a_live_run_and_a_pause_that_stops_it(
    on_stack: LocalStack,
    business: Path,
    business_input: BusinessInput,
    capsys: pytest.CaptureFixture[str],
) -> None:
    business_id = business_id_of(business)
    assert main(["register", business_id, "--tier", "pro"]) == 0
    run_id = start_run(business_input.model_copy(update={"business_id": business_id}))
    wait_until_running(run_id)
    capsys.readouterr()

    assert main(["status", run_id]) == 0
    out = capsys.readouterr().out
    assert f"Run {run_id}: RUNNING " in out and " in -" not in out and "so far" in out
    assert main(["status", run_id, "--json"]) == 0
    live = json.loads(capsys.readouterr().out)
    assert live["status"] == "running" and live["step"] and live["phase"]
    assert {"eta_seconds", "input_tokens", "output_tokens"} <= live.keys()

    assert main(["pause", "--reason", "provider incident"]) == 0
    try:
        assert main(["watch", run_id]) == 1
        out = capsys.readouterr().out
        assert f"Run {run_id}: STOPPED: RaptorFlow is paused by an operator" in out
        assert "budget exceeded" not in out.lower() and "BUDGET_EXCEEDED" not in out
        assert "why: RaptorFlow is paused by an operator: provider incident" in out
        assert documents.get_run(run_id).stop_reason == "platform_paused"
        assert main(["budget", business_id]) == 0
        assert "PAUSED: RaptorFlow is paused by an operator (provider incident)" in (
            capsys.readouterr().out
        )
    finally:
        assert main(["resume"]) == 0


def test_output_cut_short_by_a_closed_pipe_ends_quietly(
    on_stack: LocalStack, business_input: BusinessInput
) -> None:
    run_id = uuid.uuid4().hex
    documents.run_ref(run_id).create(documents.new_run_document(run_id, business_input, "pro"))
    for args in (["status", run_id, "--json"], ["watch", run_id]):
        # As `raptorflow ... | head` when head has gone: the reader's end is closed first.
        process = subprocess.Popen(
            [sys.executable, "-m", "local.cli", *args],
            cwd=ROOT,
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()
        err = process.stderr.read().decode()
        assert process.wait(timeout=60) == 141, err
        assert err == "", err


def test_version_and_shell_completion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == "raptorflow 0.1.0\n"
    script = subprocess.run(
        [sys.executable, "-m", "local.cli", "completion", "bash"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def complete(*words: str) -> str:
        line = " ".join(words)
        probe = (
            f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _raptorflow; "
            'echo "${COMPREPLY[*]}"'
        )
        return subprocess.run(
            ["bash", "-c", probe], capture_output=True, text=True, check=True
        ).stdout.strip()

    assert complete("raptorflow", "sta") == "status"
    assert complete("raptorflow", "status", "--j") == "--json"
    assert complete("raptorflow", "members", "a") == "add"


# --- A provider that cannot be reached -----------------------------------------------------


@pytest.fixture
def dead_provider_stack(
    firestore_emulator: object,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[LocalStack]:
    """A stack whose OpenAI endpoint refuses connections; the workflow engine runs on virtual
    time (its retry backoff takes none) and the circuit breaker is off, so every retry asks."""
    from local import emulator

    assert isinstance(firestore_emulator, emulator.FirestoreEmulator)
    running = stack.start(
        f"dead-{uuid.uuid4().hex[:8]}",
        log_dir=tmp_path_factory.mktemp("dead-logs"),
        firestore=firestore_emulator,
        clock=VirtualClock(),
        function_env={
            "OPENAI_API_KEY": "sk-test-" + "k" * 40,
            "OPENAI_BASE_URL": f"http://127.0.0.1:{closed_port()}/v1",
            "LLM_CIRCUIT_COOLDOWN_SECONDS": "0",
            "DOTENV_PATH": "/nonexistent/.env",
        },
    )
    for name, value in running.client_env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield running
    running.stop()


def test_a_dead_provider_shows_each_retry_and_ends_with_one_readable_cause(
    dead_provider_stack: LocalStack, business: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["register", business_id_of(business), "--tier", "pro"]) == 0
    assert main(["run", str(business)]) == 1
    lines = capsys.readouterr().out.splitlines()
    progress = [line for line in lines if line.startswith("[")]
    assert sum("could not be reached" in line for line in progress) >= 2
    assert any("the workflow retries" in line for line in progress)
    why = [line for line in lines if line.startswith("  why: ")]
    assert len(why) == 1, lines
    assert why[0].startswith("  why: research failed: all providers failed: openai/")
    assert "connection_error" in why[0] and "HTTP 503 providers_unavailable" in why[0]
    assert "{" not in why[0] and len(why[0]) < 1000
    assert any(line.startswith("Run ") and ": FAILED" in line for line in lines)
