"""What an evaluation child process does to itself before candidate code runs.

Layers, outermost first (the executor in :mod:`.local` adds the process boundary):

0. the kernel-enforced jail of :mod:`.oslayer` (namespaces, an unprivileged uid, read-only
   file system, size-capped tmpfs work dir and ``/dev/shm``, Landlock-limited reads, no
   capabilities, seccomp),
   entered by the fork server's job child before this module's :func:`run_job` runs;
1. the static contract check of the harness (allowed imports only);
2. a scrubbed environment (an allow-list; nothing that looks like a key, token, secret or
   password), a fresh working directory that is ``HOME`` and ``TMPDIR``;
3. resource limits: address space (``RLIMIT_AS``), CPU seconds as a backstop for the
   wall-clock timeout, no core files, a file-size cap; a private network namespace when
   the kernel allows it (root), so even native code has no network;
4. runtime guards (``sys.addaudithook``), installed after torch and the harness are imported
   and before the candidate runs: no network, no new processes or signals to others, no
   loading of native libraries, no file writes or deletions outside the working directory
   and the harness's weights file, no reading of ``/proc/*/environ``.

Layers 1-4 live in the candidate's own interpreter and can be undone by native code: they
are a diagnostic layer (clear messages for an LLM that wrote something it should not),
while layer 0 is what contains hostile code. See docs/SECURITY.md.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import resource
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterable

__all__ = [
    "SandboxPolicy", "SandboxViolation", "scrubbed_env", "is_secret_name", "redact",
    "apply_limits", "install_guards", "isolate_network", "run_job", "open_output_log",
    "redirect_output", "WEIGHTS_FILE",
]

# Variables a child may inherit; everything else is dropped.
ENV_ALLOW = frozenset({
    "PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_NUMERIC", "TZ", "TERM",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "LD_LIBRARY_PATH",
    "PYTORCH_CUDA_ALLOC_CONF", "CUBLAS_WORKSPACE_CONFIG", "NVIDIA_VISIBLE_DEVICES",
    "NVIDIA_DRIVER_CAPABILITIES",
})
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION", re.I)
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
_ENVIRON_FILE = re.compile(r"^/proc/.*/environ$")
_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1
FILE_SIZE_LIMIT = 256 << 20  # per file (output log, weights, scratch): weights are far smaller


@dataclass(frozen=True)
class SandboxPolicy:
    """Which protections a child applies. The defaults are what every search uses.

    ``static_check=False`` skips the harness (and its import check) and runs a *probe*
    instead: the source is executed, ``Model(spec)`` is built and one forward pass runs on
    two training items. It exists to test the runtime guards on code the static check would
    have rejected, and to diagnose a candidate; it never trains or scores.
    """

    static_check: bool = True
    block_network: bool = True
    block_processes: bool = True
    block_native: bool = True  # ctypes.dlopen / dlsym of anything after the guards go up
    restrict_files: bool = True  # writes/deletes only in the work dir (+ weights file)
    os_jail: bool = True  # the kernel-enforced jail (:mod:`.oslayer`) where the kernel has it

    def to_dict(self) -> dict[str, bool]:
        return dict(self.__dict__)


class SandboxViolation(PermissionError):
    """Raised inside the child when a guarded operation is refused."""


def is_secret_name(name: str) -> bool:
    """True for variable names that look like they hold credentials."""
    return bool(_SECRET_NAME.search(name))


def scrubbed_env(base: dict[str, str] | os._Environ, home: str, threads: int = 1) -> dict[str, str]:
    """The allow-listed part of ``base`` with ``HOME``/``TMPDIR`` set to ``home``."""
    env = {k: v for k, v in base.items() if k in ENV_ALLOW and not is_secret_name(k)}
    env.setdefault("PATH", "/usr/bin:/bin")
    env["HOME"] = env["TMPDIR"] = home
    for var in _THREAD_VARS:
        env[var] = str(max(1, int(threads)))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def redact(text: str, environ: dict[str, str] | os._Environ | None = None) -> str:
    """Replace the values of secret-looking variables of ``environ`` found in ``text``."""
    environ = os.environ if environ is None else environ
    for name, value in environ.items():
        if is_secret_name(name) and len(value) >= 6 and value in text:
            text = text.replace(value, f"[{name} redacted]")
    return text


# -- resource limits and namespaces ---------------------------------------------------------
def apply_limits(memory_mb: int | None, cpu_seconds: float | None) -> None:
    """Address-space, CPU-time, core-file and file-size limits for this process."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_mb:
        limit = int(memory_mb) << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if cpu_seconds:
        soft = max(1, int(cpu_seconds + 0.999))
        resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 5))
    # EFBIG (an OSError the harness reports) instead of a silent SIGXFSZ death.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def isolate_network() -> bool:
    """Move this process into an empty network namespace when permitted; True on success."""
    try:
        return _libc().unshare(_CLONE_NEWNET) == 0
    except Exception:
        return False


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent (the fork server) dies."""
    try:
        _libc().prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except Exception:
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


# -- audit-hook guards ----------------------------------------------------------------------
_PROCESS_EVENTS = frozenset({
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
    "subprocess.Popen", "pty.spawn", "os.killpg", "os.startfile",
})
_NETWORK_EVENTS = frozenset({
    "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo",
    "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr",
    "socket.getnameinfo", "socket.sendto", "socket.sendmsg", "socket.socketpair",
    "urllib.Request", "http.client.connect", "ftplib.connect", "smtplib.connect",
    "poplib.connect", "imaplib.open", "nntplib.connect", "telnetlib.Telnet.open",
    "webbrowser.open",
})
_NATIVE_EVENTS = frozenset({"ctypes.dlopen", "ctypes.dlsym", "ctypes.dlsym/handle"})
# Filesystem mutations: event -> indices of the path arguments to check.
_PATH_EVENTS: dict[str, tuple[int, ...]] = {
    "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1),
    "os.symlink": (1,), "os.chmod": (0,), "os.chown": (0,), "os.truncate": (0,),
    "os.utime": (0,), "os.chflags": (0,), "os.lchflags": (0,), "os.lchmod": (0,),
    "os.setxattr": (0,), "os.removexattr": (0,), "shutil.rmtree": (0,),
    "shutil.copytree": (1,), "shutil.move": (1,), "os.mkfifo": (0,), "os.mknod": (0,),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


class _Guard:
    """The audit hook: refuses guarded events with a :class:`SandboxViolation`."""

    def __init__(self, policy: SandboxPolicy, write_dirs: Iterable[str], write_files: Iterable[str]):
        self.policy = policy
        self.write_dirs = tuple(os.path.realpath(d) for d in write_dirs)
        self.write_files = tuple(os.path.realpath(f) for f in write_files)
        self.pid = os.getpid()
        self.busy = False  # realpath() below must not re-enter the hook

    def allowed_write(self, path: Any) -> bool:
        if isinstance(path, int):
            return True  # an already open descriptor; opening it was checked
        real = os.path.realpath(os.fsdecode(path))
        if real == "/dev/null":
            return True
        if any(real == d or real.startswith(d + os.sep) for d in self.write_dirs):
            return True
        return any(real == f or real.startswith(f + ".") for f in self.write_files)

    @staticmethod
    def refuse(what: str, event: str) -> None:
        raise SandboxViolation(f"sandbox: {what} is not allowed in a candidate ({event})")

    def __call__(self, event: str, args: tuple) -> None:
        if self.busy:
            return
        policy = self.policy
        if event == "open":
            self.busy = True
            try:
                self._check_open(args)
            finally:
                self.busy = False
        elif event in _PATH_EVENTS and policy.restrict_files:
            self.busy = True
            try:
                for i in _PATH_EVENTS[event]:
                    if i < len(args) and args[i] is not None and not self.allowed_write(args[i]):
                        self.refuse(f"changing {os.fsdecode(args[i])!s} outside the work dir", event)
            finally:
                self.busy = False
        elif event == "os.link" and policy.restrict_files:
            self.refuse("creating hard links", event)
        elif event in _PROCESS_EVENTS and policy.block_processes:
            self.refuse("starting processes or signalling process groups", event)
        elif event == "os.kill" and policy.block_processes:
            if args and args[0] not in (0, self.pid):
                self.refuse("signalling other processes", event)
        elif event in _NETWORK_EVENTS and policy.block_network:
            self.refuse("network access", event)
        elif event in _NATIVE_EVENTS and policy.block_native:
            self.refuse("loading native libraries or symbols", event)
        elif event == "resource.setrlimit":
            self.refuse("changing resource limits", event)

    def _check_open(self, args: tuple) -> None:
        path, mode, flags = (tuple(args) + (None, None, None))[:3]
        if isinstance(path, (str, bytes)) and _ENVIRON_FILE.match(os.path.realpath(os.fsdecode(path))):
            self.refuse("reading process environments", "open")
        if not self.policy.restrict_files:
            return
        if flags is not None:
            writing = bool(int(flags) & _WRITE_FLAGS)
        else:
            writing = any(c in str(mode or "r") for c in "wax+")
        if writing and not self.allowed_write(path):
            self.refuse(f"writing {os.fsdecode(path)} outside the work dir", "open")


def _guard_native_writers(guard: _Guard) -> None:
    """torch writes files from C++ without an ``open`` audit event: check its entry points."""
    import torch

    def checked(path: Any, what: str) -> None:
        if isinstance(path, (str, bytes, os.PathLike)) and not guard.allowed_write(path):
            guard.refuse(f"{what} to {os.fsdecode(path)} outside the work dir", what)

    writer = torch._C.PyTorchFileWriter

    def file_writer(f: Any, *a: Any, **k: Any) -> Any:
        checked(f, "torch.save")
        return writer(f, *a, **k)

    torch._C.PyTorchFileWriter = file_writer

    def shared_guard(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        def wrapped(filename: Any, shared: Any = None, *a: Any, **k: Any) -> Any:
            if shared or k.get("shared"):
                checked(filename, name)
            return fn(filename, shared, *a, **k) if shared is not None else fn(filename, *a, **k)
        return wrapped

    torch.from_file = shared_guard(torch.from_file, "torch.from_file")
    for cls in (torch.UntypedStorage, torch.TypedStorage):
        try:
            setattr(cls, "from_file", staticmethod(shared_guard(cls.from_file, "Storage.from_file")))
        except (AttributeError, TypeError):
            pass


def _block_raw_spawn() -> None:
    """``_posixsubprocess.fork_exec`` raises no audit event in Python 3.11: remove it."""
    def refused(*_a: Any, **_k: Any) -> None:
        raise SandboxViolation("sandbox: starting processes is not allowed in a candidate")

    for modname, attr in (("_posixsubprocess", "fork_exec"), ("subprocess", "_fork_exec")):
        mod = sys.modules.get(modname)
        if mod is not None and hasattr(mod, attr):
            try:
                setattr(mod, attr, refused)
            except (AttributeError, TypeError):
                pass


def install_guards(policy: SandboxPolicy, write_dirs: Iterable[str],
                   write_files: Iterable[str] = ()) -> None:
    """Install the audit hook (permanent for this process) and the native-writer checks."""
    guard = _Guard(policy, write_dirs, write_files)
    if policy.restrict_files:
        _guard_native_writers(guard)
    if policy.block_processes:
        _block_raw_spawn()
    sys.dont_write_bytecode = True
    sys.addaudithook(guard)


# -- the job body ---------------------------------------------------------------------------
_OOM_TEXT = re.compile(
    r"MemoryError|can't allocate memory|Cannot allocate memory|out of memory|bad_alloc", re.I
)


class _Frames:
    """Newline-delimited JSON frames to the parent (never pickle: the parent must not trust us)."""

    def __init__(self, fd: int):
        self.fd = fd

    def send(self, obj: dict[str, Any]) -> None:
        data = (json.dumps(obj, default=str) + "\n").encode()
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except OSError:  # the parent is gone: nothing left to do
            os._exit(1)


def _failure_from_exception(exc: BaseException, status_default: Any) -> Any:
    from ..modeling.result import EvalResult, Status

    tb = traceback.extract_tb(exc.__traceback__)
    where = next((f"line {f.lineno}: " for f in reversed(tb) if f.filename == "candidate.py"), "")
    text = f"{where}{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) or _OOM_TEXT.search(text):
        return EvalResult.failure(Status.OUT_OF_MEMORY, text)
    if isinstance(exc, SystemExit):
        return EvalResult.failure(Status.RUNTIME_ERROR, f"{where}the candidate called exit({exc.code})")
    return EvalResult.failure(status_default, text)


def probe(task: Any, source: str, device: str) -> Any:
    """Unchecked path (see :class:`SandboxPolicy`): run the source, build it, one forward pass."""
    from ..modeling.result import EvalResult, Status
    import torch

    try:
        code = compile(source, "candidate.py", "exec")
    except SyntaxError as exc:
        return EvalResult.failure(Status.SYNTAX_ERROR, f"line {exc.lineno}: {exc.msg}")
    try:
        namespace: dict[str, Any] = {"__name__": "candidate"}
        exec(code, namespace)
        model_cls = namespace.get("Model")
        if model_cls is None:
            return EvalResult.failure(Status.CONTRACT_ERROR, "the source defines no class named Model")
        model = model_cls(task.spec()).to(device)
        split = task.train
        with torch.no_grad():
            if task.kind.value == "trajectory":
                y = torch.as_tensor(split.targets[:2], dtype=torch.float32, device=device)
                u = torch.as_tensor(split.inputs[:2], dtype=torch.float32, device=device)
                t = task.spec().time.to(device)
                out = model(y[:, : task.context], u, t)
            else:
                out = model(torch.as_tensor(split.inputs[:2], dtype=torch.float32, device=device))
        n = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return EvalResult(status=Status.OK, message=f"probe only (no training): output {tuple(out.shape)}",
                          n_parameters=int(n), device=device)
    except BaseException as exc:  # noqa: BLE001 - every candidate fault becomes a status
        return _failure_from_exception(exc, Status.RUNTIME_ERROR)


def _probe_networks(task: Any, payload: dict[str, Any], config: Any) -> tuple[Any, dict[str, Any]]:
    """The distill probe (:mod:`~nimm_jupyter.modeling.network_probe`): no training, the
    parent's weights from the payload, its networks' tables on the training split."""
    import base64

    from ..modeling.network_probe import sample_networks

    return sample_networks(task, payload["source"], base64.b64decode(payload["network_probe"]), config)


def _predict_trained(task: Any, payload: dict[str, Any], config: Any) -> tuple[Any, dict[str, Any]]:
    """A what-if (:func:`~nimm_jupyter.modeling.network_probe.predict_trained`): no training,
    the node's weights from the payload, its predictions on the (changed) task."""
    import base64

    from ..modeling.network_probe import predict_trained

    return predict_trained(task, payload["source"], base64.b64decode(payload["predict_with"]), config)


WEIGHTS_FILE = "weights.pt"  # in the job's work dir; the driver moves it where it belongs


def open_output_log(host_workdir: str) -> int:
    """The child's output log (``output.log`` in the driver-visible work dir), opened for writing."""
    return os.open(os.path.join(host_workdir, "output.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)


def redirect_output(log: int) -> None:
    """stdin from /dev/null, stdout and stderr to ``log`` (which is then closed)."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(null)


def _export_weights(path: str, weights_fd: int | None) -> None:
    """Copy the harness's weights file out through ``weights_fd`` (opened before the jail)."""
    if weights_fd is None:
        return
    with open(path, "rb") as src, os.fdopen(weights_fd, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)


def _commit_and_reveal(report: dict[str, Any], model: Any, task: Any, reveal_fd: int,
                       frames: _Frames, config: Any) -> None:
    """Send the report and predictions as a ``commit``, answer the window reveal and the
    sequential one-step reveal (:func:`.reveal.answer_reveals`), then the empty ``done``. A
    model that fails there ends the reveal early (the driver says where); why goes to the
    output log."""
    import torch

    from .reveal import answer_reveals

    frames.send({"kind": "commit", **report})
    failure = answer_reveals(model, task, reveal_fd, frames.send, config.device,
                             getattr(torch, config.dtype))
    if failure:
        print(failure, flush=True)
    frames.send({"kind": "done"})


def run_job(task: Any, out_fd: int, payload: dict[str, Any], workdir: str,
            weights_fd: int | None = None, reveal_fd: int | None = None) -> None:
    """Body of one evaluation child (after ``fork`` and, when on, the jail); never returns.

    ``workdir`` is the job's work dir as this process sees it; stdout/stderr already go to
    the output log. When weights are asked for, the harness writes them to
    ``workdir/weights.pt``; inside the jail they leave through ``weights_fd``. With a
    ``reveal_fd`` (the driver's reveal pipe), a trained model of a trajectory task then
    answers the sequential one-step reveal (:mod:`.reveal`) before the ``done`` frame.
    """
    frames = _Frames(out_fd)
    status = 0
    try:
        started = time.perf_counter()
        import faulthandler

        faulthandler.enable()  # a segfault leaves its Python traceback in output.log
        policy = SandboxPolicy(**payload["policy"])
        threads = int(payload.get("threads", 1))
        apply_limits(payload.get("memory_mb"), payload.get("cpu_seconds"))
        env = scrubbed_env(os.environ, workdir, threads)
        os.environ.clear()
        os.environ.update(env)
        os.chdir(workdir)
        import tempfile

        tempfile.tempdir = workdir
        import torch

        torch.set_num_threads(threads)
        if policy.block_network:
            isolate_network()
        from ..modeling.config import TrainConfig

        config = TrainConfig(**payload["config"])
        if payload.get("weights"):
            config = dataclasses.replace(config, save_weights=os.path.join(workdir, WEIGHTS_FILE))
        evaluate = None
        if policy.static_check:
            try:
                from ..modeling.harness import fit_keeping_model as evaluate
                from ..modeling import network_probe  # noqa: F401 - imported before the guards
            except Exception as exc:  # an installation fault, not the candidate's
                frames.send({"kind": "error", "message": f"evaluation harness unavailable: {exc!r}"})
                os._exit(3)
        write_files = [config.save_weights] if config.save_weights else []
        install_guards(policy, [workdir], write_files)
        frames.send({"kind": "started", "setup_s": time.perf_counter() - started})

        def progress(p: dict[str, Any]) -> None:
            frames.send({"kind": "progress", "progress": {k: float(v) for k, v in p.items()}})

        from ..modeling.result import Status
        from .protocol import encode_array

        predictions: dict[str, Any] = {}
        networks: dict[str, Any] = {}
        model = None
        try:
            if payload.get("network_probe") and evaluate is not None:
                result, networks = _probe_networks(task, payload, config)
            elif payload.get("predict_with") and evaluate is not None:
                result, predictions = _predict_trained(task, payload, config)
            elif evaluate is not None:
                result, predictions, model = evaluate(task, payload["source"], config, progress)
            else:
                result = probe(task, payload["source"], config.device)
        except BaseException as exc:  # noqa: BLE001 - the harness promised not to, but still
            result = _failure_from_exception(exc, Status.RUNTIME_ERROR)
        if result.status is Status.RUNTIME_ERROR and _OOM_TEXT.search(result.message or ""):
            result.status = Status.OUT_OF_MEMORY
        if result.weights_path:  # closes weights_fd: fixed before any target is revealed
            _export_weights(result.weights_path, weights_fd)
        # the driver scores these (the task here has no test targets); its scores are ignored
        report = {"result": result.to_dict(),
                  "predictions": {s: encode_array(p) for s, p in predictions.items()}
                  if result.ok else {},
                  **({"networks": {name: {"inputs": encode_array(x), "outputs": encode_array(y)}
                                   for name, (x, y) in networks.items()}} if networks else {})}
        from .reveal import reveal_needed

        if model is not None and reveal_fd is not None and reveal_needed(task):
            _commit_and_reveal(report, model, task, reveal_fd, frames, config)
        else:
            frames.send({"kind": "done", **report})
    except BaseException as exc:  # noqa: BLE001
        try:
            frames.send({"kind": "error", "message": f"{type(exc).__name__}: {exc}"})
        except BaseException:  # noqa: BLE001
            pass
        status = 4
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001
            pass
        os._exit(status)  # skip atexit/finalizers inherited from the fork server
