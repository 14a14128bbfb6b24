"""Pick an executor by name: what the CLI (``--executor``), the magics and the API call.

``"local"`` → :class:`~.local.LocalExecutor`; ``"ray"`` → :class:`~.ray_executor.RayExecutor`;
``"auto"`` → Ray when the ``RAY_ADDRESS`` environment variable is set and ``ray`` can be
imported, else local. An :class:`~.base.Executor` instance is returned unchanged.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Any

from .base import Executor

__all__ = ["ExecutorError", "EXECUTOR_NAMES", "RAY_ONLY_OPTIONS", "make_executor", "ray_available"]

EXECUTOR_NAMES = ("local", "ray", "auto")
RAY_ONLY_OPTIONS = ("num_cpus", "num_gpus", "retries", "runtime_env", "check_resources", "init_kw")


class ExecutorError(ValueError):
    """An executor that cannot be made: unknown name, or the ``ray`` extra is missing."""


def ray_available() -> bool:
    """True when the optional ``ray`` package can be imported."""
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        return False


def make_executor(name: str | Executor = "local", *, workers: int = 1, device: str = "auto",
                  ray_address: str | None = None, **kw: Any) -> Executor:
    """Build the executor called ``name`` with ``workers`` evaluations in flight.

    ``device`` applies to both (for Ray, ``"auto"`` means a GPU per evaluation only when
    ``num_gpus`` is given in ``kw``). ``ray_address`` (else ``RAY_ADDRESS``) selects the
    cluster for ``"ray"``; passing it to ``"local"`` is an error rather than silently ignored.
    Other keywords go to the executor's constructor (e.g. ``memory_mb``; for Ray ``num_cpus``,
    ``num_gpus``, ``retries``); keywords whose value is None are dropped, so a CLI can pass
    its unset options as they are. Raises :class:`ExecutorError` naming what is wrong, also
    for a Ray-only option given to a local executor.
    """
    kw = {k: v for k, v in kw.items() if v is not None}
    if isinstance(name, Executor):
        return name
    if not isinstance(name, str):
        raise ExecutorError(f"executor must be a name ({', '.join(EXECUTOR_NAMES)}) or an "
                            f"Executor, got {type(name).__name__}")
    key = name.strip().lower()
    if key == "auto":
        wants_ray = bool(ray_address or os.environ.get("RAY_ADDRESS"))
        key = "ray" if wants_ray and ray_available() else "local"
    if key == "local":
        if ray_address:
            raise ExecutorError("ray_address was given but the executor is 'local'; "
                                "use executor 'ray' (or 'auto') to run on a Ray cluster")
        ray_only = [k for k in RAY_ONLY_OPTIONS if k in kw]
        if ray_only:
            raise ExecutorError(f"{', '.join(ray_only)} only apply to the Ray executor, but the "
                                "executor is 'local' (use 'ray', or set RAY_ADDRESS with 'auto')")
        from .local import LocalExecutor

        return LocalExecutor(workers=workers, device=device, **kw)
    if key == "ray":
        try:
            from .ray_executor import RayExecutor, import_ray

            import_ray()
        except ImportError as exc:
            raise ExecutorError(str(exc)) from exc
        address = ray_address or os.environ.get("RAY_ADDRESS") or None
        return RayExecutor(address=address, workers=workers, device=device, **kw)
    raise ExecutorError(f"unknown executor {name!r}; expected one of: {', '.join(EXECUTOR_NAMES)}")
