"""Executor interface: where evaluations run. The search only talks to this.

A backend (local sandboxed processes, or a Ray cluster) accepts :class:`EvalRequest` objects, runs each
one isolated, and reports :class:`JobEvent` values (epoch progress, then exactly one
``done`` event with an :class:`EvalResult`) through :meth:`Executor.poll`.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field

from ..modeling.config import TrainConfig  # noqa: F401  (re-exported; its home is modeling)
from ..modeling.result import EvalResult
from ..tasks.base import Task

EVAL_TIMEOUT_S = 600.0  # default hard wall-clock limit of one evaluation (s)


@dataclass
class EvalRequest:
    job_id: str
    source: str
    task: Task
    config: TrainConfig = field(default_factory=TrainConfig)
    timeout: float = EVAL_TIMEOUT_S  # hard wall-clock limit (s); the worker's process group is killed
    memory_mb: int = 4096  # address-space limit of the worker
    # a distill probe instead of training: the parent's trained state_dict (bytes of the
    # file the harness saved); the job loads it into ``source``'s model and reports its
    # networks' inputs/outputs on the training split (modeling.network_probe)
    network_probe: bytes | None = None
    # a what-if instead of training: a node's trained state_dict; the job loads it and
    # predicts every split and scenario of ``task`` (modeling.network_probe.predict_trained);
    # the driver scores them and hands the arrays back in ``EvalResult.predictions``
    predict_with: bytes | None = None


@dataclass
class JobEvent:
    job_id: str
    kind: str  # "progress" | "done"
    progress: dict[str, float] | None = None  # {"epoch", "train", "val"}
    result: EvalResult | None = None


class ExecutorLost(RuntimeError):
    """The executor's workers are gone (a cluster lost, a backend shut down under it).

    Raised from :meth:`Executor.poll`; the evaluations in flight are lost. A search stops,
    keeps its journal, and can be resumed once the backend is back. Each backend raises its
    own subclass (e.g. the Ray executor's ``ClusterLostError``), so a caller never names one.
    """


def check_submission(executor: "Executor", request: EvalRequest, open_ids: set[str],
                     closed: bool) -> None:
    """The checks every backend's :meth:`Executor.submit` makes before queueing ``request``:
    the executor is not shut down, the job id is new, and ``request.task`` is a Task."""
    if closed:
        raise RuntimeError(f"this {type(executor).__name__} has been shut down")
    if request.job_id in open_ids:
        raise ValueError(f"job id {request.job_id!r} is already submitted")
    if not isinstance(request.task, Task):
        raise TypeError(f"EvalRequest.task must be a Task, got {type(request.task).__name__}")


class Executor(abc.ABC):
    """Runs candidate evaluations; safe to call from one driver thread."""

    workers: int = 1

    @abc.abstractmethod
    def submit(self, request: EvalRequest) -> None:
        """Queue one evaluation; returns at once."""

    @abc.abstractmethod
    def cancel(self, job_id: str) -> None:
        """Stop a queued or running evaluation; it then reports ``cancelled``."""

    @abc.abstractmethod
    def poll(self, timeout: float = 0.1) -> list[JobEvent]:
        """Events since the last call, waiting up to ``timeout`` s for the first one.

        Raises :class:`ExecutorLost` when the backend can no longer run anything."""

    @abc.abstractmethod
    def running(self) -> int:
        """Number of submitted jobs without a ``done`` event yet."""

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Cancel everything and release workers."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
