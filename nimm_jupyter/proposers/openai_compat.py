"""A proposer for any OpenAI-compatible chat-completions server, through the ``openai`` SDK.

The same NIMMGen prompts, retries, accounting and key scrubbing as the Claude proposer
(:class:`~.chat.ChatProposer`), sent as ``POST {base_url}/chat/completions``: OpenAI itself,
another provider, or a local model server (vLLM, llama.cpp, Ollama, LM Studio, ...).

``base_url`` defaults to the SDK's default, which honours ``OPENAI_BASE_URL``; the key is read
from ``OPENAI_API_KEY`` only (a local server that needs none still wants a placeholder
there). Usage is mapped onto the Anthropic names: cached prompt tokens
(``prompt_tokens_details.cached_tokens``) are cache reads, the rest uncached input; these
APIs report no cache writes. Models without a known price cost 0 with ``price_known`` False.
Install with ``pip install 'nimm-jupyter[openai]'``.
"""
from __future__ import annotations

from typing import Any

from .chat import ChatProposer, Fault, MissingAPIKeyError, Reply, retry_after

__all__ = ["OpenAICompatProposer", "MissingAPIKeyError", "DEFAULT_MODEL"]

DEFAULT_MODEL = "gpt-5"
API_KEY_ENV = "OPENAI_API_KEY"
RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
STREAM_ENDED_EARLY = "stream ended early"


class _StreamEndedEarly(Exception):
    pass


def _openai() -> Any:
    try:
        import openai
    except ImportError as exc:  # an optional extra
        raise ImportError("the openai proposer needs the openai SDK: "
                          "pip install 'nimm-jupyter[openai]'") from exc
    return openai


def _usage(usage: Any) -> dict[str, int]:
    if usage is None:
        return {}
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    details = getattr(usage, "prompt_tokens_details", None)
    cached = int(getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
    return {"input_tokens": prompt - cached, "output_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached}


def _stop(finish_reason: str | None) -> str | None:
    return "max_tokens" if finish_reason == "length" else finish_reason


class OpenAICompatProposer(ChatProposer):
    """NIMMGen proposer over an OpenAI-compatible API (options: :class:`~.chat.ChatProposer`)."""

    name = "openai"
    provider = "OpenAI-compatible"
    api_key_env = API_KEY_ENV
    default_model = DEFAULT_MODEL

    def _make_client(self, api_key: str, base_url: str | None) -> Any:
        kw: dict[str, Any] = {"api_key": api_key, "max_retries": 0, "timeout": self.timeout}
        if base_url is not None:
            kw["base_url"] = base_url
        return _openai().OpenAI(**kw)

    def _send(self, system: list[dict[str, Any]], user: str) -> Reply:
        request: dict[str, Any] = {
            "model": self.model, "max_tokens": self.max_tokens,
            # one system message: these servers cache a repeated prefix on their own
            "messages": [{"role": "system", "content": "\n\n".join(b["text"] for b in system)},
                         {"role": "user", "content": user}],
        }
        if self.temperature is not None:
            request["temperature"] = self.temperature
        completions = self._client.chat.completions
        if not self.stream:
            r = completions.create(**request)
            choice = r.choices[0] if r.choices else None
            return Reply(text=(choice.message.content or "") if choice else "", usage=_usage(r.usage),
                         stop_reason=_stop(choice.finish_reason if choice else None),
                         request_id=getattr(r, "_request_id", None) or r.id)
        parts: list[str] = []
        finish: str | None = None
        usage: dict[str, int] = {}
        request_id = None
        for chunk in completions.create(**request, stream=True, stream_options={"include_usage": True}):
            request_id = request_id or chunk.id
            if chunk.usage is not None:
                usage = _usage(chunk.usage)
            for choice in chunk.choices or []:
                if choice.delta is not None and choice.delta.content:
                    parts.append(choice.delta.content)
                finish = choice.finish_reason or finish
        if finish is None:
            raise _StreamEndedEarly()
        return Reply(text="".join(parts), usage=usage, stop_reason=_stop(finish), request_id=request_id)

    def _fault(self, exc: Exception) -> Fault:
        openai = _openai()
        if isinstance(exc, openai.APIStatusError):
            body = exc.body if isinstance(exc.body, dict) else {}
            err = body.get("error") if isinstance(body.get("error"), dict) else body
            kind = err.get("type") or err.get("code") or type(exc).__name__
            text = err.get("message") or exc.message
            return Fault(f"{self.provider} API error {exc.status_code} ({kind}): {text}",
                         exc.status_code in RETRYABLE_STATUS,
                         retry_after(exc.response.headers if exc.response is not None else {}))
        if isinstance(exc, openai.APITimeoutError):
            return Fault(f"request timed out after {self.timeout:g} s", True)
        if isinstance(exc, openai.APIConnectionError):
            return Fault(f"connection error: {exc.__cause__ or exc}", True)
        if isinstance(exc, (_StreamEndedEarly, OSError)):
            return Fault(f"{STREAM_ENDED_EARLY}" + ("" if isinstance(exc, _StreamEndedEarly)
                                                      else f": {type(exc).__name__}: {exc}"), True)
        if isinstance(exc, openai.OpenAIError):
            return Fault(f"OpenAI SDK error: {type(exc).__name__}: {exc}", False)
        return Fault(f"unexpected error calling the {self.provider} API: {type(exc).__name__}: {exc}", False)
