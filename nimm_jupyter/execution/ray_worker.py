"""The worker side of the Ray executor: what runs inside a Ray worker process.

Each Ray worker keeps one warm one-slot :class:`~.local.LocalExecutor` (rebuilt when its
settings or GPUs change) and caches the tasks it was sent, keyed by object reference; an
evaluation runs through that executor's jailed job and its progress is pushed to the driver's
mailbox in batches. The driver side is :mod:`.ray_executor`.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from ..modeling.config import TrainConfig
from ..modeling.result import EvalResult
from ..modeling.scoring import predictions_file
from ..tasks.base import Task
from .base import EvalRequest

_FLUSH_S = 0.25  # how often a worker pushes buffered progress to the mailbox
_MAILBOX_TIMEOUT_S = 10.0
_WORKER_TASK_CACHE = 4


# -- worker side (runs inside a Ray worker process) -----------------------------------------
# One warm LocalExecutor per Ray worker process (rebuilt when its settings or GPUs change)
# and the tasks it has seen, keyed by object reference.
_WORKER: dict[str, Any] = {"key": None, "executor": None, "scratch": None,
                           "tasks": collections.OrderedDict()}


def _worker_task(ref: Any) -> Task:
    import ray

    cache: collections.OrderedDict = _WORKER["tasks"]
    key = ref.hex()
    task = cache.get(key)
    if task is None:
        task = ray.get(ref)
        cache[key] = task
        while len(cache) > _WORKER_TASK_CACHE:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return task


def _worker_scratch() -> str:
    """This Ray worker's scratch dir, ``<tmp>/nimm-ray-<uid>/w<pid>``; sweeps those of dead workers.

    Ray ends its workers without running exit handlers (and cancel/crash SIGKILLs them), so a
    worker cannot clean up after itself: the next worker on the node does it instead.
    """
    mine = _WORKER.get("scratch")
    if mine and os.path.isdir(mine):
        return mine
    parent = os.path.join(tempfile.gettempdir(), f"nimm-ray-{os.getuid()}")
    os.makedirs(parent, mode=0o700, exist_ok=True)
    if os.lstat(parent).st_uid != os.getuid():  # someone else's (or a planted link)
        mine = tempfile.mkdtemp(prefix="nimm-ray-")
    else:
        mine = os.path.join(parent, f"w{os.getpid()}")
        os.makedirs(mine, mode=0o700, exist_ok=True)
        import shutil

        for name in os.listdir(parent):
            dead = name[1:].isdigit() and not os.path.exists(f"/proc/{name[1:]}")
            if name.startswith("w") and dead:
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
    _WORKER["scratch"] = mine
    return mine


def _worker_executor(device: str, threads: int, local_kw: dict[str, Any]) -> Any:
    from .local import LocalExecutor

    key = (device, threads, os.environ.get("CUDA_VISIBLE_DEVICES"), repr(sorted(local_kw.items())))
    if _WORKER["key"] != key or _WORKER["executor"] is None:
        if _WORKER["executor"] is not None:
            _WORKER["executor"].shutdown()
        _WORKER["executor"] = None
        saved = tempfile.tempdir
        tempfile.tempdir = _worker_scratch()  # LocalExecutor makes its root with mkdtemp()
        try:
            _WORKER["executor"] = LocalExecutor(workers=1, device=device,
                                                threads_per_worker=threads, **local_kw)
        finally:
            tempfile.tempdir = saved
        _WORKER["key"] = key
    return _WORKER["executor"]


def _evaluate_in_worker(job_id: str, task_box: list, source: str, config: dict[str, Any],
                        timeout: float, memory_mb: int, device: str, threads: int,
                        local_kw: dict[str, Any], mailbox: Any, attempt: int) -> dict[str, Any]:
    """Body of one Ray task: run the evaluation isolated, stream progress, return the result.

    ``task_box`` is ``[ObjectRef]`` (a nested reference, so Ray does not resolve it for us and
    the worker can reuse the task it already holds). ``mailbox`` is a ``ray.util.queue.Queue``
    of ``(kind, job_id, payload)`` messages; pushes do not wait, except the last. Returns
    ``{"result": dict, "weights": bytes | None, "predictions": bytes | None}`` (the scored
    val/test predictions as ``.npz``, written by the worker's driver side): plain data, never objects built by
    candidate code.
    """
    import ray

    cfg = TrainConfig(**config)
    wanted_weights = cfg.save_weights
    weights_dir = None
    if wanted_weights:
        # The driver's path may not exist on this node: save locally, ship the bytes back.
        weights_dir = tempfile.mkdtemp(prefix="weights-", dir=_worker_scratch())
        cfg = dataclasses.replace(cfg, save_weights=os.path.join(weights_dir, "weights.pt"))
    info = {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id(),
            "hostname": socket.gethostname(), "attempt": attempt,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    last_push: list[Any] = []

    def push(items: list[tuple[str, str, dict[str, Any]]]) -> None:
        try:  # actor calls from one caller run in order: no need to wait for each one
            last_push[:] = [mailbox.actor.put_nowait_batch.remote(items)]
        except Exception:  # noqa: BLE001 - progress is best effort; the result is what counts
            pass

    push([("started", job_id, info)])
    task = _worker_task(task_box[0])
    executor = _worker_executor(device, threads, local_kw)
    inner_id = f"{job_id}#{attempt}"
    executor.submit(EvalRequest(job_id=inner_id, source=source, task=task, config=cfg,
                                timeout=timeout, memory_mb=memory_mb))
    buffered: list[tuple[str, str, dict[str, Any]]] = []
    last_flush = time.monotonic()
    result: EvalResult | None = None
    try:
        while result is None:
            for ev in executor.poll(_FLUSH_S):
                if ev.job_id != inner_id:
                    continue
                if ev.kind == "progress":
                    buffered.append(("progress", job_id, dict(ev.progress or {})))
                elif ev.kind == "done":
                    result = ev.result
            if buffered and (result is not None or time.monotonic() - last_flush >= _FLUSH_S):
                push(buffered)
                buffered, last_flush = [], time.monotonic()
    except BaseException:
        executor.cancel(inner_id)
        raise
    assert result is not None
    try:  # what was pushed must reach the driver before this task's result does
        ray.get(last_push, timeout=_MAILBOX_TIMEOUT_S)
    except Exception:  # noqa: BLE001
        pass
    weights = predictions = None
    if wanted_weights and result.weights_path:
        try:
            weights = Path(result.weights_path).read_bytes()
        except OSError as exc:
            result.notes.append(f"the weights file could not be read on the worker: {exc}")
        try:  # written by the worker's driver side (job.py), not by the candidate
            predictions = predictions_file(result.weights_path).read_bytes()
        except OSError:
            pass
        result.weights_path = None
    if weights_dir is not None:
        import shutil

        shutil.rmtree(weights_dir, ignore_errors=True)
    return {"result": result.to_dict(), "weights": weights, "predictions": predictions}
