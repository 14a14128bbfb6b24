"""Search layer: tree (search -> branches -> nodes), policies, run loop, events, journal.

The package itself is callable, so ``nimm_jupyter.search(task, budget=...)`` runs
:func:`nimm_jupyter.search.api.search` while ``nimm_jupyter.search.<module>`` still names
the layer's modules.
"""
from __future__ import annotations

import sys
import types


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from .api import search

        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
