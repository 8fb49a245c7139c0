"""The developer's local stack as a person uses it from a shell: `raptorflow run --local` (what
`make run` runs), then `raptorflow up`, then the tour of the README (status, report, usage,
budget, a token for curl), then `raptorflow down`; and Ctrl-C or SIGTERM, during start-up or
mid-run, leave no process behind.

Each command runs as the installed `raptorflow` script in a process of its own, with an
environment that names no backend (as a new shell), its own local folder, and a tag in its
environment that every process it starts inherits: a process left behind is found by the tag
in /proc/*/environ, whichever session or process group it ran in.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from local.cli import main
from local.processes import free_port

pytestmark = pytest.mark.emulator
ROOT = Path(__file__).resolve().parents[2]
RAPTORFLOW = Path(sys.executable).with_name("raptorflow")
TAG = "RAPTORFLOW_TEST_TAG"
# A liveness bound, not a timing: a command that does not end within it has hung.
LIVENESS_SECONDS = 300


def tagged(tag: str) -> dict[int, str]:
    """Every process whose environment carries the tag: its pid and command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if f"{TAG}={tag}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                found[int(entry.name)] = command[:160]
        except OSError:
            continue  # it ended meanwhile, or is not ours to read
    return found


class Shell:
    """Runs `raptorflow` as a user's shell would, in a local folder of its own."""

    def __init__(self, local_dir: Path) -> None:
        self.tag = uuid.uuid4().hex
        self.local_dir = local_dir
        self.env = {
            name: value
            for name, value in os.environ.items()
            if name
            not in {
                "FIRESTORE_EMULATOR_HOST",
                "GOOGLE_CLOUD_PROJECT",
                "EXECUTIONS_ENDPOINT",
                "FIREBASE_AUTH_EMULATOR_HOST",
            }
        }
        self.env.update(
            {
                TAG: self.tag,
                "RAPTORFLOW_LOCAL_DIR": str(local_dir),
                "DOTENV_PATH": "/nonexistent/.env",
                "OFFLINE_LATENCY_MS": "0",
            }
        )

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(RAPTORFLOW), *args],
            cwd=self.local_dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=LIVENESS_SECONDS,
            check=False,
        )

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        """The command in a session of its own, as a terminal's foreground job (so that a
        signal to its process group is a Ctrl-C)."""
        return subprocess.Popen(
            [str(RAPTORFLOW), *args],
            cwd=self.local_dir,
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def left(self) -> list[str]:
        return list(tagged(self.tag).values())


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Shell]:
    running = Shell(tmp_path)
    yield running
    # Whatever a failed test left running is stopped (and the test has said so).
    if (tmp_path / "stack.json").exists():
        running("down")
    for pid in tagged(running.tag):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_for(process: subprocess.Popen[str], seen: Callable[[str], bool]) -> str:
    """The command's output until a line satisfies `seen` (or the command ends)."""
    assert process.stdout is not None
    output = ""
    for line in process.stdout:
        output += line
        if seen(line):
            return output
    raise AssertionError(f"ended with {process.wait()} before the line looked for:\n{output}")


def test_make_run_then_up_then_the_tour_of_the_readme(
    shell: Shell, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `make run` and `up` in this process (as the other CLI tests run commands), from a shell's
    # environment: no backend named, the stack's local folder, the tag its children inherit.
    for name in ("FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "EXECUTIONS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    for name in (TAG, "RAPTORFLOW_LOCAL_DIR", "OFFLINE_LATENCY_MS"):
        monkeypatch.setenv(name, shell.env[name])
    monkeypatch.chdir(shell.local_dir)
    assert main(["run", "--local"]) == 0
    ran = capsys.readouterr().out
    run_id = ran.split("Run ")[1].split(" ")[0]
    assert "`.venv/bin/raptorflow up` starts a stack on it" in ran
    assert shell.left() == [], "make run left processes behind"

    assert main(["up", "--port", str(free_port())]) == 0
    up = capsys.readouterr().out
    state = json.loads((shell.local_dir / "stack.json").read_text())
    for shown in (state["web_url"], state["api_url"], state["firestore"], state["auth"]):
        assert shown in up
    assert "TOKEN=$(.venv/bin/raptorflow token)" in up
    assert "It was up already." in shell("up").stdout  # one stack, not two

    # The tour from a new shell, with nothing set: the state file says where the stack is.
    status = shell("status", run_id, "--json")
    assert status.returncode == 0, status.stderr
    totals = json.loads(status.stdout)
    assert totals["status"] == "succeeded" and totals["percent"] == 100
    # `make run` again: on this stack now, which keeps its run.
    again = shell("run", "--local")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "On the local stack of `raptorflow up`" in again.stdout
    second = again.stdout.split("Run ")[1].split(" ")[0]

    # And in this process again.
    assert main(["report", run_id, "--format", "html"]) == 0
    assert "Marketing strategy: Tidewater Coffee Co." in capsys.readouterr().out
    assert main(["status", second, "--json"]) == 0
    totals_second = json.loads(capsys.readouterr().out)
    assert main(["usage", "tidewater-coffee", "--csv"]) == 0
    rows = [line.split(",") for line in capsys.readouterr().out.splitlines()[1:]]
    spent = totals["total_cost_usd"] + totals_second["total_cost_usd"]
    assert sum(int(row[4]) for row in rows) == pytest.approx(spent * 1e9, abs=2)
    assert main(["budget", "tidewater-coffee", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["today_spent"] == pytest.approx(spent)

    # The token recipe, and the API and the web app the stack serves.
    assert main(["token"]) == 0
    token = capsys.readouterr().out.strip()
    me = httpx.get(
        f"{state['api_url']}/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert me.status_code == 200, me.text
    assert [b["business_id"] for b in me.json()["businesses"]] == ["tidewater-coffee"]
    assert httpx.get(state["web_url"], timeout=30).status_code == 200

    assert main(["down"]) == 0
    assert "stopped" in capsys.readouterr().out
    assert not (shell.local_dir / "stack.json").exists()
    assert shell.left() == []
    gone = shell("status", run_id)  # nothing to talk to: one line says what to do
    assert gone.returncode == 2 and "raptorflow up" in gone.stderr, gone.stderr
    assert shell("down").stdout == "No local stack is up.\n"


@pytest.mark.parametrize(
    ("command", "signum", "started"),
    [
        # A Ctrl-C while the functions start in the background.
        pytest.param(["up"], signal.SIGINT, 4, id="ctrl-c-to-up"),
        pytest.param(["web"], signal.SIGTERM, 2, id="sigterm-to-web"),  # the emulators start
    ],
)
def test_a_signal_during_start_up_leaves_no_process(
    shell: Shell, command: list[str], signum: signal.Signals, started: int
) -> None:
    process = shell.start(*command, "--port", str(free_port()))
    while len(shell.left()) < started + 1:  # the command itself and what it started so far
        assert process.poll() is None, process.communicate()[0]
    os.killpg(process.pid, signum)

    output = process.communicate(timeout=LIVENESS_SECONDS)[0]

    assert process.returncode == 130, output
    assert "interrupted" in output and "Traceback" not in output
    assert shell.left() == []
    assert not (shell.local_dir / "stack.json").exists()


def test_ctrl_c_mid_run_stops_the_stack_and_leaves_no_process(shell: Shell) -> None:
    # Slow enough answers that the run is in its parallel phases (icps and strategy) when the
    # Ctrl-C comes: the workflow then waits on two function calls at once.
    process = shell.start("run", "--local", OFFLINE_LATENCY_MS="1000")
    wait_for(process, lambda line: "Profiling ideal customers" in line or "Setting the" in line)
    os.killpg(process.pid, signal.SIGINT)

    output = process.communicate(timeout=LIVENESS_SECONDS)[0]

    assert process.returncode == 130, output
    assert shell.left() == []
