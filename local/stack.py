"""The local stack: the Firestore emulator, every function under functions-framework, and our
Workflows engine serving the Executions API — the same pieces as on Google Cloud, on loopback.

Each function sits behind an `Ingress` (local/ingress.py) that cuts a request at the function's
timeout with a 504, as Cloud Run does; the workflow gets the function URLs and its call timeout
(FUNCTION_CALL_TIMEOUT) as Terraform gives them. By default every function runs from the
repository with this process's environment (`make run`, the integration tests). A
`FunctionConfig` with a `source_dir` runs a function as deployed instead: from that folder (its
zip's content) as working directory, with only the environment given — the production-parity
run (tests/parity) starts every function so, from its Terraform plan.

Used by `raptorflow run --local` (`make run`) and by the integration tests.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from local import emulator
from local.ingress import Ingress
from local.processes import free_port, spawn, stop_groups

if TYPE_CHECKING:
    from workflows.engine import Clock, ExecutionsServer

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = ROOT / "functions"
WORKFLOWS_DIR = ROOT / "workflows"
LOCATION = "us-central1"
#: The project of every stack the CLI starts (`run --local`, `web`, `up`), so that each sees the
#: others' data; `demo-` because the Firebase Auth emulator runs for such projects only.
PROJECT = "demo-raptorflow"
#: The workflow's wait for one function call (user_env_vars; terraform/workflows.tf).
CALL_TIMEOUT_VARIABLE = "FUNCTION_CALL_TIMEOUT"

# Runs functions-framework with our packages importable only from the working directory: the
# editable install's finder (which would find the whole repository) is dropped first, so a
# function as deployed sees exactly the files of its zip.
_AS_DEPLOYED = (
    "import runpy, sys\n"
    "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
    "sys.path[:] = [p for p in sys.path if '__editable__' not in p]\n"
    "sys.argv[0] = 'functions-framework'\n"
    "runpy.run_module('functions_framework', run_name='__main__', alter_sys=True)\n"
)


@dataclass(frozen=True)
class FunctionConfig:
    """How one function runs in the stack.

    Attributes:
        env: Environment variables. Without `source_dir`, added to this process's environment
            and the stack's; with it, the function's whole environment (plus PATH, PORT and
            what Cloud Run sets: K_SERVICE, FUNCTION_TARGET).
        source_dir: A folder holding the function's main.py and the code it imports, used as
            working directory; None runs functions/<name>/main.py from the repository.
        timeout_seconds: Request timeout (Cloud Run's); None means the settings'
            `function_timeout_seconds`, Terraform's default.
        authorize: Whether the caller may invoke the function, asked on every request (the
            stack's caller is the workflow); a refusal is a 403. None admits every call.
        service: The Cloud Run service name (K_SERVICE); None means the function's name.
    """

    env: Mapping[str, str] = field(default_factory=dict)
    source_dir: Path | None = None
    timeout_seconds: float | None = None
    authorize: Callable[[], bool] | None = None
    service: str | None = None


class StackError(RuntimeError):
    """A piece of the local stack did not start; the message says which and where its log is."""


def local_dir() -> Path:
    """Where the local stacks keep logs, data and the state of `raptorflow up`: .local in the
    repository, or RAPTORFLOW_LOCAL_DIR (the tests' own folders)."""
    return Path(os.environ.get("RAPTORFLOW_LOCAL_DIR") or ROOT / ".local")


def function_names() -> list[str]:
    """Every function: each directory of functions/ with a main.py (the entry point's name)."""
    return sorted(path.parent.name for path in FUNCTIONS_DIR.glob("*/main.py"))


def url_variable(name: str) -> str:
    """The environment variable through which the workflow finds a function's URL."""
    return f"{name.upper()}_URL"


@dataclass
class FunctionProcess:
    """One function: its process (replaced by `LocalStack.restart`) behind its ingress."""

    name: str
    config: FunctionConfig
    ingress: Ingress
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        """Where callers reach the function: its ingress."""
        return self.ingress.url

    @property
    def cwd(self) -> Path:
        """The process's working directory."""
        return self.config.source_dir or ROOT


@dataclass
class LocalStack:
    """Everything a run needs, running; `client_env` is what a backend process must set."""

    project_id: str
    firestore: emulator.FirestoreEmulator
    owns_firestore: bool = True
    functions: dict[str, FunctionProcess] = field(default_factory=dict)
    engine: ExecutionsServer | None = None
    shared_env: dict[str, str] = field(default_factory=dict)
    workflow_vars: dict[str, str] = field(default_factory=dict)

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
        """What the workflow's `sys.get_env` sees, as Terraform's user_env_vars: the URL of
        every function (its ingress) and `workflow_vars` (the call timeout)."""
        urls = {url_variable(name): fn.url for name, fn in self.functions.items()}
        return {**urls, **self.workflow_vars}

    def restart(self, name: str) -> None:
        """Replace one function's process by a fresh one (a new instance: nothing cached)
        behind the same ingress; requests meanwhile wait for it, as for a cold start."""
        function = self.functions[name]
        stop_groups(function.process)
        port, process = _spawn(name, function.config, self.shared_env, function.log_path)
        function.port, function.process = port, process
        function.ingress.upstream_port = port
        _wait_for_port(function, time.monotonic() + 60)

    def stop(self) -> None:
        """Stop everything, the engine first so no new call reaches a stopping function."""
        if self.engine is not None:
            self.engine.stop()
        for function in self.functions.values():
            function.ingress.stop()
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


def _spawn(
    name: str, config: FunctionConfig, shared_env: Mapping[str, str], log_path: Path
) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    service = config.service or name
    if config.source_dir is None:
        cwd = ROOT
        env = {**os.environ, **shared_env, **config.env, "K_SERVICE": service}
        command = [sys.executable, "-m", "functions_framework"]
        source = FUNCTIONS_DIR / name / "main.py"
    else:
        # Only what the deployment gives the function, and what Cloud Run adds to it.
        cwd = config.source_dir
        # A disk of its own: Cloud Run's /tmp is an in-memory folder per instance.
        tmp = config.source_dir / ".tmp"
        tmp.mkdir(exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(config.source_dir),
            "TMPDIR": str(tmp),
            "LANG": "C.UTF-8",
            **config.env,
            "PORT": str(port),
            "K_SERVICE": service,
            "FUNCTION_TARGET": name,
        }
        command = [sys.executable, "-c", _AS_DEPLOYED]
        source = config.source_dir / "main.py"
    command += [f"--target={name}", f"--source={source}", "--host=127.0.0.1", f"--port={port}"]
    with log_path.open("ab") as log:
        process = spawn(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    return port, process


def _start_function(
    name: str, config: FunctionConfig, shared_env: Mapping[str, str], log_dir: Path
) -> FunctionProcess:
    from common.platform.settings import get_settings

    log_path = log_dir / f"function-{name}.log"
    log_path.unlink(missing_ok=True)
    port, process = _spawn(name, config, shared_env, log_path)
    timeout = config.timeout_seconds or get_settings().function_timeout_seconds
    ingress = Ingress(name, port, timeout, config.authorize)
    return FunctionProcess(name, config, ingress, port, process, log_path)


def start(
    project_id: str = PROJECT,
    *,
    log_dir: Path | None = None,
    function_env: Mapping[str, str] | None = None,
    firestore: emulator.FirestoreEmulator | None = None,
    functions: Mapping[str, FunctionConfig] | None = None,
    workflows_dir: Path = WORKFLOWS_DIR,
    workflow_vars: Mapping[str, str] | None = None,
    clock: Clock | None = None,
) -> LocalStack:
    """Start the emulator (unless one is given), one functions-framework process per function,
    each behind its ingress, and the workflow engine serving the Executions API.

    Args:
        project_id: The project every piece uses.
        log_dir: Where each process's log goes (default `local_dir()`/logs).
        function_env: Added to the environment of every function run from the repository.
        firestore: A running emulator to use (and leave running).
        functions: The functions to start and how; default every function of functions/,
            from the repository.
        workflows_dir: The folder of the workflow files the engine serves.
        workflow_vars: The workflow's variables besides the function URLs; default
            FUNCTION_CALL_TIMEOUT from the settings' `workflow_call_timeout_seconds`, as
            Terraform sets it.
        clock: The engine's clock (tests pass a virtual one, so that the workflow's retry
            backoff takes no time).
    """
    # The engine is local-only: imported here so it is never on a function's import path.
    from common.platform.settings import get_settings
    from workflows.engine import serve

    log_dir = log_dir or local_dir() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = LocalStack(
        project_id=project_id,
        firestore=firestore or emulator.start(log_dir=log_dir),
        owns_firestore=firestore is None,
    )
    if workflow_vars is None:
        call_timeout = get_settings().workflow_call_timeout_seconds
        workflow_vars = {CALL_TIMEOUT_VARIABLE: str(call_timeout)}
    stack.workflow_vars = dict(workflow_vars)
    try:
        # The engine's port is chosen first: the API function starts runs through it.
        engine_port = free_port()
        stack.shared_env = {
            "FIRESTORE_EMULATOR_HOST": stack.firestore.host,
            "GOOGLE_CLOUD_PROJECT": project_id,
            "REGION": LOCATION,
            "EXECUTIONS_ENDPOINT": f"127.0.0.1:{engine_port}",
            **(function_env or {}),
        }
        configs = functions or {name: FunctionConfig() for name in function_names()}
        for name, config in configs.items():
            stack.functions[name] = _start_function(name, config, stack.shared_env, log_dir)
        deadline = time.monotonic() + 60
        for function in stack.functions.values():
            _wait_for_port(function, deadline)
        server = serve(
            workflows_dir,
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
    project_id: str = PROJECT,
    *,
    log_dir: Path | None = None,
    function_env: Mapping[str, str] | None = None,
    firestore: emulator.FirestoreEmulator | None = None,
) -> Iterator[LocalStack]:
    """The local stack for the duration of a `with` block, stopped also on Ctrl-C."""
    stack = start(project_id, log_dir=log_dir, function_env=function_env, firestore=firestore)
    try:
        yield stack
    finally:
        stack.stop()
