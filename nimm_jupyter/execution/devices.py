"""Device strings and GPU slots for evaluation workers.

A device spec is ``"cpu"``, ``"cuda"`` (every visible GPU, one slot per worker in turn),
``"cuda:N"`` (that GPU for every worker) or ``"auto"`` (``"cuda"`` when
``torch.cuda.is_available()``, else ``"cpu"``). Workers get concrete device strings
(``"cpu"``/``"cuda:N"``) that the executor passes to the harness as ``TrainConfig.device``.
"""
from __future__ import annotations

import re

__all__ = ["DeviceError", "cuda_device_count", "parse_device", "worker_devices"]

_PATTERN = re.compile(r"^(cpu|auto|cuda)(?::(\d+))?$")


class DeviceError(ValueError):
    """A device string that is malformed or names hardware this machine lacks."""


def cuda_device_count() -> int:
    """Number of usable CUDA devices (0 when torch has no CUDA support)."""
    import torch

    try:
        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:  # a broken driver reads as "no GPU", never as a crash
        return 0


def parse_device(spec: str) -> str:
    """Normalise a device spec: returns ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    ``"auto"`` resolves here; ``"cuda"`` stays unresolved so that :func:`worker_devices`
    can spread workers over all GPUs. Raises :class:`DeviceError` naming the problem.
    """
    text = str(spec).strip().lower()
    m = _PATTERN.match(text)
    if not m or (m.group(1) in ("cpu", "auto") and m.group(2) is not None):
        raise DeviceError(
            f"bad device {spec!r}; expected 'cpu', 'cuda', 'cuda:N' or 'auto'"
        )
    kind, index = m.group(1), m.group(2)
    if kind == "cpu":
        return "cpu"
    n = cuda_device_count()
    if kind == "auto":
        return "cuda" if n else "cpu"
    if n == 0:
        raise DeviceError(f"device {spec!r} requested but CUDA is not available on this machine")
    if index is not None and int(index) >= n:
        raise DeviceError(
            f"device {spec!r} does not exist; this machine has {n} CUDA device(s): "
            f"cuda:0..cuda:{n - 1}"
        )
    return f"cuda:{int(index)}" if index is not None else "cuda"


def worker_devices(spec: str, workers: int) -> list[str]:
    """One concrete device per worker slot: worker ``i`` gets ``cuda:(i % n_gpus)``."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    device = parse_device(spec)
    if device == "cuda":
        n = cuda_device_count()
        return [f"cuda:{i % n}" for i in range(workers)]
    return [device] * workers
