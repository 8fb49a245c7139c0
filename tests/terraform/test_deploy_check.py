"""`make deploy-check` (terraform/scripts/deploy_check.sh): the steps a team with a real project
runs, in order.

terraform against a real project, gcloud and Google's REST endpoints cannot be reached here, so
stand-ins for `terraform`, `gcloud`, `curl` and the `raptorflow` CLI go first on PATH: each
records its arguments (and what it read on stdin) and answers as the real one would. The tests
check the order of the steps, that a failing step stops the check naming it, and that no secret
reaches a command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.terraform.planfile import ROOT

SCRIPT = ROOT / "terraform" / "scripts" / "deploy_check.sh"
OPENAI_KEY = "sk-proj-deploy-check-not-a-real-key"
BROWSER_KEY = "AIza-browser-key-of-the-stub"

# One stand-in per command: appends {"cmd", "args", "stdin"} to $STUB_LOG, then answers with
# the first entry of $STUB_ANSWERS whose key occurs in its command line ([exit status, stdout];
# SIGNED_UP_EMAIL stands for {"email": the address the check signed up}, as the API's /v1/me
# answers for the token's user).
STUB = textwrap.dedent(
    """\
    #!/usr/bin/env python3
    import json, os, sys
    name, args = os.path.basename(sys.argv[0]), sys.argv[1:]
    log = os.environ["STUB_LOG"]
    with open(log, "a") as out:
        out.write(json.dumps({"cmd": name, "args": args, "stdin": sys.stdin.read()}) + "\\n")
    joined = " ".join([name, *args])
    for needle, (status, answer) in json.loads(os.environ["STUB_ANSWERS"]).items():
        if needle in joined:
            if answer == "SIGNED_UP_EMAIL":
                calls = [json.loads(line) for line in open(log)]
                sign_up = next(c for c in calls if "accounts:signUp" in " ".join(c["args"]))
                answer = json.dumps({"email": json.loads(sign_up["stdin"])["email"]})
            sys.stdout.write(answer)
            sys.exit(status)
    """
)
ANSWERS: dict[str, tuple[int, str]] = {
    "output -json web_app_config": (
        0,
        json.dumps(
            {
                "firebase": {"apiKey": BROWSER_KEY, "projectId": "team-project"},
                "apiUrl": "https://api-xyz.a.run.app",
            }
        ),
    ),
    "output -json web_origins": (0, json.dumps(["https://team-project.web.app"])),
    "accounts:signInWithPassword": (0, json.dumps({"idToken": "id-token-of-the-stub"})),
    "accounts:": (0, json.dumps({"localId": "deploy-check-user"})),
    "/v1/me": (0, "SIGNED_UP_EMAIL"),
}


@dataclass(frozen=True)
class Call:
    cmd: str
    args: list[str]
    stdin: str

    @property
    def line(self) -> str:
        return " ".join(self.args)


def run_check_script(
    tmp_path: Path,
    overrides: dict[str, tuple[int, str]] | None = None,
    *,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess[str], list[Call]]:
    """deploy_check.sh for project "team-project" with the stand-ins first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("terraform", "gcloud", "curl", "raptorflow"):
        stub = bin_dir / name
        stub.write_text(STUB)
        stub.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    done = subprocess.run(
        ["bash", str(SCRIPT), "team-project"],
        cwd=ROOT,
        env={
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "STUB_LOG": str(log),
            "STUB_ANSWERS": json.dumps({**ANSWERS, **(overrides or {})}),
            "RAPTORFLOW": str(bin_dir / "raptorflow"),
            "HOME": str(tmp_path),
            **({"OPENAI_API_KEY": OPENAI_KEY} if env is None else env),
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = log.read_text().splitlines() if log.exists() else []
    return done, [Call(**json.loads(line)) for line in lines]


def step_of(call: Call) -> str | None:
    """The deploy-check step a recorded call belongs to (None for reads between steps)."""
    if call.cmd == "terraform":
        for verb in ("apply", "destroy"):
            if verb in call.args:
                return verb
        if "import" in call.args:
            return f"import {call.args[-2]}"
        if "plan" in call.args:
            assert "-detailed-exitcode" in call.args, call.line
            return "empty plan"
        return None
    if call.cmd == "gcloud" and "add" in call.args:
        return f"key {call.args[call.args.index('add') + 1]}"
    if call.cmd == "raptorflow":
        return f"raptorflow {call.args[0]}"
    if call.cmd == "curl":
        return call.line.split("accounts:")[1].split()[0] if "accounts:" in call.line else "api me"
    return None


def steps(calls: list[Call]) -> list[str]:
    return [step for step in map(step_of, calls) if step]


def test_the_check_runs_every_step_in_order(tmp_path: Path) -> None:
    done, calls = run_check_script(tmp_path)
    assert done.returncode == 0, done.stderr
    assert steps(calls) == [
        "apply",
        "empty plan",
        "key OPENAI_API_KEY",
        "raptorflow register",
        "raptorflow run",
        "signUp",
        "signInWithPassword",
        "api me",
        "delete",
        "destroy",
        "import google_firestore_database.main",
        "import google_identity_platform_config.auth",
        "apply",
        "empty plan",
    ]
    imports = [call.args[-1] for call in calls if "import" in call.args]
    assert imports == ["projects/team-project/databases/(default)", "projects/team-project/config"]
    # The smoke run is the sample business's; sign-in comes from the app's origin with its
    # browser key, and the API accepts the token Identity Platform gave.
    run = next(c for c in calls if c.cmd == "raptorflow" and c.args[0] == "run")
    assert run.args == ["run", "local/samples/tidewater.json"]
    sign_up = next(c for c in calls if "accounts:signUp" in c.line)
    assert "Referer: https://team-project.web.app/" in sign_up.args
    assert f"X-Goog-Api-Key: {BROWSER_KEY}" in sign_up.args
    me = next(c for c in calls if "/v1/me" in c.line)
    assert "https://api-xyz.a.run.app/v1/me" in me.args
    assert "all 7 steps passed" in done.stderr


def test_no_secret_is_on_a_command_line(tmp_path: Path) -> None:
    done, calls = run_check_script(tmp_path)
    assert done.returncode == 0, done.stderr
    added = next(c for c in calls if c.cmd == "gcloud" and "add" in c.args)
    assert added.stdin == OPENAI_KEY
    sign_up = next(c for c in calls if "accounts:signUp" in c.line)
    password = json.loads(sign_up.stdin)["password"]
    me = next(c for c in calls if "/v1/me" in c.line)
    assert me.stdin.strip() == "Authorization: Bearer id-token-of-the-stub"
    for call in calls:
        for secret in (OPENAI_KEY, password, "id-token-of-the-stub"):
            assert secret not in call.line, call.cmd
    assert OPENAI_KEY not in done.stdout + done.stderr and password not in done.stderr


@pytest.mark.parametrize(
    ("failing", "answer", "step", "last"),
    [
        # The plan after the first apply shows changes (-detailed-exitcode: 2).
        ("plan -input=false", (2, ""), "2/7 re-plan", "empty plan"),
        # The sample run ends other than succeeded.
        ("raptorflow run", (1, ""), "4/7 smoke run", "raptorflow run"),
        # Identity Platform refuses the sign-in.
        ("accounts:signInWithPassword", (22, "{}"), "5/7 sign-in", "signInWithPassword"),
    ],
)
def test_a_failing_step_stops_the_check_naming_it(
    tmp_path: Path, failing: str, answer: tuple[int, str], step: str, last: str
) -> None:
    done, calls = run_check_script(tmp_path, {failing: answer})
    assert done.returncode == 1
    assert f"FAILED at {step}" in done.stderr
    assert steps(calls)[-1] == last, steps(calls)
    assert "destroy" not in steps(calls)


def test_without_a_model_key_it_stops_before_applying(tmp_path: Path) -> None:
    # No key in the environment, and gcloud lists no enabled version of either secret.
    done, calls = run_check_script(tmp_path, env={})
    assert done.returncode == 2
    assert "export OPENAI_API_KEY or GEMINI_API_KEY" in done.stderr
    assert not [c for c in calls if c.cmd == "terraform"]
