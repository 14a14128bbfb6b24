"""A local fake of the Anthropic Messages API, for driving the real SDK in tests.

``FakeAnthropic`` serves ``POST /v1/messages`` on 127.0.0.1 (a free port) from a background
thread. Each request takes the next scripted behaviour from a queue (when it is empty, a
default answer); plain JSON and SSE streaming (``"stream": true``) follow the real API's
shapes so the SDK parses them unchanged. Every request is recorded (headers + JSON body).
A ``responder`` (request body -> Reply) answers in place of the default when the queue is
empty, so a whole search can be scripted by what each prompt asks for.

    with FakeAnthropic() as fake:
        fake.push(Reply.error(529), Reply.answer("CHANGE: ...\\n```python ...```"))
        client = anthropic.Anthropic(api_key="sk-ant-test-XXXX", base_url=fake.url)
"""
from __future__ import annotations

import json
import socket
import struct
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

DEFAULT_TEXT = "CHANGE: default fake answer\n```python\nclass Model:\n    pass\n```\n"

_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 429: "rate_limit_error", 500: "api_error", 502: "api_error",
    503: "api_error", 529: "overloaded_error",
}


@dataclass
class Reply:
    """One scripted behaviour of the fake server."""

    kind: str  # "answer" | "error" | "hang" | "truncate"
    text: str = DEFAULT_TEXT
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=lambda: {
        "input_tokens": 1200, "output_tokens": 300,
        "cache_creation_input_tokens": 2000, "cache_read_input_tokens": 0})
    seconds: float = 0.0  # hang duration
    chunks_before_cut: int = 2  # truncate: text deltas sent before the connection drops
    clean_end: bool = False  # truncate: end the body properly, just without message_stop
    stop_reason: str = "end_turn"
    thinking: str = ""  # when set, a thinking block precedes the text (adaptive-thinking models)

    @classmethod
    def answer(cls, text: str, **usage: int) -> "Reply":
        r = cls("answer", text=text)
        r.usage = {**r.usage, **usage}
        return r

    @classmethod
    def error(cls, status: int, retry_after: float | None = None, message: str | None = None) -> "Reply":
        headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
        return cls("error", status=status, headers=headers,
                   text=message or {529: "Overloaded", 429: "Rate limited"}.get(status, "Internal server error"))

    @classmethod
    def hang(cls, seconds: float) -> "Reply":
        return cls("hang", seconds=seconds)

    @classmethod
    def truncate(cls, text: str = DEFAULT_TEXT, chunks_before_cut: int = 2, clean_end: bool = False) -> "Reply":
        return cls("truncate", text=text, chunks_before_cut=chunks_before_cut, clean_end=clean_end)


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: dict[str, Any]


def _chunks(text: str, n: int = 4) -> list[str]:
    size = max(1, len(text) // n + 1)
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = {"_unparsed": raw.decode("utf-8", "replace")}
        fake = self.server.fake
        fake._record(Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        self.close_connection = True
        if self.path.split("?")[0] != "/v1/messages":
            return self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": "no such path"}})
        reply = fake._next(body)
        try:
            if reply.kind == "hang":
                fake._stopping.wait(reply.seconds)  # returns at once when the server shuts down
                return self._json(500, {"type": "error", "error": {"type": "api_error", "message": "late"}})
            if reply.kind == "error":
                return self._json(reply.status, {"type": "error", "error": {
                    "type": _ERROR_TYPES.get(reply.status, "api_error"), "message": reply.text}}, reply.headers)
            if body.get("stream"):
                return self._sse(reply, body)
            if reply.kind == "truncate":
                return self._cut_json(reply, body)
            return self._json(200, self._message(reply, body))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout); nothing to answer

    # -- responses ------------------------------------------------------------------------

    def _message(self, reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": "msg_fake01", "type": "message", "role": "assistant",
            "model": body.get("model", "unknown"),
            "content": ([{"type": "thinking", "thinking": reply.thinking, "signature": "sig_fake"}]
                        if reply.thinking else []) + [{"type": "text", "text": reply.text}],
            "stop_reason": reply.stop_reason, "stop_sequence": None, "usage": dict(reply.usage),
        }

    def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", "req_fake")
        self.send_header("connection", "close")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _cut_json(self, reply: Reply, body: dict[str, Any]) -> None:
        data = json.dumps(self._message(reply, body)).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self._reset()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _event(self, name: str, payload: dict[str, Any]) -> None:
        self._chunk(f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode())

    def _sse(self, reply: Reply, body: dict[str, Any]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("request-id", "req_fake")
        self.send_header("connection", "close")
        self.end_headers()
        usage = dict(reply.usage)
        start = self._message(reply, body)
        start.update(content=[], stop_reason=None, usage={**usage, "output_tokens": 1})
        self._event("message_start", {"type": "message_start", "message": start})
        index = 0
        if reply.thinking:
            self._event("content_block_start", {"type": "content_block_start", "index": 0,
                                                "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
            for piece in _chunks(reply.thinking, 2):
                self._event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                    "delta": {"type": "thinking_delta", "thinking": piece}})
            self._event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                "delta": {"type": "signature_delta", "signature": "sig_fake"}})
            self._event("content_block_stop", {"type": "content_block_stop", "index": 0})
            index = 1
        self._event("content_block_start", {"type": "content_block_start", "index": index,
                                            "content_block": {"type": "text", "text": ""}})
        self._event("ping", {"type": "ping"})
        pieces = _chunks(reply.text)
        for i, piece in enumerate(pieces):
            if reply.kind == "truncate" and i >= reply.chunks_before_cut:
                if reply.clean_end:
                    self.wfile.write(b"0\r\n\r\n")  # a well-formed end of body, minus the last events
                    self.wfile.flush()
                    return
                return self._reset()
            self._event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                "delta": {"type": "text_delta", "text": piece}})
        self._event("content_block_stop", {"type": "content_block_stop", "index": index})
        self._event("message_delta", {"type": "message_delta",
                                      "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
                                      "usage": {"output_tokens": usage["output_tokens"]}})
        self._event("message_stop", {"type": "message_stop"})
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _reset(self) -> None:
        # SO_LINGER 0 makes close() send RST: the client sees a dropped connection mid-body.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: "FakeAnthropic"


class FakeAnthropic:
    """The fake server; use as a context manager (or call ``start``/``stop``)."""

    def __init__(self, default: Reply | None = None,
                 responder: Callable[[dict[str, Any]], Reply] | None = None) -> None:
        self.default = default or Reply.answer(DEFAULT_TEXT)
        self.responder = responder
        self.requests: list[Recorded] = []
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def push(self, *replies: Reply) -> "FakeAnthropic":
        with self._lock:
            self._queue.extend(replies)
        return self

    def _next(self, body: dict[str, Any] | None = None) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            responder = self.responder
        return responder(body or {}) if responder is not None else self.default

    def _record(self, rec: Recorded) -> None:
        with self._lock:
            self.requests.append(rec)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def start(self) -> "FakeAnthropic":
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-anthropic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> "FakeAnthropic":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
