"""Build a proposer by name: ``offline``, ``anthropic``, ``replay`` or ``auto``."""
from __future__ import annotations

import os
from typing import Any

from .base import Proposer

NAMES = ("auto", "offline", "anthropic", "replay")


def resolve_name(name: str) -> str:
    """``auto`` means Claude when ``ANTHROPIC_API_KEY`` is set, else the offline grammar."""
    if name == "auto":
        return "anthropic" if os.environ.get("ANTHROPIC_API_KEY", "").strip() else "offline"
    return name


def make_proposer(name: str, *, model: str | None = None, seed: int = 0, **kw: Any) -> Proposer:
    """A proposer by name. ``replay`` needs ``path=`` (or the name ``replay:PATH``)."""
    if name.startswith("replay:"):
        name, kw["path"] = "replay", name.split(":", 1)[1]
    name = resolve_name(name)
    if name == "offline":
        from .offline import OfflineProposer

        return OfflineProposer(seed=seed, **kw)
    if name == "anthropic":
        from .anthropic import AnthropicProposer

        return AnthropicProposer(model=model, seed=seed, **kw)
    if name == "replay":
        from .replay import ReplayProposer

        if not kw.get("path"):
            raise ValueError("the replay proposer needs a file: pass path=... "
                             "(CLI: --proposer replay --replay FILE)")
        return ReplayProposer(seed=seed, **kw)
    raise ValueError(f"unknown proposer {name!r}; choose from {', '.join(NAMES)}")
