"""The Claude proposer: NIMMGen prompts sent through the official ``anthropic`` SDK.

One Messages API call per operation (strategies, draft, refine, debug). Transient failures —
HTTP 408/429/500/502/503/504/529, connection errors, timeouts and streams that end before
``message_stop`` — are retried with exponential backoff and jitter; anything else becomes a
:class:`~nimm_jupyter.proposers.base.Proposal` with ``error`` set, never an exception (the
loop, accounting and key scrubbing are :class:`~.chat.ChatProposer`'s). The task block of
the system prompt is marked for prompt caching; cache writes and reads are counted apart.

The API key is read from ``ANTHROPIC_API_KEY`` (or passed in), handed to the SDK client and
scrubbed from every text this module returns or raises.
"""
from __future__ import annotations

import re
from typing import Any

import anthropic

from .chat import USAGE_KEYS, ChatProposer, Fault, MissingAPIKeyError, Reply, retry_after

__all__ = ["AnthropicProposer", "MissingAPIKeyError", "DEFAULT_MODEL"]

DEFAULT_MODEL = "claude-sonnet-5-5"  # the current Sonnet (Nov 2026)
API_KEY_ENV = "ANTHROPIC_API_KEY"
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504, 529})
STREAM_ENDED_EARLY = "stream ended early"


class _StreamEndedEarly(Exception):
    pass


def _transport_errors() -> tuple[type[BaseException], ...]:
    # Errors raised while iterating a stream are not wrapped by the SDK; they come from its
    # HTTP library (httpx2 in anthropic 2.x, httpx before) or straight from the socket.
    errors: list[type[BaseException]] = [OSError]
    for module in ("httpx2", "httpx"):
        try:
            mod = __import__(module)
        except ImportError:
            continue
        for name in ("TransportError", "StreamError"):
            cls = getattr(mod, name, None)
            if isinstance(cls, type):
                errors.append(cls)
    return tuple(errors)


_TRANSPORT_ERRORS = _transport_errors()


def _usage_dict(usage: Any) -> dict[str, int]:
    return {k: int(getattr(usage, k, 0) or 0) for k in USAGE_KEYS}


class AnthropicProposer(ChatProposer):
    """NIMMGen proposer backed by Claude (see :class:`~.chat.ChatProposer` for the options).

    ``base_url`` defaults to the SDK's own default (which honours ``ANTHROPIC_BASE_URL``).
    ``temperature`` is sent only when given; Claude Sonnet 5 and later models reject
    non-default values with HTTP 400, which comes back as a Proposal error.
    """

    name = "anthropic"
    provider = "Anthropic"
    api_key_env = API_KEY_ENV
    default_model = DEFAULT_MODEL
    key_pattern = re.compile(r"sk-ant-[A-Za-z0-9_\-]{4,}")

    def _make_client(self, api_key: str, base_url: str | None) -> Any:
        kw: dict[str, Any] = {"api_key": api_key, "max_retries": 0, "timeout": self.timeout}
        if base_url is not None:
            kw["base_url"] = base_url
        return anthropic.Anthropic(**kw)

    def _send(self, system: list[dict[str, Any]], user: str) -> Reply:
        request: dict[str, Any] = {
            "model": self.model, "max_tokens": self.max_tokens, "system": system,
            "messages": [{"role": "user", "content": user}],
        }
        if self.temperature is not None:
            # Sent as a raw body field: anthropic 2.x dropped sampling parameters from its
            # method signatures, and Sonnet 5 and later answer 400 to non-default values.
            request["extra_body"] = {"temperature": self.temperature}
        return self._stream_once(request) if self.stream else self._create_once(request)

    def _fault(self, exc: Exception) -> Fault:
        if isinstance(exc, anthropic.APIStatusError):
            headers = exc.response.headers if exc.response is not None else {}
            return Fault(self._status_message(exc), exc.status_code in RETRYABLE_STATUS,
                         retry_after(headers))
        if isinstance(exc, anthropic.APITimeoutError):
            return Fault(f"request timed out after {self.timeout:g} s", True)
        if isinstance(exc, anthropic.APIConnectionError):
            return Fault(f"connection error: {exc.__cause__ or exc}", True)
        if isinstance(exc, _StreamEndedEarly):
            return Fault(STREAM_ENDED_EARLY, True)
        if isinstance(exc, _TRANSPORT_ERRORS):  # broke off while reading the stream
            return Fault(f"{STREAM_ENDED_EARLY}: {type(exc).__name__}: {exc}", True)
        if isinstance(exc, anthropic.AnthropicError):  # malformed response and the like
            return Fault(f"Anthropic SDK error: {type(exc).__name__}: {exc}", False)
        return Fault(f"unexpected error calling the Anthropic API: {type(exc).__name__}: {exc}", False)

    def _stream_once(self, request: dict[str, Any]) -> _Reply:
        parts: list[str] = []
        saw_stop = False
        with self._client.messages.stream(**request) as stream:
            for event in stream:
                if event.type == "content_block_delta" and getattr(event.delta, "type", "") == "text_delta":
                    parts.append(event.delta.text)
                elif event.type == "message_stop":
                    saw_stop = True
            if not saw_stop:
                raise _StreamEndedEarly()
            message = stream.get_final_message()
            request_id = stream.request_id
        return Reply(text="".join(parts), usage=_usage_dict(message.usage),
                      stop_reason=message.stop_reason, request_id=request_id)

    def _create_once(self, request: dict[str, Any]) -> _Reply:
        message = self._client.messages.create(**request)
        text = "".join(b.text for b in message.content if getattr(b, "type", "") == "text")
        return Reply(text=text, usage=_usage_dict(message.usage), stop_reason=message.stop_reason,
                      request_id=getattr(message, "_request_id", None))

    def _status_message(self, exc: anthropic.APIStatusError) -> str:
        body = exc.body if isinstance(exc.body, dict) else {}
        err = body.get("error") if isinstance(body.get("error"), dict) else {}
        kind = err.get("type") or type(exc).__name__
        text = err.get("message") or exc.message
        return self._scrub(f"Anthropic API error {exc.status_code} ({kind}): {text}")
