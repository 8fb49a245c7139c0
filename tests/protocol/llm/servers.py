"""Loopback HTTP servers that speak the OpenAI Chat Completions and Gemini generateContent REST
APIs, answer from a script, and record every request, so the real `openai` and `google-genai`
SDKs can be driven through success and every kind of fault."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that keeps test output quiet."""

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def send_json(self, status: int, body: Any) -> None:
        """Answer `body` (JSON-encoded unless it is bytes, sent verbatim) with `status`."""
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """`handler` on a free port of 127.0.0.1, served from a daemon thread (`shutdown` stops it)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    return server


def headers_of(handler: BaseHTTPRequestHandler) -> dict[str, str]:
    return {k.lower(): v for k, v in handler.headers.items()}


@dataclass
class Reply:
    """One scripted answer. `body` is JSON-encoded unless it is bytes (sent verbatim)."""

    status: int = 200
    body: Any = None
    delay_seconds: float = 0.0


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeApi:
    """A scripted API server on 127.0.0.1. Unscripted requests get a 500 naming the path."""

    replies: deque[Reply] = field(default_factory=deque)
    requests: list[Recorded] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    def push(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> FakeApi:
        api = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = raw
                api.requests.append(Recorded("POST", self.path, headers_of(self), body))
                reply = (
                    api.replies.popleft()
                    if api.replies
                    else Reply(500, {"error": {"message": f"unscripted {self.path}"}})
                )
                if reply.delay_seconds:
                    time.sleep(reply.delay_seconds)
                # The client may have given up (timeout test).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_json(reply.status, reply.body)

        self._server = serve(Handler)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def closed_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- OpenAI Chat Completions ------------------------------------------------------------------


def chat_completion(
    content: str | None,
    *,
    model: str = "gpt-5-mini",
    prompt_tokens: int = 1200,
    cached_tokens: int = 200,
    completion_tokens: int = 700,
    reasoning_tokens: int = 300,
    finish_reason: str = "stop",
    refusal: str | None = None,
) -> dict[str, Any]:
    """A Chat Completions response body; `completion_tokens` includes `reasoning_tokens`,
    as in the real API."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_764_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
    }


def openai_error(status: int, message: str, kind: str = "invalid_request_error") -> Reply:
    return Reply(status, {"error": {"message": message, "type": kind, "param": None, "code": None}})


@dataclass
class SchemaAnsweringOpenAI:
    """Chat Completions on 127.0.0.1 answering every request at once with JSON valid for its
    `response_format` schema (the offline provider's generator, about the prompt's business), so
    whole runs can go through the real `openai` SDK; records each request's body and
    Authorization header.

    With `longest` set, each answer is the largest its schema allows within the request's
    `max_completion_tokens` (every array at its maxItems, strings as long as fit; the schema's
    string lengths, which OpenAI's form of it drops, come from the phase model the schema is
    named after), with its true token count: the worst case a phase may be sent.
    """

    requests: list[Recorded] = field(default_factory=list)
    longest: bool = False
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> SchemaAnsweringOpenAI:
        # Imported here: the servers above serve protocol tests that need no application code.
        from common.llm.providers.offline import placeholder_json
        from common.llm.schema import response_schema, schema_name
        from common.llm.tokens import count_tokens
        from common.models import PHASE_OUTPUTS

        canonical = {schema_name(model): response_schema(model) for model in PHASE_OUTPUTS.values()}
        api = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with api._lock:
                    api.requests.append(Recorded("POST", self.path, headers_of(self), body))
                response_format = body["response_format"]["json_schema"]
                schema = response_format["schema"]
                if api.longest:
                    answer = placeholder_json(
                        canonical.get(response_format["name"], schema),
                        body["messages"],
                        longest=True,
                        max_tokens=body["max_completion_tokens"],
                    )
                    completion_tokens = count_tokens(answer)
                else:
                    answer = placeholder_json(schema, body["messages"])
                    completion_tokens = len(answer) // 4
                completion = chat_completion(
                    answer,
                    model=body["model"],
                    prompt_tokens=len(json.dumps(body["messages"])) // 4,
                    cached_tokens=0,
                    completion_tokens=completion_tokens,
                    reasoning_tokens=0,
                )
                self.send_json(200, completion)

        self._server = serve(Handler)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


# --- Gemini generateContent -------------------------------------------------------------------


def gemini_response(
    text: str,
    *,
    prompt_tokens: int = 1500,
    cached_tokens: int = 500,
    candidates_tokens: int = 600,
    thoughts_tokens: int = 250,
    finish_reason: str = "STOP",
    model_version: str = "gemini-2.5-flash",
) -> dict[str, Any]:
    """A generateContent response body; `candidatesTokenCount` excludes thoughts, as in the
    real API."""
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": text}]},
                "finishReason": finish_reason,
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "cachedContentTokenCount": cached_tokens,
            "candidatesTokenCount": candidates_tokens,
            "thoughtsTokenCount": thoughts_tokens,
            "totalTokenCount": prompt_tokens + candidates_tokens + thoughts_tokens,
        },
        "modelVersion": model_version,
        "responseId": "resp-test",
    }


def gemini_error(status: int, code_name: str, message: str, reason: str | None = None) -> Reply:
    error: dict[str, Any] = {"code": status, "message": message, "status": code_name}
    if reason is not None:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
            }
        ]
    return Reply(status, {"error": error})
