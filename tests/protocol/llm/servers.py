"""Loopback HTTP servers that speak the OpenAI Chat Completions and Gemini generateContent REST
APIs, answer from a script, and record every request, so the real `openai` and `google-genai`
SDKs can be driven through success and every kind of fault.

Both stream as the real APIs do when asked: a Chat Completions request with `"stream": true`
and a Gemini `:streamGenerateContent?alt=sse` request get server-sent events, `data: {json}`
each, made from the scripted answer (OpenAI's `chat.completion.chunk`s ending with a usage
chunk and `data: [DONE]`; Gemini's partial `GenerateContentResponse`s, the last with the finish
reason and the usage). Errors are plain JSON answers, as the APIs send them before a stream
starts; a `Reply` with `events` sends exactly those events (and `cut` closes the connection
after them, as a dropped stream does)."""

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

    def send_events(self, events: list[Any], *, done: bool, delay: float = 0.0) -> None:
        """Answer 200 with server-sent events: each of `events` (JSON-encoded unless bytes) as
        one `data:` event, then `data: [DONE]` if `done`; the connection closes after them."""
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for event in events:
                data = event if isinstance(event, bytes) else json.dumps(event).encode()
                self.wfile.write(b"data: " + data + b"\n\n")
                self.wfile.flush()
                if delay:
                    time.sleep(delay)
            if done:
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

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
    """One scripted answer. `body` is JSON-encoded unless it is bytes (sent verbatim); a
    streaming request gets a 200 `body` as events. `events`, when given, are the exact events
    of a streamed answer (`cut`: the connection drops after them, without the stream's end)."""

    status: int = 200
    body: Any = None
    delay_seconds: float = 0.0
    events: list[Any] | None = None
    cut: bool = False
    event_delay_seconds: float = 0.0


def streaming(path: str, body: Any) -> bool:
    """Whether a request asks for a streamed answer."""
    return ":streamGenerateContent" in path or (
        isinstance(body, dict) and body.get("stream") is True
    )


def _pieces(text: str, count: int) -> list[str]:
    """`text` in `count` consecutive pieces (fewer when it is shorter), none empty."""
    size = max(1, -(-len(text) // count))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def stream_events(path: str, body: dict[str, Any], pieces: int = 4) -> list[Any]:
    """The events a streamed answer of `body` (a whole answer) is sent as."""
    if "chat/completions" in path:
        return openai_chunks(body, pieces)
    return gemini_chunks(body, pieces)


def answer_stream(handler: QuietHandler, path: str, reply: Reply) -> None:
    """Send `reply` to a streaming request the way the API streams it."""
    openai = "chat/completions" in path
    if reply.events is not None:
        handler.send_events(
            reply.events, done=openai and not reply.cut, delay=reply.event_delay_seconds
        )
    elif reply.status == 200 and isinstance(reply.body, dict):
        events = stream_events(path, reply.body)
        handler.send_events(events, done=openai, delay=reply.event_delay_seconds)
    else:
        handler.send_json(reply.status, reply.body)


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
                    if streaming(self.path, body):
                        answer_stream(self, self.path, reply)
                    else:
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


def openai_chunks(completion: dict[str, Any], pieces: int = 4) -> list[dict[str, Any]]:
    """A Chat Completions answer as the `chat.completion.chunk`s of its stream: the role, the
    content in `pieces`, a refusal if any, the finish reason, then the usage (asked for with
    `stream_options.include_usage`: a chunk without choices)."""
    base = {
        "id": completion.get("id", "chatcmpl-test"),
        "object": "chat.completion.chunk",
        "created": completion.get("created", 1_764_000_000),
        "model": completion.get("model", "gpt-5-mini"),
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    events: list[dict[str, Any]] = []
    for choice in completion.get("choices", []):
        message = choice["message"]
        events.append(chunk({"role": "assistant", "content": ""}))
        if message.get("content"):
            events += [chunk({"content": piece}) for piece in _pieces(message["content"], pieces)]
        if message.get("refusal"):
            events.append(chunk({"refusal": message["refusal"]}))
        events.append(chunk({}, choice["finish_reason"]))
    events.append({**base, "choices": [], "usage": completion.get("usage")})
    return events


@dataclass
class SchemaAnsweringOpenAI:
    """Chat Completions on 127.0.0.1 answering every request at once with JSON valid for its
    `response_format` schema (the offline provider's generator, about the prompt's business), so
    whole runs can go through the real `openai` SDK; records each request's body and
    Authorization header.

    With `longest` set, each answer is the largest its schema allows within the request's
    `max_completion_tokens` (every array at its maxItems, strings as long as fit; the schema's
    string lengths, which OpenAI's form of it drops, come from the phase's or sub-task's model
    the schema is named after), with its true token count: the worst case a phase may be sent.
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
        from common.analysis.registry import SUB_TASKS
        from common.llm.providers.offline import placeholder_json
        from common.llm.schema import response_schema, schema_name
        from common.llm.tokens import count_tokens
        from common.models import PHASE_OUTPUTS

        models = [*PHASE_OUTPUTS.values(), *(sub.answer for sub in SUB_TASKS.values())]
        canonical = {schema_name(model): response_schema(model) for model in models}
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
                        with_lengths(schema, canonical.get(response_format["name"], {})),
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
                if streaming(self.path, body):
                    self.send_events(openai_chunks(completion), done=True)
                else:
                    self.send_json(200, completion)

        self._server = serve(Handler)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def with_lengths(schema: Any, canonical: Any) -> Any:
    """`schema` (as OpenAI received it: sized per request, string lengths dropped) with the
    string lengths of `canonical` (the model's own schema) put back where they match."""
    if not isinstance(schema, dict) or not isinstance(canonical, dict):
        return schema
    found = dict(schema)
    if schema.get("type") == "string" or "string" in (schema.get("type") or []):
        for key in ("maxLength", "minLength"):
            if key in canonical and key not in found:
                found[key] = canonical[key]
    if "properties" in schema:
        theirs = canonical.get("properties", {})
        found["properties"] = {
            name: with_lengths(child, theirs.get(name, {}))
            for name, child in schema["properties"].items()
        }
    if "items" in schema:
        found["items"] = with_lengths(schema["items"], canonical.get("items", {}))
    if "anyOf" in schema:
        options = canonical.get("anyOf", [])
        found["anyOf"] = [
            with_lengths(child, options[n] if n < len(options) else {})
            for n, child in enumerate(schema["anyOf"])
        ]
    return found


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


def gemini_chunks(response: dict[str, Any], pieces: int = 4) -> list[dict[str, Any]]:
    """A generateContent answer as the partial responses of its stream: the answer text in
    `pieces` (thought parts first, whole), the last carrying the finish reason and the usage."""
    meta: dict[str, Any] = {k: response[k] for k in ("modelVersion", "responseId") if k in response}
    candidates = response.get("candidates") or []
    if not candidates:
        return [response]
    candidate = candidates[0]
    parts = candidate.get("content", {}).get("parts", [])
    thoughts = [part for part in parts if part.get("thought")]
    text = "".join(part.get("text", "") for part in parts if not part.get("thought"))
    events: list[dict[str, Any]] = []
    for n, piece in enumerate(_pieces(text, pieces)):
        chunk_parts = ([*thoughts] if n == 0 else []) + [{"text": piece}]
        events.append(
            {
                "candidates": [{"content": {"role": "model", "parts": chunk_parts}, "index": 0}],
                **meta,
            }
        )
    last = events[-1]["candidates"][0]
    if "finishReason" in candidate:
        last["finishReason"] = candidate["finishReason"]
    if "usageMetadata" in response:
        events[-1]["usageMetadata"] = response["usageMetadata"]
    return events


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
