"""Execution layer: where evaluations run (isolated local processes; see :mod:`.local`)."""
from __future__ import annotations

from .base import EvalRequest, Executor, JobEvent, TrainConfig
from .devices import DeviceError, parse_device, worker_devices
from .local import LocalExecutor
from .oneshot import evaluate_isolated, run_one
from .sandbox import SandboxPolicy

__all__ = [
    "EvalRequest", "Executor", "JobEvent", "TrainConfig", "DeviceError", "parse_device",
    "worker_devices", "LocalExecutor", "evaluate_isolated", "run_one", "SandboxPolicy",
]
