"""Start and stop the official Firestore emulator (the Google Cloud SDK's jar) on a free port."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from local.processes import free_port, stop_groups

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

    def reset(self, project_id: str) -> None:
        """Delete every document of one project."""
        url = f"http://{self.host}/emulator/v1/projects/{project_id}/databases/(default)/documents"
        urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10).close()


def start(
    port: int | None = None, rules: Path | None = None, log_dir: Path | None = None
) -> FirestoreEmulator:
    """Start the emulator and wait until it answers (about a second)."""
    java = shutil.which("java")
    if java is None:
        raise EmulatorError("Java was not found on PATH; the Firestore emulator needs Java 11+.")
    jar = _find_jar()
    port = port or free_port()
    command = [java, "-cp", str(jar), _MAIN_CLASS, "--host=127.0.0.1", f"--port={port}"]
    if rules is not None:
        command.append(f"--rules={rules}")
    log_dir = log_dir or Path(os.environ.get("TMPDIR", "/tmp"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"firestore-emulator-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    emulator = FirestoreEmulator(host=f"127.0.0.1:{port}", process=process, log_path=log_path)
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
                    return emulator
        except OSError:
            time.sleep(0.1)
    emulator.stop()
    raise EmulatorError(f"The Firestore emulator did not answer within 60 s; see {log_path}")
