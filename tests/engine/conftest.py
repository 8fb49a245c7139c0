"""Fixtures for the engine tests: a loopback HTTP server standing in for the called functions."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else delayed ACKs add ~40 ms to every loopback call
    attempts: ClassVar[dict[str, int]] = {}
    lock: ClassVar[threading.Lock] = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
        data = (
            body
            if isinstance(body, bytes)
            else (
                json.dumps(body).encode()
                if content_type == "application/json"
                else str(body).encode()
            )
        )
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Test", "yes")
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = url.path.strip("/").split("/")
        if parts[0] == "echo":
            ctype = self.headers.get("Content-Type", "")
            body: Any = raw.decode() if raw else None
            if raw and ctype.startswith("application/json"):
                body = json.loads(raw)
            self._send(
                200,
                {
                    "method": self.command,
                    "path": url.path,
                    "query": urllib.parse.parse_qs(url.query),
                    "content_type": ctype or None,
                    "authorization": self.headers.get("Authorization"),
                    "custom": self.headers.get("X-Custom"),
                    "body": body,
                },
            )
        elif parts[0] == "status":
            code = int(parts[1])
            error = {"error": {"code": query.get("error", "failed"), "message": "it failed"}}
            self._send(code, error if code >= 400 else {"ok": True})
        elif parts[0] == "text":
            self._send(200, "hello text", "text/plain; charset=utf-8")
        elif parts[0] == "big":
            size = int(query.get("bytes", "0"))
            if query.get("type") == "json":
                self._send(200, {"text": "x" * size})
            else:
                self._send(200, "x" * size, "text/plain")
        elif parts[0] == "bytes":
            self._send(200, b"\x00\x01", "application/octet-stream")
        elif parts[0] == "empty":
            self.send_response(204)
            self.end_headers()
        elif parts[0] == "slow":
            time.sleep(float(query.get("seconds", "1")))
            self._send(200, {"slow": True})
        elif parts[0] == "flaky":
            key, fail, code = parts[1], int(query.get("fail", "1")), int(query.get("code", "503"))
            with self.lock:
                self.attempts[key] = self.attempts.get(key, 0) + 1
                attempt = self.attempts[key]
            if attempt <= fail:
                self._send(code, {"error": {"code": "temporary", "attempt": attempt}})
            else:
                self._send(200, {"attempts": attempt})
        elif parts[0] == "drop":
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        else:
            self._send(404, {"error": {"code": "not_found", "message": url.path}})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


@pytest.fixture(scope="session")
def http_server() -> Iterator[str]:
    """Base URL of a threaded loopback server (routes: /echo, /status/N, /flaky/KEY, /big, ...)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def refused_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/nothing"
