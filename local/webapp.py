"""The reference web app on the local stack: build it, serve it, and run everything it talks to.

`web/` builds (esbuild) into `web/dist/`: static files that any host serves (Firebase Hosting, a
bucket). The app reads `config.json` beside its page: the Firebase web config, the API's URL and,
locally, the emulators. Here a small HTTP server serves `web/dist/` and writes that config for
the local stack: the Firestore emulator with `firestore.rules`, the Auth emulator, every
function (the API among them) and the workflow engine.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local import auth_emulator, emulator, stack

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
DIST = WEB / "dist"
RULES = ROOT / "firestore.rules"


class WebAppError(RuntimeError):
    """The web app cannot be built; the message says what is missing."""


def build() -> Path:
    """Bundle web/src into web/dist (a second or so); returns web/dist."""
    node = shutil.which("node")
    if node is None:
        raise WebAppError("Node.js was not found; the web app is built with Node (make web-deps).")
    if not (WEB / "node_modules" / "esbuild").is_dir():
        raise WebAppError("the web app's npm packages are missing: run `make web-deps`.")
    done = subprocess.run(
        [node, "build.mjs"], cwd=WEB, capture_output=True, text=True, check=False, timeout=120
    )
    if done.returncode != 0:
        raise WebAppError(f"the web app did not build:\n{done.stdout}{done.stderr}")
    return DIST


class _Handler(http.server.SimpleHTTPRequestHandler):
    """web/dist, plus `/config.json` for this stack."""

    config: bytes = b"{}"

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/config.json":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(self.config)
            return
        super().do_GET()

    def log_message(self, *_args: Any) -> None:
        pass


@dataclass
class WebServer:
    server: http.server.ThreadingHTTPServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve(config: Mapping[str, Any], *, port: int = 0, folder: Path = DIST) -> WebServer:
    """Serve `folder` and `config` (as /config.json) on 127.0.0.1:`port` in a thread."""
    handler = type("Handler", (_Handler,), {"config": json.dumps(config).encode()})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", port), functools.partial(handler, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, name="web", daemon=True)
    thread.start()
    return WebServer(server=server, thread=thread)


@dataclass
class WebStack:
    """The local stack plus the Auth emulator and the web app's server."""

    local: stack.LocalStack
    auth: auth_emulator.AuthEmulator
    web: WebServer

    @property
    def api_url(self) -> str:
        return self.local.functions["api"].url.rstrip("/")

    def stop(self) -> None:
        self.web.stop()
        self.local.stop()  # owns_firestore is False: the emulator is stopped below
        self.local.firestore.stop()
        self.auth.stop()


def client_config(local: stack.LocalStack, auth: auth_emulator.AuthEmulator) -> dict[str, Any]:
    """What the web app needs to reach this stack (its `config.json`)."""
    host, port = local.firestore.host.rsplit(":", 1)
    return {
        "firebase": {
            "apiKey": "demo-key",
            "projectId": local.project_id,
            "authDomain": f"{local.project_id}.firebaseapp.com",
        },
        "apiUrl": local.functions["api"].url.rstrip("/"),
        "emulators": {
            "auth": auth.url,
            "firestore": {"host": host, "port": int(port)},
        },
    }


def start(
    project_id: str = stack.PROJECT,
    *,
    port: int = 0,
    log_dir: Path | None = None,
    function_env: Mapping[str, str] | None = None,
    seed: Path | None = None,
    accounts: Path | None = None,
) -> WebStack:
    """Build the app, then start the Firestore emulator with `firestore.rules`, the Auth
    emulator, the local stack on them, and the app's server on `port`.

    Args:
        seed: A Firestore export's metadata file to start from (`emulator.start`).
        accounts: A folder of exported accounts to start from (`auth_emulator.start`).
    """
    build()
    log_dir = log_dir or stack.local_dir() / "logs"
    firestore = emulator.start(rules=RULES, log_dir=log_dir, seed=seed)
    auth = None
    try:
        auth = auth_emulator.start(project_id, log_dir=log_dir, import_dir=accounts)
        env = {"FIREBASE_AUTH_EMULATOR_HOST": auth.host, **(function_env or {})}
        local = stack.start(project_id, log_dir=log_dir, function_env=env, firestore=firestore)
    except BaseException:
        if auth is not None:
            auth.stop()
        firestore.stop()
        raise
    try:
        web = serve(client_config(local, auth), port=port)
    except OSError as error:  # the port is taken
        local.stop()
        firestore.stop()
        auth.stop()
        raise WebAppError(f"the web app cannot listen on port {port}: {error.strerror}") from error
    except BaseException:
        local.stop()
        firestore.stop()
        auth.stop()
        raise
    return WebStack(local=local, auth=auth, web=web)


@contextmanager
def running(project_id: str = stack.PROJECT, **kwargs: Any) -> Iterator[WebStack]:
    """The web stack for a `with` block, stopped also on Ctrl-C."""
    web_stack = start(project_id, **kwargs)
    try:
        yield web_stack
    finally:
        web_stack.stop()
