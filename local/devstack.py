"""The developer's local stack: `raptorflow up` keeps one running in the background, `down` stops
it, later commands find it, and every stack the CLI starts keeps its data for the next one.

`up` starts `python -m local.devstack` in a session of its own. That process (`serve`, also what
`raptorflow web` runs in the foreground) starts the web stack: the Firestore emulator with
`firestore.rules`, the Auth emulator, every function, the workflow engine and the web app's
server, on project `stack.PROJECT`; it adds the demo owner and the sample business when they are
missing, writes where everything is to the state file (`.local/stack.json`), and waits. SIGTERM
(`down`), SIGINT or SIGHUP make it save the data, stop every process and remove the state file.

The data (`.local/emulators`, in firebase-tools' export layout: `firestore_export/` and
`auth_export/` with `firebase-export-metadata.json`) is what the stacks share: each starts from
it and saves it when it ends well, so a run of `make run` is there for `raptorflow up` to show.

Other commands talk to the stack of the state file while it runs, unless the environment names
a backend itself (FIRESTORE_EMULATOR_HOST or GOOGLE_CLOUD_PROJECT).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from common.platform.errors import NotFound
from local import auth_emulator, emulator, stack, webapp
from local.connection import CliError, talking_to
from local.processes import forget, interruptible, spawn, stop_groups

DEMO_UID, DEMO_EMAIL, DEMO_PASSWORD = "demo-owner", "owner@tidewater.example", "raptorflow"
SAMPLE = Path(__file__).with_name("samples") / "tidewater.json"
FIRESTORE_EXPORT = "firestore_export"
ACCOUNTS_METADATA = "firebase-export-metadata.json"
#: How long `down` waits for the stack to save its data and stop before it kills what is left.
STOP_SECONDS = 120


def state_path() -> Path:
    return stack.local_dir() / "stack.json"


def data_dir() -> Path:
    return stack.local_dir() / "emulators"


# --- The data the stacks share -------------------------------------------------------------------


def firestore_seed() -> Path | None:
    """The saved Firestore export's metadata file, if there is one."""
    metadata = data_dir() / FIRESTORE_EXPORT / f"{FIRESTORE_EXPORT}.overall_export_metadata"
    return metadata if metadata.is_file() else None


def accounts_seed() -> Path | None:
    """The folder of saved Auth emulator accounts, if there are some."""
    folder = data_dir()
    return folder if (folder / "auth_export").is_dir() else None


def save(firestore: emulator.FirestoreEmulator, auth: auth_emulator.AuthEmulator | None) -> None:
    """Save the stack's documents (and accounts) for the next stack, replacing what was saved;
    a stack without the Auth emulator keeps the accounts saved before. Written beside the data
    and swapped in at the end, so an interrupted save leaves the previous data whole."""
    target = data_dir()
    fresh, stale = target.with_name(target.name + ".new"), target.with_name(target.name + ".old")
    shutil.rmtree(fresh, ignore_errors=True)
    if auth is not None:
        auth.export(fresh)  # creates `fresh` with the metadata file and auth_export/
    else:
        fresh.mkdir(parents=True)
        for kept in ("auth_export", ACCOUNTS_METADATA):
            if (target / kept).is_dir():
                shutil.copytree(target / kept, fresh / kept)
            elif (target / kept).is_file():
                shutil.copy2(target / kept, fresh / kept)
    firestore.export(stack.PROJECT, fresh, FIRESTORE_EXPORT)
    shutil.rmtree(stale, ignore_errors=True)
    if target.exists():
        target.rename(stale)
    fresh.rename(target)
    shutil.rmtree(stale, ignore_errors=True)


# --- The state file ------------------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    """Where the stack of `raptorflow up` (or `web`) is."""

    pid: int
    project_id: str
    firestore: str
    executions: str
    auth: str
    api_url: str
    web_url: str
    log_dir: str
    #: Its children's process groups as (pid, start time): for `down` to stop if the stack
    #: itself cannot, and only while each is the process it was (a pid is reused).
    groups: list[tuple[int, int]] = dataclasses.field(default_factory=list)

    @property
    def client_env(self) -> dict[str, str]:
        return {
            "FIRESTORE_EMULATOR_HOST": self.firestore,
            "GOOGLE_CLOUD_PROJECT": self.project_id,
            "REGION": stack.LOCATION,
            "EXECUTIONS_ENDPOINT": self.executions,
        }


def read_state() -> State | None:
    """The state file's stack, running or not; None without a (readable) state file."""
    try:
        fields = json.loads(state_path().read_text())
        fields["groups"] = [(int(pid), int(start)) for pid, start in fields.get("groups", [])]
        return State(**fields)
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _write_state(state: State) -> None:
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(dataclasses.asdict(state), indent=2))
    partial.replace(path)  # a reader sees the whole file or none


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (state first); [] for no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return []


def started(pid: int) -> int:
    """The process's start time (clock ticks after boot), 0 for no such process."""
    fields = _stat(pid)
    return int(fields[19]) if fields else 0


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie does not)."""
    fields = _stat(pid)
    return bool(fields) and fields[0] not in {"Z", "X"}


def running_state() -> State | None:
    """The stack of the state file if it runs, else None."""
    state = read_state()
    return state if state is not None and alive(state.pid) else None


@contextlib.contextmanager
def attached() -> Iterator[State | None]:
    """This process talks to the running stack of `raptorflow up`, unless the environment names
    a backend; yields that stack (None when there is none to use).

    Raises:
        CliError: the state file names a stack that has stopped.
    """
    if os.environ.get("FIRESTORE_EMULATOR_HOST") or os.environ.get("GOOGLE_CLOUD_PROJECT"):
        yield None
        return
    state = read_state()
    if state is None:
        yield None
        return
    if not alive(state.pid):
        raise CliError(
            f"the local stack of `raptorflow up` has stopped ({state_path()} is left from it): "
            "`raptorflow up` starts it again, `raptorflow down` forgets it"
        )
    with talking_to(state.client_env):
        yield state


# --- up and down ---------------------------------------------------------------------------------


def up(port: int) -> tuple[State, bool]:
    """Start the stack in the background and wait until it is ready (or say why not).

    Returns:
        The stack, and whether it was started now (False: it was already up).

    Raises:
        stack.StackError: it did not start; the message has the end of its log.
    """
    state = running_state()
    if state is not None:
        return state, False
    state_path().unlink(missing_ok=True)
    log_dir = stack.local_dir() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "up.log"
    with log.open("wb") as out:
        process = spawn(
            [sys.executable, "-m", "local.devstack", "--port", str(port)],
            cwd=stack.ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        while (state := read_state()) is None or state.pid != process.pid:
            if process.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-15:]
                raise stack.StackError(
                    f"the local stack did not start (see {log}):\n" + "\n".join(tail)
                )
            time.sleep(0.2)
    except BaseException:
        # Until it is ready it is this command's: a Ctrl-C stops it, and it is given the time
        # to stop what it had started (a SIGKILL would leave its children behind).
        stop_groups(process, timeout=STOP_SECONDS)
        raise
    forget(process)  # ready: it outlives this command
    return state, True


def down() -> State | None:
    """Stop the stack of the state file (it saves its data first); returns it, or None when
    there was none."""
    state = read_state()
    if state is None:
        return None
    if alive(state.pid):
        os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        while alive(state.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    for pid, start in state.groups:  # what a stack that could not stop left behind
        if start and started(pid) == start:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    state_path().unlink(missing_ok=True)
    return state


def describe(state: State) -> str:
    """How to reach the stack, for a person: its addresses, a sign-in, a token for curl."""
    cli = ".venv/bin/raptorflow"
    env = " ".join(f"{name}={value}" for name, value in state.client_env.items())
    return (
        f"The local stack is up (project {state.project_id}); `{cli} down` stops it.\n"
        f"  Web app:            {state.web_url}  (sign in as {DEMO_EMAIL} / {DEMO_PASSWORD})\n"
        f"  API:                {state.api_url}/v1/openapi.json\n"
        f"  Firestore emulator: {state.firestore}\n"
        f"  Auth emulator:      {state.auth}\n"
        f"  Workflow engine:    {state.executions}  (the Executions API)\n"
        f"  Logs:               {state.log_dir}/\n"
        "  An ID token for curl:\n"
        f"    TOKEN=$({cli} token) && "
        f'curl -H "Authorization: Bearer $TOKEN" {state.api_url}/v1/me\n'
        "  The CLI's commands (run, status, report, budget, usage, watch...) use this stack\n"
        f"  until it stops; other programs: export {env}"
    )


def keep_exploring(run_id: str, business_id: str) -> str:
    """What to do after `make run`, whose stack has stopped but whose data is kept."""
    cli = ".venv/bin/raptorflow"
    return (
        f"\nThe run is kept in {data_dir()}.\n"
        f"To keep exploring: `{cli} up` starts a stack on it that stays up (with the web app);\n"
        f"then `{cli} status {run_id}`,\n"
        f"`{cli} report {run_id} --format html -o report.html`,\n"
        f"`{cli} usage {business_id}`; `{cli} down` stops it."
    )


# --- The stack itself ----------------------------------------------------------------------------


def seed_demo(web: webapp.WebStack) -> None:
    """The demo owner, owner of the sample business (which `make run` may have registered
    without members); other saved data is kept as it is."""
    from common.models import BusinessInput
    from common.tenants import members
    from common.tenants.businesses import Business, get_business, save_business

    if not web.auth.has_user(DEMO_UID):
        web.auth.create_user(DEMO_UID, DEMO_EMAIL, DEMO_PASSWORD)
    sample = BusinessInput.model_validate_json(SAMPLE.read_text())
    try:
        business = get_business(sample.business_id)
    except NotFound:  # not registered yet
        business = save_business(
            Business(business_id=sample.business_id, name=sample.name, tier="enterprise")
        )
    if DEMO_UID not in business.owners:
        members.add_member(
            business.business_id, members.MemberChange(uid=DEMO_UID, owner=True), by=None
        )


def serve(port: int, on_ready: Callable[[State], None], function_env: Mapping[str, str]) -> None:
    """Run the stack until SIGTERM, SIGINT or SIGHUP (as KeyboardInterrupt, which is raised to
    the caller once everything has stopped).

    Raises:
        CliError: a stack is up already.
        webapp.WebAppError, auth_emulator.AuthEmulatorError, emulator.EmulatorError,
        stack.StackError: a piece did not start.
    """
    running = running_state()
    if running is not None:
        raise CliError(
            f"a local stack is up already (the web app at {running.web_url}): use it, or stop "
            "it with `raptorflow down`"
        )
    with interruptible():
        web = webapp.start(
            stack.PROJECT,
            port=port,
            function_env=function_env,
            seed=firestore_seed(),
            accounts=accounts_seed(),
        )
        ready = False
        try:
            with talking_to(web.local.client_env):
                seed_demo(web)
            local = web.local
            state = State(
                pid=os.getpid(),
                project_id=local.project_id,
                firestore=local.firestore.host,
                executions=local.engine.address if local.engine else "",
                auth=web.auth.host,
                api_url=web.api_url,
                web_url=web.web.url,
                log_dir=str(stack.local_dir() / "logs"),
                groups=[
                    (process.pid, started(process.pid))
                    for process in [
                        local.firestore.process,
                        web.auth.process,
                        *(function.process for function in local.functions.values()),
                    ]
                ],
            )
            _write_state(state)
            ready = True
            on_ready(state)
            threading.Event().wait()
        finally:
            try:
                if ready:
                    save(web.local.firestore, web.auth)
            finally:
                web.stop()
                state_path().unlink(missing_ok=True)


def _log(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _main() -> int:
    """The background process of `raptorflow up` (its output goes to .local/logs/up.log)."""
    port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 8080
    latency = {"OFFLINE_LATENCY_MS": os.environ.get("OFFLINE_LATENCY_MS", "800")}
    try:
        serve(port, lambda state: _log(f"ready: {state}"), latency)
    except KeyboardInterrupt:
        _log("stopped")
    except (
        CliError,
        webapp.WebAppError,
        auth_emulator.AuthEmulatorError,
        emulator.EmulatorError,
        stack.StackError,
    ) as error:
        _log(f"error: {error}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main())
