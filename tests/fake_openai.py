"""A local fake of an OpenAI-compatible chat-completions server, for driving the real SDK.

``FakeOpenAI`` serves ``POST /v1/chat/completions`` on 127.0.0.1 (a free port): plain JSON
or SSE streaming (``"stream": true``, with a final usage chunk when
``stream_options.include_usage`` is set). Each request takes the next scripted ``Step`` from a
queue, else asks ``responder(body) -> str`` for the answer text, else sends a default. Every
request body is recorded.
"""
from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any, Callable

from fake_anthropic import _Handler as AnthropicHandler

DEFAULT_TEXT = "CHANGE: default fake answer\n```python\nclass Model:\n    pass\n```\n"


@dataclass
class Step:
    """One scripted behaviour: an answer, an HTTP error, or a stream cut before its end."""

    kind: str = "answer"  # "answer" | "error" | "cut"
    text: str = DEFAULT_TEXT
    status: int = 200
    finish_reason: str = "stop"
    prompt_tokens: int = 3000
    cached_tokens: int = 1000
    completion_tokens: int = 250
    retry_after: float | None = None


class _Handler(AnthropicHandler):  # its JSON writer and quiet log; the routes are ours
    server: "_Server"  # type: ignore[assignment]

    def do_POST(self) -> None:  # noqa: N802
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        body = json.loads(raw or b"{}")
        fake = self.server.fake
        fake._record(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        self.close_connection = True
        if self.path.split("?")[0] != "/v1/chat/completions":
            return self._json(404, {"error": {"message": "no such path", "type": "not_found"}})
        step = fake._next(body)
        if step.kind == "error":
            headers = {"retry-after": f"{step.retry_after:g}"} if step.retry_after is not None else {}
            return self._json(step.status, {"error": {"message": f"fake error {step.status}",
                                                      "type": "server_error", "code": None}}, headers)
        if body.get("stream"):
            return self._sse(step, body)
        return self._json(200, {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": body.get("model"),
            "choices": [{"index": 0, "finish_reason": step.finish_reason,
                         "message": {"role": "assistant", "content": step.text}}],
            "usage": self._usage(step)})

    @staticmethod
    def _usage(step: Step) -> dict[str, Any]:
        return {"prompt_tokens": step.prompt_tokens, "completion_tokens": step.completion_tokens,
                "total_tokens": step.prompt_tokens + step.completion_tokens,
                "prompt_tokens_details": {"cached_tokens": step.cached_tokens}}

    def _sse(self, step: Step, body: dict[str, Any]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()

        def chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> None:
            payload = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0,
                       "model": body.get("model"), "choices": choices, "usage": usage}
            self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
            self.wfile.flush()

        size = max(1, len(step.text) // 4 + 1)
        pieces = [step.text[i:i + size] for i in range(0, len(step.text), size)]
        for i, piece in enumerate(pieces):
            if step.kind == "cut" and i >= 2:
                return  # the body ends without a finish_reason
            chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        chunk([{"index": 0, "delta": {}, "finish_reason": step.finish_reason}])
        if (body.get("stream_options") or {}).get("include_usage"):
            chunk([], self._usage(step))
        self.wfile.write(b"data: [DONE]\n\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: "FakeOpenAI"


class FakeOpenAI:
    """The fake server; use as a context manager. ``url`` is the SDK's ``base_url``."""

    def __init__(self, responder: Callable[[dict[str, Any]], str] | None = None) -> None:
        self.responder = responder
        self.requests: list[dict[str, Any]] = []  # {"path", "headers", "body"}
        self._queue: deque[Step] = deque()
        self._lock = threading.Lock()
        self._server: _Server | None = None

    @property
    def url(self) -> str:
        """The SDK's ``base_url`` (the server runs inside the ``with`` block)."""
        return "http://{}:{}/v1".format(*self._server.server_address[:2])  # type: ignore[union-attr]

    def push(self, *steps: Step) -> None:
        """Queue behaviours for the next requests, in order."""
        with self._lock:
            self._queue.extend(steps)

    def _next(self, body: dict[str, Any]) -> Step:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        return Step(text=self.responder(body)) if self.responder is not None else Step()

    def _record(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append({"path": path, "headers": headers, "body": body})

    def __enter__(self) -> "FakeOpenAI":
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True, name="fake-openai").start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
