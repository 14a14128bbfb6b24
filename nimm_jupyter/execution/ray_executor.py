"""Ray executor: the same :class:`~.base.Executor` interface, evaluations spread over a cluster.

Design
------
* Each evaluation is one Ray **remote task** declaring ``num_cpus``/``num_gpus``. Inside the
  Ray worker it runs through a one-slot :class:`~.local.LocalExecutor`, so every isolation
  guarantee of local runs holds on the cluster too: the candidate runs in its own sandboxed
  child process (scrubbed environment, audit-hook guards, wall-clock timeout, memory limit),
  forked from a fork server that the Ray worker keeps warm between evaluations.
* A :class:`~..tasks.base.Task` is ``ray.put`` into the object store **once** (keyed by the
  task object's identity) and passed to every remote call by reference; the worker caches the
  deserialised task per reference. Per evaluation only the source and the TrainConfig travel.
* Progress (epoch losses) is pushed by the worker, in batches, to a ``ray.util.queue.Queue``
  (an actor that needs no CPU and does not import torch) that :meth:`RayExecutor.poll`
  drains; the worker waits for its last push to land before the task returns, so progress
  events always precede their job's ``done`` event.
* :meth:`RayExecutor.cancel` calls ``ray.cancel(ref, force=True)``: the Ray worker process is
  killed, its fork server sees its control socket close and kills the job's process session,
  and the job child dies with the server (``PR_SET_PDEATHSIG``).
* A Ray worker that dies mid-evaluation (killed, node lost, Ray's memory monitor) gives the job
  the status ``crashed`` (``out_of_memory`` for Ray's OOM killer), or a retry when
  ``retries > 0``. Losing the cluster itself raises :class:`ClusterLostError` (an
  :class:`~.base.ExecutorLost`) from :meth:`RayExecutor.poll`, so a search can stop cleanly
  and be resumed from its journal.

``ray`` is imported lazily: importing this module (e.g. for :class:`ClusterLostError`) works
without the optional ``ray`` extra.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..modeling.result import EvalResult, Status
from ..modeling.scoring import predictions_file
from ..tasks.base import Task
from .base import EvalRequest, Executor, ExecutorLost, JobEvent, check_submission

from .ray_worker import _MAILBOX_TIMEOUT_S, _evaluate_in_worker

__all__ = ["RayExecutor", "ClusterLostError", "RAY_EXTRA_HINT", "import_ray"]

RAY_EXTRA_HINT = "the Ray executor needs the optional extra: pip install nimm-jupyter[ray]"
_WAIT_SLICE_S = 0.05  # granularity of poll(): one ray.wait + one mailbox drain per slice
_STARTED_GRACE_S = 60.0  # beyond the job's own timeout, before the driver gives up on a worker
_UNSTARTED_GRACE_S = 600.0  # a worker that never reported (queued, or starting a fork server)


class ClusterLostError(ExecutorLost):
    """The driver lost its Ray cluster (GCS/raylet unreachable, Ray shut down under it).

    Raised from :meth:`RayExecutor.poll`; evaluations in flight are gone. A search should stop,
    keep its journal, and resume once the cluster is back.
    """


def import_ray() -> Any:
    """Import ``ray`` or raise ``ImportError`` with the install hint."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(RAY_EXTRA_HINT) from exc
    return ray


# -- driver side ----------------------------------------------------------------------------
@dataclass
class _RayJob:
    request: EvalRequest
    attempt: int = 0
    ref: Any = None
    dispatched_at: float = 0.0
    started_at: float | None = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    crashes: list[str] = dataclasses.field(default_factory=list)


class RayExecutor(Executor):
    """Run each evaluation as a Ray task, sandboxed inside the Ray worker as it is locally.

    ``address``: a Ray address (``"ray://head:10001"``, ``"head:6379"``, ``"auto"``) or None
    (use ``RAY_ADDRESS`` when set, else start a local Ray instance); ``init_kw`` are more
    ``ray.init`` arguments. When Ray is already initialised in this process the executor uses
    that connection (``address`` is then ignored) and never shuts it down.
    ``workers``: evaluations in flight at once (the rest queue in the driver). ``num_cpus`` /
    ``num_gpus``: resources each evaluation declares (fractions allowed); the candidate gets
    ``max(1, int(num_cpus))`` torch threads. ``device``: ``"auto"`` (``"cuda"`` when
    ``num_gpus > 0``, else ``"cpu"``), ``"cpu"`` or ``"cuda"``. ``retries``: how many times an
    evaluation whose Ray worker died is started again before it is reported ``crashed``.
    ``runtime_env``: passed to each Ray task (e.g. ``{"pip": ["nimm-jupyter"]}`` on a cluster
    whose nodes lack the package). ``**local_kw`` go to the :class:`~.local.LocalExecutor` in
    each worker (``memory_mb``, ``policy``, ``preload``).
    """

    def __init__(self, address: str | None = None, workers: int = 1, num_cpus: float = 1,
                 num_gpus: float = 0, device: str = "auto", retries: int = 0, *,
                 runtime_env: dict[str, Any] | None = None, check_resources: bool = True,
                 init_kw: dict[str, Any] | None = None, **local_kw: Any):
        if int(workers) < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if num_cpus < 0 or num_gpus < 0:
            raise ValueError(f"num_cpus and num_gpus must be >= 0, got {num_cpus}, {num_gpus}")
        if int(retries) < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        spec = str(device).strip().lower()
        if spec == "auto":
            spec = "cuda" if num_gpus > 0 else "cpu"
        if spec not in ("cpu", "cuda"):
            raise ValueError(f"bad device {device!r} for the Ray executor; expected 'auto', 'cpu' "
                             "or 'cuda' (Ray assigns the GPU of each evaluation)")
        if spec == "cuda" and num_gpus <= 0:
            raise ValueError("device 'cuda' needs num_gpus > 0: Ray hides GPUs from tasks that "
                             "do not request one")
        for bad in ("workers", "device", "threads_per_worker"):
            if bad in local_kw:
                raise ValueError(f"{bad!r} is set by the Ray executor, not per worker")
        ray = import_ray()
        self._ray = ray
        self.workers = int(workers)
        self.num_cpus = float(num_cpus)
        self.num_gpus = float(num_gpus)
        self.device = spec
        self.threads = max(1, int(num_cpus))
        self.retries = int(retries)
        self.local_kw = dict(local_kw)
        self.task_puts = 0  # how many tasks went into the object store (diagnostics, tests)
        self._owns_ray = False
        if not ray.is_initialized():
            kw = dict(init_kw or {})
            kw.setdefault("log_to_driver", False)
            kw.setdefault("ignore_reinit_error", True)
            if address is not None:
                kw["address"] = address
            try:
                ray.init(**kw)
            except ConnectionError as exc:
                raise ConnectionError(
                    f"cannot connect to the Ray cluster at {address!r}: {exc}") from exc
            self._owns_ray = True
        if check_resources:
            try:
                self._check_resources()
            except BaseException:
                if self._owns_ray:
                    ray.shutdown()
                raise
        self._remote = ray.remote(_evaluate_in_worker)
        self._mailbox = self._new_mailbox()
        self._runtime_env = runtime_env
        self._task_refs: dict[int, tuple[weakref.ref, Any]] = {}
        self._queue: collections.deque[EvalRequest] = collections.deque()
        self._active: dict[str, _RayJob] = {}
        self._by_ref: dict[Any, str] = {}
        self._events: list[JobEvent] = []
        self._open: set[str] = set()
        self._info: dict[str, dict[str, Any]] = {}
        self._closed = False

    # -- public API --------------------------------------------------------------------
    def submit(self, request: EvalRequest) -> None:
        check_submission(self, request, self._open, self._closed)
        self._open.add(request.job_id)
        self._queue.append(request)
        self._dispatch()

    def cancel(self, job_id: str) -> None:
        for req in list(self._queue):
            if req.job_id == job_id:
                self._queue.remove(req)
                self._done(req, EvalResult.failure(Status.CANCELLED, "cancelled before it started"))
                return
        job = self._active.get(job_id)
        if job is not None:
            self._stop(job)
            self._done(job.request, EvalResult.failure(Status.CANCELLED, "cancelled"))

    def poll(self, timeout: float = 0.1) -> list[JobEvent]:
        end = time.monotonic() + max(0.0, timeout)
        while True:
            self._dispatch()
            self._collect(min(_WAIT_SLICE_S, max(0.0, end - time.monotonic())))
            if self._events or time.monotonic() >= end:
                events, self._events = self._events, []
                for ev in events:
                    if ev.kind == "done":
                        self._open.discard(ev.job_id)
                return events

    def running(self) -> int:
        return len(self._open)

    def job_info(self, job_id: str) -> dict[str, Any] | None:
        """Where a job runs or ran: ``pid``/``hostname``/``node_id`` of its Ray worker, ``attempt``.

        None until the worker reported (diagnostics; tests use the pid).
        """
        info = self._info.get(job_id)
        return dict(info) if info is not None else None

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        for job in list(self._active.values()):
            self._stop(job)
        self._active.clear()
        self._by_ref.clear()
        self._events.clear()
        self._open.clear()
        self._task_refs.clear()
        ray = self._ray
        try:
            if ray.is_initialized():
                ray.kill(self._mailbox.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - the cluster may already be gone
            pass
        if self._owns_ray:
            try:
                ray.shutdown()
            except Exception:  # noqa: BLE001
                pass

    # -- internals ---------------------------------------------------------------------
    def _new_mailbox(self) -> Any:
        from ray.util.queue import Queue

        return Queue(actor_options={"num_cpus": 0})

    def _drain_mailbox(self) -> list[tuple[str, str, dict[str, Any]]]:
        actor, get = self._mailbox.actor, self._ray.get
        n = int(get(actor.qsize.remote(), timeout=_MAILBOX_TIMEOUT_S))
        return list(get(actor.get_nowait_batch.remote(n), timeout=_MAILBOX_TIMEOUT_S)) if n else []

    def _check_resources(self) -> None:
        try:
            total = self._ray.cluster_resources()
        except Exception as exc:  # noqa: BLE001
            raise ClusterLostError(f"cannot read the Ray cluster's resources: {exc}") from exc
        for name, want in (("CPU", self.num_cpus), ("GPU", self.num_gpus)):
            if want > 0 and float(total.get(name, 0.0)) < want:
                raise ValueError(
                    f"each evaluation asks for {want:g} {name} but the Ray cluster has "
                    f"{float(total.get(name, 0.0)):g} in all; the tasks would never be scheduled "
                    "(pass check_resources=False for an autoscaling cluster)")

    def _task_ref(self, task: Task) -> Any:
        entry = self._task_refs.get(id(task))
        if entry is not None and entry[0]() is task:
            return entry[1]
        for key in [k for k, (w, _r) in self._task_refs.items() if w() is None]:
            del self._task_refs[key]
        ref = self._ray.put(task)
        self.task_puts += 1
        self._task_refs[id(task)] = (weakref.ref(task), ref)
        return ref

    def _dispatch(self) -> None:
        while self._queue and len(self._active) < self.workers and not self._closed:
            request = self._queue.popleft()
            job = _RayJob(request=request)
            try:
                self._launch(job)
            except Exception as exc:  # noqa: BLE001 - a fault of this job only, unless Ray is gone
                self._raise_if_cluster_lost(exc)
                why = f"could not start the evaluation on Ray: {type(exc).__name__}: {exc}"
                self._done(request, EvalResult.failure(Status.CRASHED, why))

    def _launch(self, job: _RayJob) -> None:
        req = job.request
        config = dataclasses.replace(req.config, threads=self.threads,
                                     device="cuda:0" if self.device == "cuda" else "cpu")
        opts: dict[str, Any] = dict(num_cpus=self.num_cpus, num_gpus=self.num_gpus,
                                    max_retries=0, retry_exceptions=False,
                                    name=f"nimm-eval:{req.job_id}")
        if self._runtime_env is not None:
            opts["runtime_env"] = self._runtime_env
        job.ref = self._remote.options(**opts).remote(
            req.job_id, [self._task_ref(req.task)], req.source, config.to_dict(),
            float(req.timeout), int(req.memory_mb), self.device, self.threads, self.local_kw,
            self._mailbox, job.attempt)
        job.dispatched_at = time.monotonic()
        job.started_at = None
        self._active[req.job_id] = job
        self._by_ref[job.ref] = req.job_id

    def _stop(self, job: _RayJob) -> None:
        self._by_ref.pop(job.ref, None)
        self._active.pop(job.request.job_id, None)
        try:
            self._ray.cancel(job.ref, force=True)
        except Exception:  # noqa: BLE001 - already finished, or the cluster is gone
            pass

    def _done(self, request: EvalRequest, result: EvalResult) -> None:
        if not result.seed and request.config.seed:
            result.seed = request.config.seed
        if result.restarts == 1:
            result.restarts = request.config.restarts
        self._events.append(JobEvent(request.job_id, "done", result=result))

    def _collect(self, wait: float) -> None:
        ray = self._ray
        if not ray.is_initialized():
            raise ClusterLostError("Ray is no longer initialised in this process; "
                                   "the evaluations in flight are lost")
        refs = [job.ref for job in self._active.values()]
        if not refs:
            if not self._events and wait > 0:
                time.sleep(wait)
            return
        try:
            ready, _ = ray.wait(refs, num_returns=1, timeout=wait)
            if ready:
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            messages = self._drain_mailbox()
        except Exception as exc:  # noqa: BLE001
            self._raise_if_cluster_lost(exc)
            if isinstance(exc, ray.exceptions.RayActorError):
                self._mailbox = self._new_mailbox()  # jobs in flight lose their progress
            messages, ready = [], []
        for kind, job_id, payload in messages:
            job = self._active.get(job_id)
            if job is None:
                continue  # late progress of a job already done or cancelled
            if kind == "started" and int(payload.get("attempt", -1)) == job.attempt:
                job.started_at = time.monotonic()
                job.info = dict(payload)
                self._info[job_id] = dict(payload)
            elif kind == "progress":
                progress = {str(k): float(v) for k, v in dict(payload).items()}
                self._events.append(JobEvent(job_id, "progress", progress=progress))
        for ref in ready:
            job_id = self._by_ref.pop(ref, None)
            if job_id is not None:
                self._finish(self._active.pop(job_id), ref)
        self._enforce_deadlines()

    def _finish(self, job: _RayJob, ref: Any) -> None:
        ray = self._ray
        req = job.request
        try:
            value = ray.get(ref, timeout=_MAILBOX_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001
            self._raise_if_cluster_lost(exc)
            status, message, retry = self._classify(exc)
            job.crashes.append(message)
            if retry and job.attempt < self.retries:
                job.attempt += 1
                try:
                    self._launch(job)
                    return
                except Exception as again:  # noqa: BLE001
                    self._raise_if_cluster_lost(again)
                    message += f"; the retry could not start: {again}"
            if len(job.crashes) > 1:
                message = f"failed {len(job.crashes)} times on Ray; last: {message}"
            self._done(req, EvalResult.failure(status, message))
            return
        result = EvalResult.from_dict(value["result"])
        if job.crashes:
            note = f"succeeded on retry {job.attempt} after: {job.crashes[-1]}"
            result.notes.append(note)
        weights = value.get("weights")
        if weights is not None and req.config.save_weights:
            path = os.path.abspath(req.config.save_weights)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            Path(path).write_bytes(weights)
            result.weights_path = path
            if value.get("predictions") is not None:
                predictions_file(path).write_bytes(value["predictions"])
        self._done(req, result)

    def _classify(self, exc: BaseException) -> tuple[Status, str, bool]:
        """``(status, message, retryable)`` for an evaluation whose Ray task failed."""
        rex = self._ray.exceptions
        cause = exc
        if isinstance(exc, rex.RayTaskError):
            inner = getattr(exc, "cause", None)
            if isinstance(inner, BaseException):
                cause = inner
        where = self._where(exc)
        name = type(cause).__name__
        first = str(cause).strip().splitlines()[0][:300] if str(cause).strip() else ""
        if isinstance(cause, getattr(rex, "OutOfMemoryError", ())):
            return (Status.OUT_OF_MEMORY, f"Ray's memory monitor killed the worker{where} "
                    f"(the node ran low on memory): {first}", False)
        if isinstance(cause, rex.TaskCancelledError):
            return Status.CANCELLED, "the Ray task was cancelled", False
        lost = tuple(getattr(rex, n) for n in ("WorkerCrashedError", "NodeDiedError",
                                               "ObjectLostError", "RayActorError")
                     if hasattr(rex, n))
        if isinstance(cause, lost):
            return (Status.CRASHED, f"the Ray worker running the evaluation died{where} "
                    f"({name}): {first}", True)
        if isinstance(exc, rex.RayTaskError):
            return (Status.CRASHED, f"the Ray worker failed{where} ({name}: {first}); is "
                    "nimm-jupyter installed on every node?", False)
        return Status.CRASHED, f"the Ray task failed{where}: {name}: {first}", True

    @staticmethod
    def _where(exc: BaseException) -> str:
        host = getattr(exc, "ip", None) or ""
        return f" on {host}" if host else ""

    def _raise_if_cluster_lost(self, exc: BaseException) -> None:
        rex = self._ray.exceptions
        kinds = tuple(getattr(rex, n) for n in ("RaySystemError", "LocalRayletDiedError",
                                                "GcsUnavailableError")
                      if hasattr(rex, n))
        if isinstance(exc, kinds + (ConnectionError,)) or not self._ray.is_initialized():
            raise ClusterLostError(
                f"lost the Ray cluster ({type(exc).__name__}: {exc}); "
                f"{len(self._active)} evaluation(s) in flight are lost") from exc

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for job in list(self._active.values()):
            timeout = float(job.request.timeout)
            if job.started_at is not None:
                late = now > job.started_at + timeout + _STARTED_GRACE_S
            else:
                late = now > job.dispatched_at + timeout + _UNSTARTED_GRACE_S
            if late:
                self._stop(job)
                self._done(job.request, EvalResult.failure(
                    Status.TIMEOUT, f"no result from the Ray worker within the limit of "
                    f"{timeout:g} s (plus a grace period); the Ray task was killed"))
