"""What Cloud Run puts in front of each function, on loopback: a request timeout and invokers.

An `Ingress` listens on its own port and forwards each request to the function's process. Past
the function's timeout it answers 504 and drops the function's late answer, as Cloud Run does
("If a response isn't returned within the time specified, the request ends and an error 504 is
returned. Note that the container instance that served the request is not terminated":
https://cloud.google.com/run/docs/configuring/request-timeout). While the process is starting
(or restarting) requests wait for it, as they wait for a cold start. An `authorize` callback, when
given, decides whether the caller may invoke the function (roles/run.invoker); a refusal is a
403, as Cloud Run answers an unauthorised caller.
"""

from __future__ import annotations

import contextlib
import http.client
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Headers that describe one connection, not the message (RFC 9110 section 7.6.1).
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host"}
)
TIMEOUT_BODY = b"upstream request timeout"
STOPPED_BODY = b"the service is shutting down"
FORBIDDEN_BODY = b"Forbidden: the caller may not invoke this service (roles/run.invoker)."


class Ingress:
    """A loopback front for one function: `url` is what callers use; `upstream_port` is the
    function process's port (changed by a restart while the front stays)."""

    def __init__(
        self,
        name: str,
        upstream_port: int,
        timeout_seconds: float,
        authorize: Callable[[], bool] | None = None,
    ) -> None:
        self.name = name
        self.upstream_port = upstream_port
        self.timeout_seconds = timeout_seconds
        self.authorize = authorize
        self._stopped = threading.Event()
        ingress = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                ingress._handle(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _forward

            def log_message(self, format: str, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        """Stop listening; requests in flight that wait for the function's process give up
        (they would otherwise wait out the whole timeout for a process that is gone, and hold
        up the workflow's threads, and so the exit of the command that stopped the stack)."""
        self._stopped.set()
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        deadline = time.monotonic() + self.timeout_seconds
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        if self.authorize is not None and not self.authorize():
            _answer(request, 403, {"Content-Type": "text/plain"}, FORBIDDEN_BODY)
            return
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            status, reply_headers, reply = self._exchange(
                request.command, request.path, headers, body, deadline
            )
        except TimeoutError:
            _answer(request, 504, {"Content-Type": "text/plain"}, TIMEOUT_BODY)
            return
        except ConnectionError:
            _answer(request, 503, {"Content-Type": "text/plain"}, STOPPED_BODY)
            return
        _answer(request, status, reply_headers, reply)

    def _exchange(
        self, method: str, path: str, headers: dict[str, str], body: bytes, deadline: float
    ) -> tuple[int, dict[str, str], bytes]:
        """One round trip to the function, within `deadline`; TimeoutError past it."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            connection = http.client.HTTPConnection("127.0.0.1", self.upstream_port, remaining)
            try:
                connection.request(method, path, body=body, headers=headers)
            except ConnectionRefusedError:
                # Starting or restarting: wait for it, as a request waits for a cold start.
                connection.close()
                if self._stopped.wait(min(0.05, max(remaining, 0))):
                    raise
                continue
            try:
                response = connection.getresponse()  # TimeoutError past the deadline
                reply = response.read()
            finally:
                connection.close()
            reply_headers = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
            return response.status, reply_headers, reply


def _answer(
    request: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes
) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        request.send_response(status)
        for key, value in headers.items():
            # send_response writes its own Date and Server.
            if key.lower() not in {"content-length", "date", "server"}:
                request.send_header(key, value)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)
