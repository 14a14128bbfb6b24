"""Execution layer: where evaluations run (isolated local processes; see :mod:`.local`)."""
from __future__ import annotations

# modeling/__init__ imports the harness, which imports execution.base: load modeling first
# so that importing this package (or execution.base) before modeling cannot hit the cycle.
from ..modeling.result import EvalResult  # noqa: F401  (import order, see above)
from .base import EvalRequest, Executor, JobEvent, TrainConfig
from .devices import DeviceError, parse_device, worker_devices
from .local import LocalExecutor, evaluate_isolated, run_one
from .sandbox import SandboxPolicy

__all__ = [
    "EvalRequest", "Executor", "JobEvent", "TrainConfig", "DeviceError", "parse_device",
    "worker_devices", "LocalExecutor", "evaluate_isolated", "run_one", "SandboxPolicy",
]
