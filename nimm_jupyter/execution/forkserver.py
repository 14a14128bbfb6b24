"""The fork server: a warm process that forks one sandboxed job child per evaluation.

* A **fork server** (a Python process started once per executor *generation*, with a
  scrubbed environment) imports torch and the harness, then waits for orders on a Unix
  ``SOCK_SEQPACKET`` socket. Each order forks one **job child**, so torch is imported once
  and an evaluation starts in milliseconds. The server is a child subreaper: processes a
  candidate manages to leave behind are re-parented to it, not to init.
* A task is pickled once to a file keyed by its hash and loaded once by the server; every
  child shares it copy-on-write. Per request only the source and the TrainConfig travel
  (a small JSON file in the job's work dir).
* Every child calls ``setsid()`` first, so it leads its own process group and session; a
  timeout, cancel, memory overrun or shutdown SIGKILLs the whole group plus anything still in
  its session. Children die with the server (``PR_SET_PDEATHSIG``); the server exits and kills
  its jobs when the driver's end of the socket closes (the driver exited or was killed).
* Then the child enters the kernel-enforced jail (:mod:`.oslayer`) when the server's
  start-up probe found the kernel able to build one (the ``ready`` message says which:
  ``jail`` is ``None`` or why not). The candidate then runs as PID 2 of its own PID
  namespace, so nothing it starts outlives it.

This module holds both sides of that socket: :func:`server_main` (the server process) and
:class:`ForkServer` (the driver's handle), plus the /proc helpers both use and
:func:`classify_exit`, what a child's exit status means. The scheduling of jobs onto
children is :class:`nimm_jupyter.execution.local.LocalExecutor`'s.
"""
from __future__ import annotations

import collections
import json
import os
import pickle
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from ..modeling.result import EvalResult, Status
from ..tasks.base import Task
from . import oslayer
from .sandbox import open_output_log, redirect_output, run_job, scrubbed_env, WEIGHTS_FILE

__all__ = ["ForkServer", "server_main", "classify_exit", "cleanup_executor", "proc_table",
           "sweep_stale_roots", "OWNER_FILE",
           "session_members", "kill_session", "Proc", "DEFAULT_PRELOAD", "SERVER_START_S"]

DEFAULT_PRELOAD = (
    "torch", "numpy", "torchdiffeq", "nimm_jupyter.blocks", "nimm_jupyter.tasks.base",
    "nimm_jupyter.modeling.result", "nimm_jupyter.execution.base",
    "nimm_jupyter.modeling.harness",
)
SERVER_START_S = 300.0  # importing torch on a loaded machine can take a while
TASK_CACHE = 8  # tasks the fork server keeps in memory

_BOOT = (
    "import json, sys; b = json.loads(sys.argv[1]); sys.path[:] = b['sys_path']; "
    "from nimm_jupyter.execution.forkserver import server_main; server_main(b)"
)


# -- process helpers (used on both sides) -----------------------------------------------------
class Proc(NamedTuple):
    """One row of the process table."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    rss: int  # bytes


def proc_table() -> list[Proc]:
    """Every process visible in /proc."""
    page = os.sysconf("SC_PAGE_SIZE")
    rows = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        rows.append(Proc(int(name), int(fields[1]), int(fields[2]), int(fields[3]),
                          int(fields[21]) * page))
    return rows


def session_members(sid: int) -> list[int]:
    """Pids of the processes whose session id is ``sid`` (what one job may have started)."""
    return [p.pid for p in proc_table() if p.sid == sid]


def kill_session(pid: int) -> None:
    """SIGKILL the group led by ``pid`` and every other process of its session."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        try:  # not yet (or no longer) a group leader
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    except PermissionError:
        pass
    for member in session_members(pid):
        try:
            os.kill(member, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


# -- the fork server ------------------------------------------------------------------------
def _send(sock: socket.socket, msg: dict[str, Any], fds: Sequence[int] = ()) -> None:
    socket.send_fds(sock, [json.dumps(msg).encode()], list(fds))


def _set_subreaper() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except Exception:
        pass


def server_main(boot: dict[str, Any]) -> None:
    """Entry point of the fork server process (see the module docstring)."""
    import importlib

    ctrl = socket.socket(fileno=int(boot["fd"]))
    _set_subreaper()
    loaded, failed = [], []
    for name in boot["preload"]:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception as exc:  # noqa: BLE001 - reported to the driver, not fatal
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    jail = _probe_jail()
    from .landlock import abi

    _send(ctrl, {"op": "ready", "pid": os.getpid(), "loaded": loaded, "failed": failed,
                 "jail": jail, "landlock": abi() if jail is None else 0})
    tasks: collections.OrderedDict[str, Task] = collections.OrderedDict()
    jobs: dict[int, str] = {}
    pids: dict[str, int] = {}
    # EOF without a "bye" means the driver died. getppid() alone races: a killed process
    # closes its sockets before its children are re-parented.
    driver_died = False

    def reap() -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job = jobs.pop(pid, None)
            if job is not None:
                pids.pop(job, None)
                kill_session(pid)  # what it left behind in its group/session
                _kill_orphans(set(jobs))
                _send(ctrl, {"op": "exited", "job": job, "code": os.waitstatus_to_exitcode(status)})

    try:
        while True:
            ready, _, _ = select.select([ctrl, wake_r], [], [])
            if wake_r in ready:
                try:
                    while os.read(wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
            reap()
            if ctrl not in ready:
                continue
            data, fds, _flags, _addr = socket.recv_fds(ctrl, 1 << 16, 4)
            if not data:
                driver_died = True
                break
            msg = json.loads(data)
            op = msg["op"]
            if op == "bye":  # a clean close: the driver removes its own temp dir
                break
            if op == "task":
                try:
                    with open(msg["path"], "rb") as f:
                        tasks[msg["key"]] = pickle.load(f)
                    while len(tasks) > TASK_CACHE:
                        tasks.popitem(last=False)
                except Exception as exc:  # noqa: BLE001
                    _send(ctrl, {"op": "task_error", "key": msg["key"], "message": repr(exc)})
            elif op == "run":
                # the result pipe, then (optionally) the read end of the one-step reveal pipe
                out_fd, job_fds = fds[0], fds[:2]
                reveal_fd = fds[1] if len(fds) > 1 else None
                task = tasks.get(msg["key"])
                if task is None:
                    _close_all(job_fds)
                    _send(ctrl, {"op": "error", "job": msg["job"],
                                 "message": "task not loaded in the fork server"})
                    continue
                try:
                    pid = os.fork()
                except OSError as exc:
                    _close_all(job_fds)
                    _send(ctrl, {"op": "error", "job": msg["job"], "message": f"fork failed: {exc}"})
                    continue
                if pid == 0:
                    _job_child(ctrl, wake_r, wake_w, task, out_fd, msg["payload"], jail is None,
                               reveal_fd)
                _close_all(job_fds)
                jobs[pid] = msg["job"]
                pids[msg["job"]] = pid
                _send(ctrl, {"op": "spawned", "job": msg["job"], "pid": pid})
            elif op == "kill":
                pid = pids.get(msg["job"])
                if pid is not None:
                    kill_session(pid)
            _close_all(fds[2:] if op == "run" else fds)
    finally:
        for pid in list(jobs):
            kill_session(pid)
        _kill_orphans(set())
        if driver_died or os.getppid() != boot.get("driver"):  # nobody else will clean up
            shutil.rmtree(boot.get("root") or os.devnull, ignore_errors=True)
        os._exit(0)


def _close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        os.close(fd)


def _kill_orphans(live_sessions: set[int]) -> None:
    """Kill processes re-parented to this server (a subreaper) outside any live job session:
    what a candidate left behind after leaving its session (``setsid``) or losing its parent."""
    me = os.getpid()
    for proc in proc_table():
        if proc.ppid == me and proc.pid not in live_sessions and proc.sid not in live_sessions:
            kill_session(proc.pid)


def _probe_jail() -> str | None:
    """``None`` when this kernel can build the job jail, else why not (said once, by the driver)."""
    if not sys.platform.startswith("linux"):
        return f"no kernel-enforced jail on {sys.platform}"
    try:
        return oslayer.probe()
    except Exception as exc:  # noqa: BLE001 - reported, never fatal
        return f"{type(exc).__name__}: {exc}"


def _job_child(ctrl: socket.socket, wake_r: int, wake_w: int, task: Task, out_fd: int,
               payload_path: str, jail_ok: bool, reveal_fd: int | None = None) -> None:
    """First instructions of a forked job child; never returns.

    Everything read from the driver's side (the order, the output log, the weights file) is
    opened here, before the jail hides the host's file system."""
    try:
        os.setsid()  # own group + session before anything else can start
        server = os.getppid()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        ctrl.close()
        os.close(wake_r)
        os.close(wake_w)
        from .sandbox import die_with_parent

        die_with_parent(server)
        with open(payload_path) as f:
            payload = json.load(f)
        if payload.get("cgroup"):  # before the jail hides /sys; no job runs outside its limit
            from .cgroup import join

            join(payload["cgroup"])
        host_workdir = payload["workdir"]
        redirect_output(open_output_log(host_workdir))
        workdir, weights_fd = host_workdir, None
        if payload["policy"].get("os_jail", True) and jail_ok:
            if payload.get("weights"):
                weights_fd = os.open(os.path.join(host_workdir, WEIGHTS_FILE),
                                     os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            keep = [fd for fd in (out_fd, weights_fd, reveal_fd) if fd is not None]
            workdir = oslayer.enter_jail(oslayer.JailLimits(**payload["jail"]), keep)
        run_job(task, out_fd, payload, workdir, weights_fd, reveal_fd)
    except BaseException as exc:  # noqa: BLE001 - before any candidate code: say why
        try:
            os.write(2, f"sandbox: the job could not start: {type(exc).__name__}: {exc}\n".encode())
        except OSError:
            pass
    finally:
        os._exit(70)


class ForkServer:
    """Driver-side handle on one fork server process (one executor generation)."""

    def __init__(self, root: str, preload: Sequence[str]):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # '' (the driver's cwd) would mean the server's own cwd: pass the real directory.
        path = [p or os.getcwd() for p in sys.path]
        boot = {"fd": theirs.fileno(), "preload": list(preload), "sys_path": path,
                "root": root, "driver": os.getpid()}
        home = os.path.join(root, "server")
        os.makedirs(home, exist_ok=True)
        self.log_path = os.path.join(root, "server.log")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOT, json.dumps(boot)],
                pass_fds=[theirs.fileno()], env=scrubbed_env(os.environ, home),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                start_new_session=True, cwd=home, close_fds=True,
            )
        theirs.close()
        ours.setblocking(False)
        self.sock = ours
        self.started = time.monotonic()
        self.ready = False
        self.dead = False
        self.loaded_tasks: set[str] = set()
        self.info: dict[str, Any] = {}

    def send(self, msg: dict[str, Any], fds: Sequence[int] = ()) -> bool:
        if self.dead:
            return False
        try:
            self.sock.setblocking(True)
            _send(self.sock, msg, fds)
            return True
        except OSError:
            self.dead = True
            return False
        finally:
            if not self.dead:
                self.sock.setblocking(False)

    def receive(self) -> list[dict[str, Any]]:
        out = []
        while not self.dead:
            try:
                data = self.sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                self.dead = True
                break
            out.append(json.loads(data))
        if not self.dead and self.proc.poll() is not None:
            self.dead = True
        return out

    def log_tail(self, n: int = 600) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-n:].strip()
        except OSError:
            return ""

    def close(self, wait: float = 5.0) -> None:
        self.send({"op": "bye"})
        self.dead = True
        try:
            self.sock.close()  # the server kills its jobs and exits
        except OSError:
            pass
        try:
            self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- how a job ended --------------------------------------------------------------------
def classify_exit(exit_code: int | None, workdir: str, *, kill_reason: Status | None = None,
                  kill_message: str = "", error: str | None = None) -> EvalResult:
    """The result of a job child that ended without reporting one.

    Killed by the driver (``kill_reason``: timeout, memory, cancel) wins; then a driver- or
    server-side ``error``; else the exit status: SIGXCPU (the CPU-time backstop) is a
    ``timeout``, any other signal or exit code is ``crashed`` with the signal name or code and
    the tail of the child's output (``workdir/output.log``).
    """
    if kill_reason is not None:
        return EvalResult.failure(kill_reason, kill_message)
    if error is not None:
        return EvalResult.failure(Status.CRASHED, error)
    tail = _output_tail(workdir)
    if exit_code is None:
        msg = "the evaluation process was lost (its fork server exited)"
    elif exit_code < 0:
        sig = -exit_code
        if sig == signal.SIGXCPU:
            return EvalResult.failure(Status.TIMEOUT, "exceeded its CPU-time limit (SIGXCPU)")
        msg = f"the evaluation process was killed by {_signal_name(sig)}"
        if sig == signal.SIGSEGV:
            msg += " (segmentation fault: invalid memory access in native code)"
        elif sig == signal.SIGKILL:
            msg += " (possibly the system's out-of-memory killer)"
    elif exit_code == 0:
        msg = "the evaluation process exited without reporting a result (did the candidate call exit?)"
    else:
        msg = f"the evaluation process exited with code {exit_code} before reporting a result"
    if tail:
        msg += f"; last output:\n{tail}"
    return EvalResult.failure(Status.CRASHED, msg)


def _output_tail(workdir: str, n: int = 800) -> str:
    """The useful end of a child's output: a fatal-error traceback, else the last lines."""
    try:
        text = Path(workdir, "output.log").read_text(errors="replace")
    except OSError:
        return ""
    fatal = text.find("Fatal Python error")
    if fatal >= 0:  # faulthandler: the innermost frames come first; drop the module list
        text = text[fatal:].split("\nExtension modules:")[0]
        return text[:n].strip()
    return text[-n:].strip()


OWNER_FILE = "driver.pid"  # in an executor's temp dir: the process that created it


def sweep_stale_roots(prefix: str = "nimm-exec-") -> None:
    """Remove executor temp dirs (they hold tasks with their targets) whose driver is dead."""
    import tempfile

    base = tempfile.gettempdir()
    for name in os.listdir(base):
        path = os.path.join(base, name)
        if not name.startswith(prefix):
            continue
        try:
            with open(os.path.join(path, OWNER_FILE)) as f:
                owner = int(f.read().strip())
        except (OSError, ValueError):
            continue  # not ours to judge (or being created right now)
        if not os.path.exists(f"/proc/{owner}"):
            shutil.rmtree(path, ignore_errors=True)


def cleanup_executor(res: dict[str, Any]) -> None:
    """Stop the fork server, sweep leftover job sessions, remove the executor's temp dir."""
    server = res.get("server")
    if server is not None:
        server.close()
        res["server"] = None
    pids = res.get("pids") or set()
    if pids:
        for proc in proc_table():
            if proc.sid in pids or proc.pid in pids:
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
    shutil.rmtree(res["root"], ignore_errors=True)
    if res.get("groups") is not None:  # after the kills above: a group with a process stays
        res["groups"].close()
