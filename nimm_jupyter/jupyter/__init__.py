"""Jupyter layer: ``%%nimm_search`` / ``%nimm`` magics, the live ``SearchWidget``, the
cell-insertion comm and the end-of-search summary. The only layer that imports IPython.

``watch(search)`` shows the widget (and the final summary) for a search started from Python.
"""
from __future__ import annotations

from typing import Any

__all__ = ["SearchWidget", "watch", "load_ipython_extension"]


def __getattr__(name: str) -> Any:  # lazy: importing the package must not pull in anywidget
    if name == "SearchWidget":
        from .widget import SearchWidget

        return SearchWidget
    if name in ("watch", "load_ipython_extension"):
        from . import magics

        return getattr(magics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
