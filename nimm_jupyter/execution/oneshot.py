"""One evaluation to completion: :func:`run_one` (a request, on a given or a fresh executor)
and :func:`evaluate_isolated` (a candidate's source on a task, in a fresh sandboxed process).
The driver-side conveniences over :class:`~.local.LocalExecutor` that commands, benchmarks and
the search's side jobs (distill probes, what-if forecasts) use."""
from __future__ import annotations

import uuid
from typing import Callable

from ..modeling.result import EvalResult
from ..tasks.base import Task
from .base import EVAL_TIMEOUT_S, EvalRequest, Executor, TrainConfig
from .local import LocalExecutor
from .sandbox import SandboxPolicy

__all__ = ["run_one", "evaluate_isolated"]


def run_one(request: EvalRequest, executor: Executor | None = None,
            progress: Callable[[dict[str, float]], None] | None = None) -> EvalResult:
    """Run one request to completion (on ``executor``, or a fresh one-worker executor)."""
    if executor is None:
        with LocalExecutor(workers=1) as own:
            own.submit(request)
            return own.wait(request.job_id, progress)
    if isinstance(executor, LocalExecutor):
        executor.submit(request)
        try:
            return executor.wait(request.job_id, progress)
        except BaseException:
            executor.cancel(request.job_id)
            raise
    if executor.running():
        raise RuntimeError("run_one on a generic executor needs it idle (running() == 0)")
    executor.submit(request)
    try:
        while True:
            for ev in executor.poll(0.25):
                if ev.job_id != request.job_id:
                    continue
                if ev.kind == "progress" and progress is not None:
                    progress(ev.progress or {})
                elif ev.kind == "done":
                    return ev.result  # type: ignore[return-value]
    except BaseException:
        executor.cancel(request.job_id)
        raise


def evaluate_isolated(task: Task, source: str, config: TrainConfig | None = None, *,
                      timeout: float = EVAL_TIMEOUT_S, memory_mb: int = 4096, device: str = "auto",
                      threads: int = 1, policy: SandboxPolicy | None = None,
                      progress: Callable[[dict[str, float]], None] | None = None) -> EvalResult:
    """Evaluate one candidate in a fresh sandboxed process and return its result."""
    request = EvalRequest(job_id=uuid.uuid4().hex[:12], source=source, task=task,
                          config=config or TrainConfig(), timeout=timeout, memory_mb=memory_mb)
    with LocalExecutor(workers=1, device=device, threads_per_worker=threads, policy=policy) as ex:
        ex.submit(request)
        return ex.wait(request.job_id, progress)
