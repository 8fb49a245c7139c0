"""Start and stop the official Firestore emulator (the Google Cloud SDK's jar) on a free port."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from local.processes import free_port, spawn, stop_groups

_JAR = Path("platform/cloud-firestore-emulator/cloud-firestore-emulator.jar")
_MAIN_CLASS = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"


class EmulatorError(RuntimeError):
    """The emulator cannot start; the message says what is missing."""


def _find_jar() -> Path:
    roots = []
    if sdk := os.environ.get("CLOUDSDK_ROOT_DIR"):
        roots.append(Path(sdk))
    if gcloud := shutil.which("gcloud"):
        roots.append(Path(gcloud).resolve().parent.parent)
    for root in roots:
        if (root / _JAR).is_file():
            return root / _JAR
    raise EmulatorError(
        "The Firestore emulator was not found. Install the Google Cloud SDK and its component "
        "`gcloud components install cloud-firestore-emulator` (Debian: google-cloud-cli-firestore-"
        "emulator), or set CLOUDSDK_ROOT_DIR to the SDK's folder."
    )


@dataclass
class FirestoreEmulator:
    """A running emulator process; `host` is what FIRESTORE_EMULATOR_HOST should hold."""

    host: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        """Stop the emulator's whole process group (the JVM may fork)."""
        stop_groups(self.process)

    def export(self, project_id: str, folder: Path, name: str) -> Path:
        """Write every document of one project to `folder`/`name` (the emulator's export, the
        format of a Cloud Firestore export); returns the metadata file `start(seed=...)` takes."""
        folder.mkdir(parents=True, exist_ok=True)
        body = {
            "database": f"projects/{project_id}/databases/(default)",
            "export_directory": str(folder.resolve()),
            "export_name": name,
        }
        request = urllib.request.Request(
            f"http://{self.host}/emulator/v1/projects/{project_id}:export",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=120).close()
        return folder / name / f"{name}.overall_export_metadata"

    def reset(self, project_id: str) -> None:
        """Delete every document of one project."""
        url = f"http://{self.host}/emulator/v1/projects/{project_id}/databases/(default)/documents"
        urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10).close()


def start(
    port: int | None = None,
    rules: Path | None = None,
    log_dir: Path | None = None,
    seed: Path | None = None,
) -> FirestoreEmulator:
    """Start the emulator and wait until it answers (about a second).

    Args:
        port: Its port (default: a free one).
        rules: Security rules for client requests (default: none, everything allowed).
        log_dir: Where its log goes.
        seed: An export's metadata file (`FirestoreEmulator.export`) to start from.
    """
    java = shutil.which("java")
    if java is None:
        raise EmulatorError("Java was not found on PATH; the Firestore emulator needs Java 11+.")
    jar = _find_jar()
    port = port or free_port()
    command = [java, "-cp", str(jar), _MAIN_CLASS, "--host=127.0.0.1", f"--port={port}"]
    if rules is not None:
        command.append(f"--rules={rules}")
    if seed is not None:
        command.append(f"--seed_from_export={seed}")
    log_dir = log_dir or Path(os.environ.get("TMPDIR", "/tmp"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"firestore-emulator-{port}.log"
    with log_path.open("wb") as log:
        process = spawn(command, stdout=log, stderr=subprocess.STDOUT)
    emulator = FirestoreEmulator(host=f"127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        _wait(emulator)
    except BaseException:
        emulator.stop()
        raise
    return emulator


def _wait(emulator: FirestoreEmulator) -> None:
    process, log_path = emulator.process, emulator.log_path
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmulatorError(
                f"The Firestore emulator exited with {process.returncode}; "
                f"see {log_path}:\n{log_path.read_text(errors='replace')[-2000:]}"
            )
        try:
            with urllib.request.urlopen(f"http://{emulator.host}/", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise EmulatorError(f"The Firestore emulator did not answer within 60 s; see {log_path}")
