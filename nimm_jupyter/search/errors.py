"""The search layer's user-facing error (its own module so every search module can raise it)."""
from __future__ import annotations


class SearchError(RuntimeError):
    """A search could not be started, resumed or read back (the message says why)."""
