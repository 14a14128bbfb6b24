"""The Claude proposer: NIMMGen prompts sent through the official ``anthropic`` SDK.

One Messages API call per operation (strategies, draft, refine, debug). Transient failures —
HTTP 429/500/502/503/504/529, connection errors, timeouts and streams that end before
``message_stop`` — are retried here with exponential backoff and jitter (the SDK's own
retries are switched off so every retry is visible and testable); anything else becomes a
:class:`~nimm_jupyter.proposers.base.Proposal` with ``error`` set, never an exception.

Token accounting: ``Proposal.tokens_in`` is every prompt token the call processed — uncached
input + cache writes + cache reads — and ``tokens_out`` the generated tokens. The split is kept
in ``Proposal.meta["usage"]`` and priced per kind (see :mod:`.pricing`). Only completed
calls are counted; tokens of a stream that broke off are not known reliably and not counted.

The API key is read from ``ANTHROPIC_API_KEY`` (or passed in), handed to the SDK client and
scrubbed from every text this module returns or raises.
"""
from __future__ import annotations

import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import anthropic

from . import prompts
from .base import NodeView, Proposal, ProposalContext, Proposer, Strategy
from .extract import NO_CODE_ERROR, extract_change, extract_code, extract_strategies
from .pricing import call_cost

DEFAULT_MODEL = "claude-sonnet-5-5"  # the current Sonnet (Nov 2026)
API_KEY_ENV = "ANTHROPIC_API_KEY"
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504, 529})
STREAM_ENDED_EARLY = "stream ended early"

_KEY_PATTERN = re.compile(r"sk-ant-[A-Za-z0-9_\-]{4,}")


class MissingAPIKeyError(RuntimeError):
    """No Anthropic API key was given and ``ANTHROPIC_API_KEY`` is not set."""


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


@dataclass
class _Reply:
    text: str = ""
    usage: dict[str, int] = field(default_factory=dict)
    stop_reason: str | None = None
    request_id: str | None = None
    error: str | None = None
    attempts: int = 0


def _usage_dict(usage: Any) -> dict[str, int]:
    keys = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    return {k: int(getattr(usage, k, 0) or 0) for k in keys}


class AnthropicProposer(Proposer):
    """NIMMGen proposer backed by Claude.

    Parameters mirror the SDK where they can: ``base_url`` defaults to the SDK's own default
    (which honours ``ANTHROPIC_BASE_URL``); ``timeout`` is the per-request timeout in seconds.
    ``backoff_base``/``backoff_max`` (seconds) shape the retry delays; ``retry_after_max``
    caps a server's ``retry-after``. ``sleep`` is injectable so tests need not wait.
    ``seed`` seeds the jitter only (the Messages API has no sampling seed). ``temperature``
    is sent only when given; Claude Sonnet 5 and later models reject non-default values
    with HTTP 400, which comes back as a Proposal error.

    ``usage`` holds cumulative counters (calls, HTTP requests, retries, failed calls, the four
    token kinds, ``cost_usd``, ``price_known``); ``last_call`` is the latest call's Proposal,
    which is how the cost of :meth:`strategies` is visible.
    """

    name = "anthropic"

    def __init__(
        self,
        model: str | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_tokens: int = 8000,
        temperature: float | None = None,
        stream: bool = True,
        max_retries: int = 4,
        timeout: float = 120.0,
        seed: int = 0,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        retry_after_max: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        if not key or not key.strip():
            raise MissingAPIKeyError(
                f"no Anthropic API key: set the {API_KEY_ENV} environment variable "
                "(or pass api_key=...) to use the Claude proposer")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.model = model or DEFAULT_MODEL
        self.max_tokens = int(max_tokens)
        self.temperature = temperature
        self.stream = bool(stream)
        self.max_retries = int(max_retries)
        self.timeout = float(timeout)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.retry_after_max = float(retry_after_max)
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._secret = key.strip()
        client_kw: dict[str, Any] = {"api_key": self._secret, "max_retries": 0, "timeout": self.timeout}
        if base_url is not None:
            client_kw["base_url"] = base_url
        self._client = anthropic.Anthropic(**client_kw)
        self._lock = threading.Lock()
        self.usage: dict[str, Any] = {
            "calls": 0, "requests": 0, "retries": 0, "errors": 0,
            "input_tokens": 0, "output_tokens": 0,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
            "cost_usd": 0.0, "price_known": True,
        }
        self.last_call: Proposal | None = None  # accounting of the latest call (incl. strategies)

    def __repr__(self) -> str:
        return f"AnthropicProposer(model={self.model!r}, stream={self.stream}, max_retries={self.max_retries})"

    # -- Proposer interface ---------------------------------------------------------------

    def strategies(self, ctx: ProposalContext, k: int, exclude: list[Strategy]) -> list[Strategy]:
        """Up to ``k`` distinct strategies; ``[]`` when the call fails (see ``last_call.error``)."""
        if k < 1:
            return []
        call = self._complete("strategies", ctx, prompts.strategies_prompt(k, exclude))
        if call.error is None:
            found = extract_strategies(call.raw, k, exclude)
            call.meta["n_strategies"] = len(found)
            if not found:
                call.error = "response contained no JSON list of strategies"
            self.last_call = call
            return found
        return []

    def draft(self, ctx: ProposalContext, strategy: Strategy | None) -> Proposal:
        fallback = strategy.title if strategy else "independent draft"
        return self._code_call("draft", ctx, prompts.draft_prompt(ctx, strategy), fallback)

    def refine(self, ctx: ProposalContext, parent: NodeView, history: list[NodeView]) -> Proposal:
        return self._code_call("refine", ctx, prompts.refine_prompt(ctx, parent, history), "(no CHANGE line given)")

    def debug(self, ctx: ProposalContext, failed: NodeView) -> Proposal:
        return self._code_call("debug", ctx, prompts.debug_prompt(ctx, failed), f"fix {failed.status}")

    def close(self) -> None:
        self._client.close()

    # -- internals ------------------------------------------------------------------------

    def _code_call(self, operation: str, ctx: ProposalContext, user: str, fallback_change: str) -> Proposal:
        call = self._complete(operation, ctx, user)
        if call.error is not None:
            call.change = fallback_change
            return call
        found = extract_code(call.raw)
        call.change = self._scrub(extract_change(call.raw)) or fallback_change
        if found is None:
            call.error = NO_CODE_ERROR
            if call.meta.get("stop_reason") == "max_tokens":
                call.error += f" (the answer was cut off at max_tokens={self.max_tokens})"
            return call
        call.code = self._scrub(found.code)
        call.meta["truncated"] = found.truncated
        return call

    def _complete(self, operation: str, ctx: ProposalContext, user: str) -> Proposal:
        request: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "system": prompts.system_blocks(ctx),
            "messages": [{"role": "user", "content": user}],
        }
        if self.temperature is not None:
            # Sent as a raw body field: anthropic 2.x dropped sampling parameters from its
            # method signatures, and Sonnet 5 and later answer 400 to non-default values.
            request["extra_body"] = {"temperature": self.temperature}
        reply = self._with_retries(request)
        usage = reply.usage
        cost = call_cost(self.model, **usage) if usage else call_cost(self.model, 0, 0)
        proposal = Proposal(
            code=None, change="", error=self._scrub(reply.error) if reply.error else None,
            tokens_in=usage.get("input_tokens", 0) + usage.get("cache_creation_input_tokens", 0)
            + usage.get("cache_read_input_tokens", 0),
            tokens_out=usage.get("output_tokens", 0), cost=cost.usd, raw=self._scrub(reply.text),
            meta={"operation": operation, "model": self.model, "usage": dict(usage),
                  "attempts": reply.attempts, "stop_reason": reply.stop_reason,
                  "request_id": reply.request_id, "price_known": cost.price_known},
        )
        with self._lock:
            u = self.usage
            u["calls"] += 1
            u["requests"] += reply.attempts
            u["retries"] += max(0, reply.attempts - 1)
            u["errors"] += reply.error is not None
            for k, v in usage.items():
                u[k] += v
            u["cost_usd"] += cost.usd
            if usage and not cost.price_known:
                u["price_known"] = False
        self.last_call = proposal
        return proposal

    def _with_retries(self, request: dict[str, Any]) -> _Reply:
        last_error = "no attempt made"
        for attempt in range(self.max_retries + 1):
            retry_after: float | None = None
            try:
                reply = self._stream_once(request) if self.stream else self._create_once(request)
                reply.attempts = attempt + 1
                return reply
            except anthropic.APIStatusError as exc:
                status = exc.status_code
                last_error = self._status_message(exc)
                if status not in RETRYABLE_STATUS:
                    return _Reply(error=last_error, attempts=attempt + 1)
                retry_after = self._retry_after(exc)
            except anthropic.APITimeoutError:
                last_error = f"request timed out after {self.timeout:g} s"
            except anthropic.APIConnectionError as exc:
                last_error = f"connection error: {self._scrub(str(exc.__cause__ or exc))}"
            except _StreamEndedEarly:
                last_error = STREAM_ENDED_EARLY
            except _TRANSPORT_ERRORS as exc:  # broke off while reading the stream
                last_error = f"{STREAM_ENDED_EARLY}: {type(exc).__name__}: {self._scrub(str(exc))}"
            except anthropic.AnthropicError as exc:  # malformed response and the like
                return _Reply(error=f"Anthropic SDK error: {type(exc).__name__}: {self._scrub(str(exc))}",
                              attempts=attempt + 1)
            except Exception as exc:  # noqa: BLE001 - a search must outlive a client bug; text scrubbed
                return _Reply(error=f"unexpected error calling the Anthropic API: {type(exc).__name__}: "
                                    f"{self._scrub(str(exc))}", attempts=attempt + 1)
            if attempt < self.max_retries:
                self._sleep(self._delay(attempt, retry_after))
        return _Reply(error=f"{last_error} (gave up after {self.max_retries + 1} attempts)",
                      attempts=self.max_retries + 1)

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
        return _Reply(text="".join(parts), usage=_usage_dict(message.usage),
                      stop_reason=message.stop_reason, request_id=request_id)

    def _create_once(self, request: dict[str, Any]) -> _Reply:
        message = self._client.messages.create(**request)
        text = "".join(b.text for b in message.content if getattr(b, "type", "") == "text")
        return _Reply(text=text, usage=_usage_dict(message.usage), stop_reason=message.stop_reason,
                      request_id=getattr(message, "_request_id", None))

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return max(0.0, min(retry_after, self.retry_after_max))
        # Half-to-full jitter: spreads parallel workers without ever retrying immediately.
        base = min(self.backoff_max, self.backoff_base * (2 ** attempt))
        return base * (0.5 + 0.5 * self._rng.random())

    @staticmethod
    def _retry_after(exc: anthropic.APIStatusError) -> float | None:
        headers = exc.response.headers if exc.response is not None else {}
        try:
            if headers.get("retry-after-ms") is not None:
                return float(headers["retry-after-ms"]) / 1000.0
            if headers.get("retry-after") is not None:
                return float(headers["retry-after"])
        except (TypeError, ValueError):
            return None  # an HTTP-date retry-after: fall back to our own backoff
        return None

    def _status_message(self, exc: anthropic.APIStatusError) -> str:
        body = exc.body if isinstance(exc.body, dict) else {}
        err = body.get("error") if isinstance(body.get("error"), dict) else {}
        kind = err.get("type") or type(exc).__name__
        text = err.get("message") or exc.message
        return self._scrub(f"Anthropic API error {exc.status_code} ({kind}): {text}")

    def _scrub(self, text: str) -> str:
        if not text:
            return text
        if self._secret:
            text = text.replace(self._secret, "[REDACTED]")
        return _KEY_PATTERN.sub("[REDACTED]", text)
