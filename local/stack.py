"""The local stack: the Firestore emulator, every function under functions-framework, and our
Workflows engine serving the Executions API — the same pieces as on Google Cloud, on loopback.

Used by `raptorflow run --local` (`make run`) and by the integration tests.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from local import emulator
from local.processes import free_port, stop_groups

if TYPE_CHECKING:
    from workflows.engine import Clock, ExecutionsServer

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = ROOT / "functions"
WORKFLOWS_DIR = ROOT / "workflows"
LOCATION = "us-central1"


class StackError(RuntimeError):
    """A piece of the local stack did not start; the message says which and where its log is."""


def function_names() -> list[str]:
    """Every function: each directory of functions/ with a main.py (the entry point's name)."""
    return sorted(path.parent.name for path in FUNCTIONS_DIR.glob("*/main.py"))


def url_variable(name: str) -> str:
    """The environment variable through which the workflow finds a function's URL."""
    return f"{name.upper()}_URL"


@dataclass
class FunctionProcess:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


@dataclass
class LocalStack:
    """Everything a run needs, running; `client_env` is what a backend process must set."""

    project_id: str
    firestore: emulator.FirestoreEmulator
    owns_firestore: bool = True
    functions: dict[str, FunctionProcess] = field(default_factory=dict)
    engine: ExecutionsServer | None = None

    @property
    def client_env(self) -> dict[str, str]:
        return {
            "FIRESTORE_EMULATOR_HOST": self.firestore.host,
            "GOOGLE_CLOUD_PROJECT": self.project_id,
            "REGION": LOCATION,
            "EXECUTIONS_ENDPOINT": self.engine.address if self.engine else "",
        }

    @property
    def workflow_env(self) -> dict[str, str]:
        """What the workflow's `sys.get_env` sees: the function URLs, as user_env_vars."""
        return {url_variable(name): fn.url for name, fn in self.functions.items()}

    def stop(self) -> None:
        """Stop everything, the engine first so no new call reaches a stopping function."""
        if self.engine is not None:
            self.engine.stop()
        stop_groups(*(function.process for function in self.functions.values()))
        if self.owns_firestore:
            self.firestore.stop()


def _wait_for_port(function: FunctionProcess, deadline: float) -> None:
    while time.monotonic() < deadline:
        if function.process.poll() is not None:
            raise StackError(
                f"function {function.name} exited with {function.process.returncode}; "
                f"see {function.log_path}:\n{function.log_path.read_text(errors='replace')[-3000:]}"
            )
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", function.port), 0.2),
        ):
            return
        time.sleep(0.05)
    raise StackError(
        f"function {function.name} did not listen within 60 s; see {function.log_path}"
    )


def _start_function(name: str, env: Mapping[str, str], log_dir: Path) -> FunctionProcess:
    port = free_port()
    log_path = log_dir / f"function-{name}.log"
    command = [
        sys.executable,
        "-m",
        "functions_framework",
        f"--target={name}",
        f"--source={FUNCTIONS_DIR / name / 'main.py'}",
        "--host=127.0.0.1",
        f"--port={port}",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **env, "K_SERVICE": name},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return FunctionProcess(name=name, port=port, process=process, log_path=log_path)


def start(
    project_id: str = "raptorflow-local",
    *,
    log_dir: Path | None = None,
    function_env: Mapping[str, str] | None = None,
    firestore: emulator.FirestoreEmulator | None = None,
    clock: Clock | None = None,
) -> LocalStack:
    """Start the emulator (unless one is given), one functions-framework process per function,
    and the workflow engine serving the Executions API (on `clock`: tests pass a virtual one,
    so that the workflow's retry backoff takes no time)."""
    # The engine is local-only: imported here so it is never on a function's import path.
    from workflows.engine import serve

    log_dir = log_dir or ROOT / ".local" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = LocalStack(
        project_id=project_id,
        firestore=firestore or emulator.start(log_dir=log_dir),
        owns_firestore=firestore is None,
    )
    try:
        # The engine's port is chosen first: the API function starts runs through it.
        engine_port = free_port()
        env = {
            "FIRESTORE_EMULATOR_HOST": stack.firestore.host,
            "GOOGLE_CLOUD_PROJECT": project_id,
            "REGION": LOCATION,
            "EXECUTIONS_ENDPOINT": f"127.0.0.1:{engine_port}",
            **(function_env or {}),
        }
        for name in function_names():
            stack.functions[name] = _start_function(name, env, log_dir)
        deadline = time.monotonic() + 60
        for function in stack.functions.values():
            _wait_for_port(function, deadline)
        server = serve(
            WORKFLOWS_DIR,
            port=engine_port,
            env=stack.workflow_env,
            project=project_id,
            location=LOCATION,
            clock=clock,
        )
        stack.engine = server
    except BaseException:
        stack.stop()
        raise
    return stack


@contextlib.contextmanager
def running(
    project_id: str = "raptorflow-local",
    *,
    log_dir: Path | None = None,
    function_env: Mapping[str, str] | None = None,
) -> Iterator[LocalStack]:
    """The local stack for the duration of a `with` block, stopped also on Ctrl-C."""
    stack = start(project_id, log_dir=log_dir, function_env=function_env)
    try:
        yield stack
    finally:
        stack.stop()
