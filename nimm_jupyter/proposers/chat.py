"""What every chat-model proposer shares: the NIMMGen operations, retries, accounting, scrubbing.

A subclass says how to build its SDK client, send one request and classify an SDK error;
everything else — one call per operation (strategies, draft, refine, debug), retries of
transient faults with exponential backoff and jitter (the SDK's own retries are off so each
one is visible and testable), token and cost accounting, and scrubbing the API key from
every text returned or raised — lives here, once.

Token accounting: ``Proposal.tokens_in`` is every prompt token the call processed (uncached
input + cache writes + cache reads) and ``tokens_out`` the generated tokens; the split is in
``Proposal.meta["usage"]`` under the Anthropic names (``input_tokens``, ``output_tokens``,
``cache_creation_input_tokens``, ``cache_read_input_tokens``) whatever the provider, and is
priced per kind (see :mod:`.pricing`). Only completed calls are counted.
"""
from __future__ import annotations

import abc
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import prompts
from .base import NodeView, Proposal, ProposalContext, Proposer, Strategy
from .extract import NO_CODE_ERROR, extract_change, extract_code, extract_strategies
from .pricing import call_cost

USAGE_KEYS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


class MissingAPIKeyError(RuntimeError):
    """No API key was given and the provider's environment variable is not set."""


@dataclass
class Reply:
    """One request's outcome, as a subclass's ``_send`` returns it."""

    text: str = ""
    usage: dict[str, int] = field(default_factory=dict)
    stop_reason: str | None = None  # "max_tokens" when the answer was cut off
    request_id: str | None = None
    error: str | None = None
    attempts: int = 0


@dataclass
class Fault:
    """How a subclass classifies an exception from its SDK."""

    message: str
    retry: bool
    retry_after: float | None = None


class ChatProposer(Proposer, abc.ABC):
    """NIMMGen proposer over a chat-model API; see the module docstring.

    ``api_key`` defaults to the ``api_key_env`` environment variable; ``base_url`` to the
    SDK's own default; ``timeout`` is per request (s). ``backoff_base``/``backoff_max`` (s)
    shape retry delays and ``retry_after_max`` caps a server's ``retry-after``; ``sleep`` is
    injectable so tests need not wait; ``seed`` seeds the jitter only. ``temperature`` is
    sent only when given. ``usage`` holds cumulative counters (calls, HTTP requests,
    retries, failed calls, the four token kinds, ``cost_usd``, ``price_known``);
    ``last_call`` is the latest call's Proposal (how the cost of :meth:`strategies` is seen).
    """

    api_key_env = ""
    default_model = ""
    provider = ""  # names the API in error messages
    key_pattern = re.compile(r"sk-[A-Za-z0-9_\-]{8,}")

    def __init__(self, model: str | None = None, *, api_key: str | None = None,
                 base_url: str | None = None, max_tokens: int = 8000,
                 temperature: float | None = None, stream: bool = True, max_retries: int = 4,
                 timeout: float = 120.0, seed: int = 0, backoff_base: float = 1.0,
                 backoff_max: float = 60.0, retry_after_max: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        key = api_key if api_key is not None else os.environ.get(self.api_key_env)
        if not key or not key.strip():
            raise MissingAPIKeyError(
                f"no {self.provider} API key: set the {self.api_key_env} environment variable "
                f"(or pass api_key=...) to use the {self.name} proposer")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.model = model or self.default_model
        self.max_tokens = int(max_tokens)
        self.temperature = temperature
        self.stream = bool(stream)
        self.max_retries = int(max_retries)
        self.timeout = float(timeout)
        self.backoff_base, self.backoff_max = float(backoff_base), float(backoff_max)
        self.retry_after_max = float(retry_after_max)
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._secret = key.strip()
        self._client = self._make_client(self._secret, base_url)
        self._lock = threading.Lock()
        self.usage: dict[str, Any] = {
            "calls": 0, "requests": 0, "retries": 0, "errors": 0, **{k: 0 for k in USAGE_KEYS},
            "cost_usd": 0.0, "price_known": True,
        }
        self.last_call: Proposal | None = None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model={self.model!r}, stream={self.stream}, "
                f"max_retries={self.max_retries})")

    # -- what a subclass provides ---------------------------------------------------------
    @abc.abstractmethod
    def _make_client(self, api_key: str, base_url: str | None) -> Any:
        """The SDK client, with the SDK's own retries switched off."""

    @abc.abstractmethod
    def _send(self, system: list[dict[str, Any]], user: str) -> Reply:
        """One HTTP request; raises the SDK's exceptions (classified by :meth:`_fault`)."""

    @abc.abstractmethod
    def _fault(self, exc: Exception) -> Fault:
        """Whether ``exc`` is worth a retry, and its message (scrubbed by the caller)."""

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
        return self._code_call("refine", ctx, prompts.refine_prompt(ctx, parent, history),
                               "(no CHANGE line given)")

    def debug(self, ctx: ProposalContext, failed: NodeView) -> Proposal:
        return self._code_call("debug", ctx, prompts.debug_prompt(ctx, failed), f"fix {failed.status}")

    def distill(self, ctx: ProposalContext, parent: NodeView, table: str, law: str,
                law_error: str) -> Proposal:
        return self._code_call("distill", ctx, prompts.distill_prompt(ctx, parent, table, law, law_error),
                               "distil the network into a closed-form law")

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
        reply = self._with_retries(prompts.system_blocks(ctx), user)
        usage = {k: int(reply.usage.get(k, 0) or 0) for k in USAGE_KEYS} if reply.usage else {}
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

    def _with_retries(self, system: list[dict[str, Any]], user: str) -> Reply:
        last_error = "no attempt made"
        for attempt in range(self.max_retries + 1):
            try:
                reply = self._send(system, user)
                reply.attempts = attempt + 1
                return reply
            except Exception as exc:  # noqa: BLE001 - a search must outlive a client bug; text scrubbed
                fault = self._fault(exc)
                last_error = self._scrub(fault.message)
                if not fault.retry:
                    return Reply(error=last_error, attempts=attempt + 1)
            if attempt < self.max_retries:
                self._sleep(self._delay(attempt, fault.retry_after))
        return Reply(error=f"{last_error} (gave up after {self.max_retries + 1} attempts)",
                     attempts=self.max_retries + 1)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return max(0.0, min(retry_after, self.retry_after_max))
        # Half-to-full jitter: spreads parallel workers without ever retrying immediately.
        base = min(self.backoff_max, self.backoff_base * (2 ** attempt))
        return base * (0.5 + 0.5 * self._rng.random())

    def _scrub(self, text: str) -> str:
        if not text:
            return text
        if self._secret:
            text = text.replace(self._secret, "[REDACTED]")
        return self.key_pattern.sub("[REDACTED]", text)


def retry_after(headers: Any) -> float | None:
    """A server's ``retry-after-ms`` / ``retry-after`` (seconds) header, if numeric."""
    headers = headers or {}
    try:
        if headers.get("retry-after-ms") is not None:
            return float(headers["retry-after-ms"]) / 1000.0
        if headers.get("retry-after") is not None:
            return float(headers["retry-after"])
    except (TypeError, ValueError):
        return None  # an HTTP-date retry-after: fall back to our own backoff
    return None
