"""Start and stop the Firebase Auth emulator (from the `firebase-tools` npm package, installed
in web/node_modules by web/setup.sh) on a free port, beside the Firestore emulator.

The Auth emulator issues unsigned ID tokens (`alg: none`) for its project id, which the
Firestore emulator's rules and the API (with FIREBASE_AUTH_EMULATOR_HOST set, outside
production) accept. Its project id must start with `demo-`: firebase-tools then needs no Google
account and touches no real project.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.processes import free_port, spawn, stop_groups

ROOT = Path(__file__).resolve().parent.parent
FIREBASE = ROOT / "web" / "node_modules" / ".bin" / "firebase"


class AuthEmulatorError(RuntimeError):
    """The Auth emulator cannot start; the message says what is missing."""


@dataclass
class AuthEmulator:
    """A running Auth emulator; `host` is what FIREBASE_AUTH_EMULATOR_HOST should hold."""

    host: str
    project_id: str
    process: subprocess.Popen[bytes]
    log_path: Path
    #: firebase-tools' emulator hub, which exports the accounts (`export`).
    hub: str = ""

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def stop(self) -> None:
        """Stop the emulator and the Node processes it started."""
        stop_groups(self.process)

    def export(self, folder: Path) -> None:
        """Write the accounts to `folder` as firebase-tools does (`emulators:export`): its
        metadata file and auth_export/, which `start(import_dir=...)` reads back. The folder is
        replaced."""
        request = urllib.request.Request(
            f"http://{self.hub}/_admin/export",
            data=json.dumps({"path": str(folder.resolve()), "initiatedBy": "export"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=120).close()

    def has_user(self, uid: str) -> bool:
        """Whether an account with this uid exists."""
        answer = self._post(
            f"/identitytoolkit.googleapis.com/v1/projects/{self.project_id}/accounts:lookup",
            {"localId": [uid]},
        )
        return bool(answer.get("users"))

    def create_user(self, uid: str, email: str, password: str) -> None:
        """Create a user with a known uid (the emulator's admin API, `Bearer owner`)."""
        self._post(
            f"/identitytoolkit.googleapis.com/v1/projects/{self.project_id}/accounts",
            {"localId": uid, "email": email, "password": password, "emailVerified": True},
        )

    def sign_in(self, email: str, password: str) -> str:
        """An ID token for the user, as a client's sign-in gets it."""
        return sign_in(self.host, email, password)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return _post(self.host, path, body)


def _post(host: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://{host}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer owner"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, Any] = json.load(response)
    return answer


SIGN_IN_PATH = "/identitytoolkit.googleapis.com/v1/accounts:signInWithPassword?key=demo-key"


def sign_in(host: str, email: str, password: str) -> str:
    """An ID token from the Auth emulator at `host` for the user, as a client's sign-in gets it.

    Raises:
        AuthEmulatorError: wrong email or password (the emulator's reason).
    """
    try:
        answer = _post(
            host, SIGN_IN_PATH, {"email": email, "password": password, "returnSecureToken": True}
        )
    except urllib.error.HTTPError as error:
        reason = json.loads(error.read() or b"{}").get("error", {}).get("message", str(error))
        raise AuthEmulatorError(f"the Auth emulator refused {email}: {reason}") from error
    token: str = answer["idToken"]
    return token


def start(
    project_id: str,
    *,
    port: int | None = None,
    log_dir: Path | None = None,
    import_dir: Path | None = None,
) -> AuthEmulator:
    """Start the Auth emulator for `project_id` (a `demo-` id) and wait until it answers; with
    `import_dir`, with the accounts an `export` wrote there."""
    if not project_id.startswith("demo-"):
        raise AuthEmulatorError(
            f"the Auth emulator runs for a demo- project id only, not {project_id!r}"
        )
    if not FIREBASE.is_file():
        raise AuthEmulatorError(
            f"{FIREBASE} was not found: install the web app's npm packages with `make web-deps`."
        )
    port = port or free_port()
    hub = free_port()
    log_dir = log_dir or Path(os.environ.get("TMPDIR", "/tmp"))
    log_dir.mkdir(parents=True, exist_ok=True)
    config = log_dir / f"firebase-auth-{port}.json"
    # Every port the CLI reserves is chosen here, so that several emulators can run at once.
    config.write_text(
        json.dumps(
            {
                "emulators": {
                    "auth": {"host": "127.0.0.1", "port": port},
                    "hub": {"host": "127.0.0.1", "port": hub},
                    "logging": {"host": "127.0.0.1", "port": free_port()},
                    "ui": {"enabled": False},
                    "singleProjectMode": True,
                }
            }
        )
    )
    log_path = log_dir / f"auth-emulator-{port}.log"
    command = [
        str(FIREBASE),
        "emulators:start",
        "--only=auth",
        f"--project={project_id}",
        f"--config={config}",
    ]
    if import_dir is not None:
        command.append(f"--import={import_dir.resolve()}")
    env = {**os.environ, "NO_UPDATE_NOTIFIER": "1", "FIREBASE_CLI_EXPERIMENTS": ""}
    with log_path.open("wb") as log:
        process = spawn(command, cwd=log_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    emulator = AuthEmulator(
        host=f"127.0.0.1:{port}",
        project_id=project_id,
        process=process,
        log_path=log_path,
        hub=f"127.0.0.1:{hub}",
    )
    try:
        _wait(emulator)
    except BaseException:
        emulator.stop()
        raise
    return emulator


def _wait(emulator: AuthEmulator) -> None:
    process, log_path = emulator.process, emulator.log_path
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AuthEmulatorError(
                f"the Auth emulator exited with {process.returncode}; see {log_path}:\n"
                f"{log_path.read_text(errors='replace')[-2000:]}"
            )
        try:
            with urllib.request.urlopen(emulator.url + "/", timeout=1) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            time.sleep(0.2)
    raise AuthEmulatorError(f"the Auth emulator did not answer within 90 s; see {log_path}")
