"""nimm-jupyter: search for neural-integrated mechanistic models from a notebook or the CLI."""
from __future__ import annotations

__version__ = "0.1.0"


from . import search  # noqa: E402,F401  (callable: nimm_jupyter.search(task, ...))


def load_ipython_extension(ipython):  # %load_ext nimm_jupyter
    from .jupyter.magics import load_ipython_extension as _load

    _load(ipython)


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "nimm-jupyter"}]
