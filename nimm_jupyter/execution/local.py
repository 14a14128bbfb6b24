"""Local executor: one killable OS process per evaluation, forked from a warm fork server.

Design
------
* Evaluations are forked by a fork server (:mod:`.forkserver`: a torch-preloaded process
  per executor *generation*); each child leads its own process group and session, so a
  timeout, cancel, memory overrun or shutdown SIGKILLs everything it started.
* This module queues requests onto ``workers`` slots (device, threads), enforces the
  wall-clock and resident-memory limits and turns what a child reports into job events.
* Children report JSON lines on their own pipe, checked by :mod:`.protocol`: one ``started``,
  ``progress`` frames for live loss curves, then exactly one ``done``, accepted only once the
  pipe has closed; anything else makes the job ``crashed``. What the result reports is
  type-checked and capped before anyone sees it.
* Weights leave the jail through a descriptor into the job's work dir; the driver checks the
  file and moves it to the ``save_weights`` path the request asked for.
* A child that dies without reporting is classified from its exit status
  (:func:`.forkserver.classify_exit`): killed by us for time (``timeout``), memory
  (``out_of_memory``) or a cancel (``cancelled``); SIGXCPU (the CPU-time backstop) is a
  ``timeout``; any other signal or exit code is ``crashed`` with the signal name or code and
  the tail of the child's output.

See :mod:`.sandbox` for what a child does to itself before candidate code runs.
"""
from __future__ import annotations

import base64
import collections
import dataclasses
import warnings
import hashlib
import json
import os
import pickle
import select
import shutil
import sys
import tempfile
import threading
import time
import weakref
from typing import Any, Callable, Sequence

from ..modeling.result import EvalResult, Status
from ..modeling.scoring import without_targets
from ..tasks.base import Task
from .base import EvalRequest, Executor, JobEvent, check_submission
from .cgroup import open_groups
from .devices import worker_devices
from .forkserver import (DEFAULT_PRELOAD, OWNER_FILE, SERVER_START_S, ForkServer, cleanup_executor,
                         proc_table, sweep_stale_roots)
from .job import Job
from .oslayer import JailLimits
from .protocol import FrameReader
from .reveal import Revealer, reveal_pipe
from .sandbox import SandboxPolicy, redact

__all__ = ["LocalExecutor", "DEFAULT_PRELOAD"]

MAX_OUTPUT_BYTES = 32 << 20  # frames one child may send; more is treated as a crash
_EXIT_GRACE_S = 5.0  # a child that reported "done" but lingers is killed after this
_MEMORY_CHECK_S = 0.5
_jail_warned: set[str] = set()  # say once per process that the kernel jail is missing, and why


# -- the executor ---------------------------------------------------------------------------
class LocalExecutor(Executor):
    """Run each evaluation in its own sandboxed process on this machine.

    ``workers`` evaluations run at once (the rest queue). ``device``: ``"auto"``, ``"cpu"``,
    ``"cuda"`` or ``"cuda:N"``; worker slot ``i`` uses ``cuda:(i % n_gpus)`` and the executor
    sets each request's ``TrainConfig.device`` and ``threads`` accordingly. ``memory_mb``,
    when given, overrides every request's ``memory_mb``; it is enforced as the limit of the
    job's memory cgroup where the kernel lets us make one (:mod:`.cgroup`: every process of the
    job together, tmpfs included; :attr:`cgroup_problem` says why not), as an address-space
    limit on CPU and, everywhere, by killing a job whose processes' resident memory exceeds it.
    ``limit_address_space=False`` leaves only the resident-memory watchdog (what CUDA devices
    always get, since CUDA reserves far more address space than it uses). ``policy`` changes
    the sandbox (tests and diagnosis only); ``jail`` the per-job kernel limits (work-dir and
    ``/dev/shm`` size, process count). :attr:`jail_problem` says, once the fork server is up,
    why the kernel jail is not in use (``None`` when it is).
    """

    def __init__(self, workers: int = 1, device: str = "auto", memory_mb: int | None = None,
                 threads_per_worker: int = 1, *, policy: SandboxPolicy | None = None,
                 preload: Sequence[str] = DEFAULT_PRELOAD, limit_address_space: bool = True,
                 jail: JailLimits | None = None):
        if not sys.platform.startswith("linux"):
            raise RuntimeError("LocalExecutor needs Linux (process groups, /proc, prctl, "
                               f"SOCK_SEQPACKET); this is {sys.platform}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if threads_per_worker < 1:
            raise ValueError(f"threads_per_worker must be >= 1, got {threads_per_worker}")
        if memory_mb is not None and memory_mb < 64:
            raise ValueError(f"memory_mb must be at least 64 (MiB), got {memory_mb}")
        self.workers = int(workers)
        self.devices = worker_devices(device, self.workers)
        self.memory_mb = memory_mb
        self.threads_per_worker = int(threads_per_worker)
        self.policy = policy or SandboxPolicy()
        self.preload = tuple(preload)
        self.limit_address_space = bool(limit_address_space)
        self.jail = jail or JailLimits()
        self.jail_problem: str | None = None
        # one kernel memory limit per job, tmpfs included (None where the kernel offers none;
        # RLIMIT_AS and the resident-memory watchdog apply either way)
        self._groups, self.cgroup_problem = open_groups()
        self._lock = threading.RLock()
        sweep_stale_roots()
        self._root = tempfile.mkdtemp(prefix="nimm-exec-")
        with open(os.path.join(self._root, OWNER_FILE), "w") as f:
            f.write(str(os.getpid()))
        self._server: ForkServer | None = None
        self._queue: collections.deque[EvalRequest] = collections.deque()
        self._active: dict[str, Job] = {}
        self._free_slots = list(range(self.workers))
        self._events: list[JobEvent] = []
        self._open: set[str] = set()
        self._task_keys: dict[int, tuple[weakref.ref, str]] = {}
        self._known_pids: set[int] = set()
        self._last_memory_check = 0.0
        self._closed = False
        # What the finalizer needs, without a reference back to self.
        self._res: dict[str, Any] = {"server": None, "root": self._root, "pids": self._known_pids,
                                     "groups": self._groups}
        self._finalizer = weakref.finalize(self, cleanup_executor, self._res)

    # -- public API --------------------------------------------------------------------
    def submit(self, request: EvalRequest) -> None:
        with self._lock:
            check_submission(self, request, self._open, self._closed)
            self._open.add(request.job_id)
            self._queue.append(request)
            self._dispatch()

    def cancel(self, job_id: str) -> None:
        with self._lock:
            for req in list(self._queue):
                if req.job_id == job_id:
                    self._queue.remove(req)
                    self._events.append(JobEvent(job_id, "done", result=EvalResult.failure(
                        Status.CANCELLED, "cancelled before it started",
                        seed=req.config.seed, restarts=req.config.restarts)))
                    return
            job = self._active.get(job_id)
            if job is not None and not job.delivered:
                self._kill(job, Status.CANCELLED, "cancelled")

    def poll(self, timeout: float = 0.1) -> list[JobEvent]:
        end = time.monotonic() + max(0.0, timeout)
        while True:
            with self._lock:
                self._pump()
                self._dispatch()
                events, self._events = self._events, []
                if events or time.monotonic() >= end:
                    return self._deliver(events)
                fds = self._wait_fds()
            # Short waits without the lock, so cancel() from another thread is not held up.
            wait = min(max(0.0, end - time.monotonic()), 0.1)
            if fds:
                try:
                    select.select(fds, [], [], wait)
                except (OSError, ValueError):  # an fd closed under us: just look again
                    pass
            else:
                time.sleep(wait)

    def running(self) -> int:
        with self._lock:
            return len(self._open)

    def shutdown(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.clear()
            for job in list(self._active.values()):
                self._kill(job, Status.CANCELLED, "executor shut down")
            self._finalizer.detach()
            cleanup_executor(self._res)
            for job in self._active.values():
                if job.fd is not None:
                    os.close(job.fd)
                job.close_reveal()
            self._active.clear()
            self._events.clear()
            self._open.clear()

    def wait(self, job_id: str, progress: Callable[[dict[str, float]], None] | None = None,
             poll_interval: float = 0.25) -> EvalResult:
        """Block until ``job_id`` is done; other jobs' events stay queued for :meth:`poll`."""
        kept: list[JobEvent] = []
        try:
            while True:
                for ev in self.poll(poll_interval):
                    if ev.job_id != job_id:
                        kept.append(ev)
                    elif ev.kind == "progress" and progress is not None:
                        progress(ev.progress or {})
                    elif ev.kind == "done":
                        return ev.result  # type: ignore[return-value]
        finally:
            with self._lock:
                for ev in kept:  # give them back, still counted as open
                    if ev.kind == "done":
                        self._open.add(ev.job_id)
                self._events[:0] = kept

    # -- internals ---------------------------------------------------------------------
    def _deliver(self, events: list[JobEvent]) -> list[JobEvent]:
        for ev in events:
            if ev.kind == "done":
                self._open.discard(ev.job_id)
        return events

    def _ensure_server(self) -> ForkServer:
        if self._server is not None and self._server.dead:
            self._fail_generation()
        if self._server is None:
            self._server = ForkServer(self._root, self.preload)
            self._res["server"] = self._server
        return self._server

    def _task_key(self, task: Task) -> str:
        entry = self._task_keys.get(id(task))
        if entry is not None and entry[0]() is task:
            return entry[1]
        # the job gets the task without its test targets; the driver scores (job.py)
        data = pickle.dumps(without_targets(task), protocol=pickle.HIGHEST_PROTOCOL)
        key = hashlib.sha256(data).hexdigest()[:20]
        path = os.path.join(self._root, "tasks", f"{key}.pkl")
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path + ".tmp", "wb") as f:
                f.write(data)
            os.replace(path + ".tmp", path)
        self._task_keys = {i: e for i, e in self._task_keys.items() if e[0]() is not None}
        self._task_keys[id(task)] = (weakref.ref(task), key)
        return key

    def _dispatch(self) -> None:
        while self._queue and self._free_slots and not self._closed:
            request = self._queue.popleft()
            slot = self._free_slots.pop(0)
            try:
                self._start(request, slot)
            except Exception as exc:  # noqa: BLE001 - a driver-side fault for this job only
                self._free_slots.insert(0, slot)
                self._events.append(JobEvent(request.job_id, "done", result=EvalResult.failure(
                    Status.CRASHED, f"could not start the evaluation: {type(exc).__name__}: {exc}")))

    def _start(self, request: EvalRequest, slot: int) -> None:
        server = self._ensure_server()
        device = self.devices[slot]
        config = dataclasses.replace(request.config, device=device, threads=self.threads_per_worker)
        if config.save_weights:
            config = dataclasses.replace(config, save_weights=os.path.abspath(config.save_weights))
            os.makedirs(os.path.dirname(config.save_weights), exist_ok=True)
        child_config = dataclasses.replace(config, save_weights=None)  # the child picks its path
        memory = self.memory_mb if self.memory_mb is not None else request.memory_mb
        key = self._task_key(request.task)
        if key not in server.loaded_tasks:
            server.send({"op": "task", "key": key, "path": os.path.join(self._root, "tasks", f"{key}.pkl")})
            server.loaded_tasks.add(key)
        workdir = tempfile.mkdtemp(prefix="job-", dir=self._root)
        group = (self._groups.job_group(os.path.basename(workdir), int(memory))
                 if self._groups is not None and memory else None)
        payload = {
            "job_id": request.job_id,
            "source": request.source,
            "config": child_config.to_dict(),
            "weights": bool(config.save_weights),
            "workdir": workdir,
            "jail": self.jail.to_dict(),
            # CUDA reserves far more address space than it uses: rely on the RSS watchdog there.
            "memory_mb": memory if device == "cpu" and self.limit_address_space else None,
            "cpu_seconds": float(request.timeout) * self.threads_per_worker + 5.0,
            "threads": self.threads_per_worker,
            "policy": self.policy.to_dict(),
            "cgroup": group,
        }
        if request.network_probe is not None:
            payload["network_probe"] = base64.b64encode(request.network_probe).decode()
        if request.predict_with is not None:
            payload["predict_with"] = base64.b64encode(request.predict_with).decode()
        payload_path = os.path.join(workdir, "request.json")
        with open(payload_path, "w") as f:
            json.dump(payload, f)
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        reveal_read, reveal_write = reveal_pipe()  # the driver answers one-step frames here
        # the unchecked probe, the distill probe and a what-if train nothing: no reveal
        reveal = (Revealer(request.task) if self.policy.static_check
                  and request.network_probe is None and request.predict_with is None else None)
        job = Job(request=request, config=config, slot=slot, device=device, workdir=workdir,
                   reader=FrameReader(request.task.target_names, request.task.scenarios, reveal),
                   fd=read_fd,
                   predictions_required=self.policy.static_check and request.network_probe is None,
                   cgroup=group, reveal_fd=reveal_write)
        self._active[request.job_id] = job
        sent = server.send({"op": "run", "job": request.job_id, "key": key, "payload": payload_path},
                           [write_fd, reveal_read])
        os.close(write_fd)
        os.close(reveal_read)
        if not sent:
            job.error = "the evaluation fork server is not running"
            job.exit_known = True

    def _wait_fds(self) -> list[int]:
        fds = [j.fd for j in self._active.values() if j.fd is not None and not j.eof]
        if self._server is not None and not self._server.dead:
            fds.append(self._server.sock.fileno())
        return fds

    def _kill(self, job: Job, reason: Status | None, message: str) -> None:
        if reason is not None and job.kill_reason is None and not job.exit_known:
            job.kill_reason, job.kill_message = reason, message
        if self._server is not None and not self._server.dead and not job.exit_known:
            self._server.send({"op": "kill", "job": job.request.job_id})

    def _pump(self) -> None:
        now = time.monotonic()
        server = self._server
        if server is not None:
            for msg in server.receive():
                self._on_server_message(msg, now)
            if server.dead:
                self._fail_generation()
            elif not server.ready and now - server.started > SERVER_START_S:
                server.close(wait=1.0)
                self._fail_generation("the evaluation fork server did not start in time")
        for job in list(self._active.values()):
            self._read(job, now)
        self._enforce_limits(now)
        for job in list(self._active.values()):
            finished = job.eof and job.exit_known
            # No exit status 10 s after EOF (server stuck), or no EOF 2 s after the exit
            # (an escaped descendant holds the pipe): finish with what we have.
            lost = job.eof and not job.exit_known and job.eof_at is not None and now - job.eof_at > 10
            held = job.exit_known and not job.eof and job.exited_at is not None and now - job.exited_at > 2
            if finished or lost or held:
                self._finish(job, now)
            elif job.result is not None and job.eof:
                # Every writer is gone, so nothing can follow the result; the exit status of a
                # process with torch mapped takes tens of ms more: report now.
                self._deliver_done(job, now)

    def _on_server_message(self, msg: dict[str, Any], now: float) -> None:
        op = msg.get("op")
        if op == "ready":
            assert self._server is not None
            self._server.ready = True
            self._server.info = msg
            self._note_jail(msg.get("jail"), int(msg.get("landlock") or 0))
            return
        job = self._active.get(msg.get("job", ""))
        if job is None:
            return
        if op == "spawned":
            job.pid = int(msg["pid"])
            self._known_pids.add(job.pid)
            job.spawned_at = now
            job.deadline = now + float(job.request.timeout)
            if job.kill_reason is not None:  # cancelled before the fork happened
                self._kill(job, None, "")
        elif op == "exited":
            job.exit_code, job.exit_known, job.exited_at = int(msg["code"]), True, now
        elif op == "error":
            job.error, job.exit_known = str(msg["message"]), True

    def _read(self, job: Job, now: float) -> None:
        if job.fd is None or job.eof:
            return
        while True:
            try:
                chunk = os.read(job.fd, 1 << 16)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                job.eof, job.eof_at = True, now
                job.reader.close()
                break
            job.received += len(chunk)
            if job.received > MAX_OUTPUT_BYTES + job.reveal_allowance:
                self._kill(job, Status.CRASHED, f"the evaluation sent more than {MAX_OUTPUT_BYTES >> 20} MiB of results"
                           + (" (plus its one-step predictions)" if job.reveal_allowance else ""))
                job.eof, job.eof_at = True, now
                break
            for progress in job.reader.feed(chunk):
                self._events.append(JobEvent(job.request.job_id, "progress", progress=progress))
        if job.take_verdict(now):
            self._kill(job, None, "")
        job.serve_reveal()

    def _enforce_limits(self, now: float) -> None:
        watch = []
        for job in self._active.values():
            if job.exit_known or job.pid is None:
                continue
            if job.result is not None:
                if job.result_at is not None and now - job.result_at > _EXIT_GRACE_S:
                    self._kill(job, None, "")
            elif job.deadline is not None and now > job.deadline and job.kill_reason is None:
                self._kill(job, Status.TIMEOUT,
                           f"exceeded the wall-clock limit of {job.request.timeout:g} s; the process group was killed")
            elif (late := job.reveal_overdue(now)) and job.kill_reason is None:
                self._kill(job, Status.TIMEOUT, late)
            else:
                watch.append(job)
        if watch and now - self._last_memory_check >= _MEMORY_CHECK_S:
            self._last_memory_check = now
            rss: dict[int, int] = collections.defaultdict(int)
            for proc in proc_table():
                rss[proc.sid] += proc.rss
            for job in watch:
                limit = self.memory_mb if self.memory_mb is not None else job.request.memory_mb
                used = rss.get(job.pid or -1, 0)
                if limit and used > (int(limit) << 20) and job.kill_reason is None:
                    self._kill(job, Status.OUT_OF_MEMORY,
                               f"used {used >> 20} MiB of resident memory, over the limit of {limit} MiB")

    def _deliver_done(self, job: Job, now: float) -> None:
        """Report the job's ``done`` event and free its slot (its process may still be exiting)."""
        if job.delivered:
            return
        result = job.result  # a reported result wins over a kill that raced with it
        if result is not None:
            result.weights_path = job.collect_weights(result)
        else:
            self._note_oom(job)
            result = job.classify()
            result.device = job.device
            result.seed, result.restarts = job.config.seed, job.config.restarts
            result.wall_time = now - (job.spawned_at or now)
        result.message = redact(result.message or "")
        result.notes = [redact(n) for n in result.notes]
        job.delivered = True
        self._free_slots.append(job.slot)
        self._free_slots.sort()
        self._events.append(JobEvent(job.request.job_id, "done", result=result))

    def _note_jail(self, problem: Any, landlock: int) -> None:
        self.jail_problem = None if problem is None else str(problem)
        if not self.policy.os_jail:
            return
        if self.jail_problem is None and landlock < 1 and "landlock" not in _jail_warned:
            _jail_warned.add("landlock")
            warnings.warn("nimm: this kernel has no Landlock: jailed candidates can read every "
                          "world-readable file (writes, network and processes stay contained).",
                          RuntimeWarning, stacklevel=2)
        if self.jail_problem and self.jail_problem not in _jail_warned:
            _jail_warned.add(self.jail_problem)
            warnings.warn("nimm: candidate code runs WITHOUT the kernel-enforced jail "
                          f"(namespaces, read-only file system, seccomp): {self.jail_problem}. "
                          "Only the in-process guards apply; see docs/SECURITY.md.",
                          RuntimeWarning, stacklevel=2)

    def _finish(self, job: Job, now: float) -> None:
        """The process has exited: report (if not yet) and remove what the job left."""
        self._deliver_done(job, now)
        if job.fd is not None:
            os.close(job.fd)
            job.fd = None
        job.close_reveal()
        shutil.rmtree(job.workdir, ignore_errors=True)
        if job.cgroup is not None and self._groups is not None:
            self._groups.remove(job.cgroup)
        del self._active[job.request.job_id]

    def _note_oom(self, job: Job) -> None:
        """An unreported end after the kernel's OOM killer acted in the job's cgroup is
        ``out_of_memory`` (unless the driver had already killed it for another reason)."""
        if job.cgroup is None or self._groups is None or job.kill_reason is not None:
            return
        kills = self._groups.oom_kills(job.cgroup)
        if kills:
            limit = self.memory_mb if self.memory_mb is not None else job.request.memory_mb
            job.kill_reason, job.kill_message = Status.OUT_OF_MEMORY, (
                f"its processes together reached the job's memory limit of {limit} MiB (tmpfs "
                f"files included); the kernel killed {kills} of them")

    def _fail_generation(self, why: str = "the evaluation fork server exited") -> None:
        server, self._server = self._server, None
        self._res["server"] = None
        if server is None:
            return
        detail = server.log_tail()
        server.close(wait=1.0)
        for job in self._active.values():
            if not job.exit_known:
                job.exit_known = True
                if job.result is None and job.kill_reason is None:
                    job.error = why + (f": {detail}" if detail else "")
            if job.spawned_at is None:  # never forked: no child holds the pipe
                job.eof = True
