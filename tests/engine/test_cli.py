"""The command line: `run` prints the result or the error, `serve` announces its port."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import grpc
from google.cloud.workflows.executions_v1 import ExecutionsClient
from google.cloud.workflows.executions_v1.services.executions.transports import (
    ExecutionsGrpcTransport,
)

ROOT = Path(__file__).resolve().parents[2]


def engine(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workflows.engine", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_run_prints_the_result(tmp_path: Path) -> None:
    path = tmp_path / "hello.workflows.yaml"
    path.write_text(
        "main:\n  params: [args]\n  steps:\n    - r:\n"
        '        return: ${args.name + " " + sys.get_env("SUFFIX")}\n'
    )
    done = engine("run", str(path), "--data", '{"name": "Ada"}', "--env", "SUFFIX=Lovelace")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == "Ada Lovelace"


def test_run_takes_the_argument_as_args_too(tmp_path: Path) -> None:
    path = tmp_path / "echo.workflows.yaml"
    path.write_text("main:\n  params: [args]\n  steps:\n    - r:\n        return: ${args.n + 1}\n")
    done = engine("run", str(path), "--args", '{"n": 41}')
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == 42


def test_run_prints_the_error_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "boom.workflows.yaml"
    path.write_text("- r:\n    raise: {code: 7, message: nope}\n")
    done = engine("run", str(path))
    assert done.returncode == 1
    assert json.loads(done.stderr)["error"] == {"code": 7, "message": "nope"}


def test_run_rejects_an_invalid_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.workflows.yaml"
    path.write_text("- r:\n    next: missing\n")
    done = engine("run", str(path))
    assert done.returncode == 2
    assert "bad.workflows.yaml:1: step 'r'" in done.stderr


def test_serve_announces_and_stops_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "hello.workflows.yaml").write_text('- r:\n    return: ${sys.get_env("K")}\n')
    env_file = tmp_path / ".env"
    env_file.write_text("# comment\nK=from-file\n")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workflows.engine",
            "serve",
            str(tmp_path),
            "--port",
            "0",
            "--env-file",
            str(env_file),
            "--project",
            "p",
            "--location",
            "l",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("listening on 127.0.0.1:")
        address = line.removeprefix("listening on ")
        client = ExecutionsClient(
            transport=ExecutionsGrpcTransport(channel=grpc.insecure_channel(address))
        )
        created = client.create_execution(parent="projects/p/locations/l/workflows/hello")
        assert created.name.startswith("projects/p/locations/l/workflows/hello/executions/")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
