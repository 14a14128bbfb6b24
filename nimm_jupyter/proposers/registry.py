"""Build a proposer from a spec: ``offline``, ``anthropic``, ``openai``, ``replay``, ``replay:FILE`` or ``auto``.

The one place that knows the proposer names and the ``replay:FILE`` shorthand; the search
API, the CLI, the magics and the benchmark all go through :func:`parse_spec` /
:func:`make_proposer`.
"""
from __future__ import annotations

import os
from typing import Any

from .base import Proposer

PROPOSER_NAMES = ("auto", "offline", "anthropic", "openai", "replay")
REPLAY_PREFIX = "replay:"


def resolve_name(name: str) -> str:
    """``auto`` means Claude when ``ANTHROPIC_API_KEY`` is set, else the offline grammar."""
    if name == "auto":
        return "anthropic" if os.environ.get("ANTHROPIC_API_KEY", "").strip() else "offline"
    return name


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """The proposer name a spec resolves to and the options the spec itself carries.

    ``"replay:runs/a.jsonl"`` -> ``("replay", {"path": "runs/a.jsonl"})``; ``"auto"`` ->
    ``("anthropic" | "offline", {})``; any other name comes back as it is (checked by
    :func:`make_proposer`). Store the returned pair to rebuild the same proposer later.
    """
    if not isinstance(spec, str):
        raise TypeError(f"a proposer spec must be a name, got {type(spec).__name__}")
    if spec.startswith(REPLAY_PREFIX):
        return "replay", {"path": spec[len(REPLAY_PREFIX):]}
    return resolve_name(spec), {}


def make_proposer(spec: str, *, model: str | None = None, seed: int = 0,
                  **options: Any) -> Proposer:
    """The proposer ``spec`` names (see :func:`parse_spec`), built with ``options``.

    ``model`` is the chat model (``anthropic``, ``openai``); ``seed`` fixes the offline grammar's
    choices. ``replay`` needs ``path=`` unless the spec is ``replay:FILE``. Raises
    ``ValueError`` for an unknown name or a replay without a file; a proposer's constructor
    may raise its own errors (e.g. a missing API key).
    """
    name, carried = parse_spec(spec)
    options = {**options, **carried}
    if name == "offline":
        from .offline import OfflineProposer

        return OfflineProposer(seed=seed, **options)
    if name == "anthropic":
        from .anthropic import AnthropicProposer

        return AnthropicProposer(model=model, seed=seed, **options)
    if name == "openai":
        from .openai_compat import OpenAICompatProposer

        return OpenAICompatProposer(model=model, seed=seed, **options)
    if name == "replay":
        from .replay import ReplayProposer

        if not options.get("path"):
            raise ValueError("the replay proposer needs a file: pass path=... "
                             "(CLI: --proposer replay --replay FILE)")
        return ReplayProposer(seed=seed, **options)
    raise ValueError(f"unknown proposer {name!r}; choose from {', '.join(PROPOSER_NAMES)}")
