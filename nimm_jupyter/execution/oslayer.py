"""The kernel-enforced layer of the sandbox: namespaces, an unprivileged uid, no capabilities.

A forked job child (``A``, still in the host's namespaces) enters the jail with
:func:`enter_jail` before any candidate code runs. What the kernel then enforces:

* **no root**: when the fork server runs as root, ``A`` switches to a fresh random uid/gid
  (``JAIL_UID_BASE`` + 24 random bits), so a job owns nothing on the host and shares its uid
  with no other job; as a normal user it keeps that user's uid (the read-only mounts below
  still stop writes).
* **own namespaces**: user, mount, PID, network (empty: no network at all, not even abstract
  Unix sockets), IPC and UTS. Nothing of the driver, the fork server or another job is
  visible: ``/proc`` is a fresh mount of the job's own PID namespace.
* **read-only file system**: every mount is made read-only and ``nosuid``; the only writable
  places are size-capped tmpfs mounts, ``/tmp`` (holding the job's work dir ``/tmp/work``,
  its ``HOME`` and ``TMPDIR``) and ``/dev/shm``, so disk *and* tmpfs use are bounded per job and vanish with it. What the
  driver needs back leaves through descriptors opened before entry (result pipe, output log,
  weights file), each capped by ``RLIMIT_FSIZE``.
* **reads limited** by Landlock where the kernel has it (:mod:`.landlock`): system libraries,
  ``/etc``, ``/proc``, ``/sys``, ``/dev`` and the interpreter's own paths, nothing else.
* **no way back**: every capability is dropped (bounding set included), ``no_new_privs`` is
  set, the candidate's process is not dumpable, and a seccomp filter (:mod:`.seccomp`)
  refuses the system calls a training job never needs (ptrace, mount, namespaces, keyrings,
  bpf, ...).
* **nothing survives**: the candidate runs as a child ``C`` of a tiny init ``B`` (PID 1 of the
  job's PID namespace); when ``C`` ends, ``B`` exits with ``C``'s status and the kernel kills
  every process left in the namespace (double fork + ``setsid`` included). ``RLIMIT_NPROC``
  caps the processes of the job's uid.

Process chain: fork server -> ``A`` (reaper outside the namespace, reports ``B``'s status as its
own) -> ``B`` (init) -> ``C`` (candidate). Only ``C`` returns from :func:`enter_jail`.

:func:`probe` tries the whole entry once in a throwaway child, so a kernel without user
namespaces (or macOS) is detected once, up front, and reported as a clear line.
"""
from __future__ import annotations

import ctypes
import os
import signal
from dataclasses import dataclass
from typing import Any

from . import landlock, seccomp

__all__ = ["JailLimits", "enter_jail", "probe", "JAIL_WORKDIR", "JAIL_UID_BASE", "JailError"]

JAIL_WORKDIR = "/tmp/work"  # the job's work dir inside the jail, on its private, capped /tmp
JAIL_UID_BASE = 0x50000000  # jail uids: this + 24 random bits (root fork servers only)

_CLONE_NEWNS, _CLONE_NEWUTS, _CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
_CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_BIND, _MS_REC, _MS_PRIVATE = 0x1000, 0x4000, 1 << 18
_AT_RECURSIVE = 0x8000
_MOUNT_ATTR_RDONLY, _MOUNT_ATTR_NOSUID = 0x1, 0x2
# New mount API (5.2+ / 5.12+): the same numbers on every architecture.
_SYS_OPEN_TREE, _SYS_MOVE_MOUNT, _SYS_MOUNT_SETATTR = 428, 429, 442
_OPEN_TREE_CLONE, _MOVE_MOUNT_F_EMPTY_PATH = 1, 4
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_CAPBSET_DROP, _PR_SET_NO_NEW_PRIVS = 1, 4, 24, 38
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class JailError(OSError):
    """Entering the jail failed: the job must not run (never silently unjailed)."""


@dataclass(frozen=True)
class JailLimits:
    """Per-job kernel limits. ``workdir_mb`` caps the work dir (tmpfs), ``shm_mb`` ``/dev/shm``,
    ``max_processes`` the processes and threads of the job's uid (``RLIMIT_NPROC``)."""

    workdir_mb: int = 512
    shm_mb: int = 64
    max_processes: int = 256

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


_libc_handle: Any = None


def _libc() -> Any:
    global _libc_handle
    if _libc_handle is None:
        _libc_handle = ctypes.CDLL(None, use_errno=True)
    return _libc_handle


def _check(ret: int, what: str) -> int:
    if ret == -1:
        err = ctypes.get_errno()
        raise JailError(err, f"{what}: {os.strerror(err)}")
    return ret


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = (lambda s: None if s is None else s.encode())
    _check(_libc().mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {target}")


def _all_read_only(path: str = "/") -> None:
    """Every mount at and below ``path`` (default: the whole private mount namespace)
    read-only and nosuid, in one call."""

    class MountAttr(ctypes.Structure):
        _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                    ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]

    attr = MountAttr(_MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID, 0, 0, 0)
    _check(_libc().syscall(_SYS_MOUNT_SETATTR, -100, path.encode(), _AT_RECURSIVE,
                           ctypes.byref(attr), ctypes.sizeof(attr)), f"mount_setattr {path} read-only")


def _drop_capabilities() -> None:
    """Bounding set, then effective/permitted/inheritable; then no_new_privs."""
    libc = _libc()
    for cap in range(64):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) == -1 and ctypes.get_errno() == 22:
            break  # EINVAL: past the last capability this kernel knows

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    data = (Data * 2)()
    _check(libc.capset(ctypes.byref(Header(_LINUX_CAPABILITY_VERSION_3, 0)), data), "capset")
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def _die_with_parent() -> None:
    _libc().prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _exit_like(status: int) -> None:
    """End this process the way the child with wait status ``status`` ended."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # re-raising SIGSEGV & co.: no core
            signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        except (OSError, ValueError):
            pass
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 70)


def _wait_for(child: int, *, init: bool) -> int:
    """Wait for ``child`` (reaping anything else, as init must); its wait status."""
    while True:
        try:
            pid, status = os.waitpid(-1 if init else child, 0)
        except ChildProcessError:
            return 70 << 8
        except InterruptedError:
            continue
        if pid == child:
            return status


def _report_end(status_r: int, init: int) -> None:
    """A: end the way the candidate did. Init cannot kill itself with a signal, so B sends the
    candidate's wait status on a pipe of its own; B's own status counts if it sent none."""
    status = _wait_for(init, init=False)
    data = os.read(status_r, 4)
    _exit_like(int.from_bytes(data, "little") if len(data) == 4 else status)


def _hidden_parent(path: str) -> str | None:
    """The outermost directory on ``path`` that others may not enter (e.g. ``/root``), if any."""
    parts = os.path.abspath(path).split(os.sep)[1:]
    for i in range(1, len(parts) + 1):
        d = os.sep + os.sep.join(parts[:i])
        try:
            mode = os.stat(d).st_mode
        except OSError:
            return None
        if not mode & 0o001:
            return d
    return None


# The jail mounts its own tmpfs over these, so whatever the interpreter reads below them (a
# checkout or virtual environment under /tmp, as CI clones often are) must be put back.
_COVERED_ROOTS = (os.path.dirname(JAIL_WORKDIR), "/dev/shm")


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _outermost(paths: set[str]) -> list[str]:
    """``paths`` without those inside another one (the outer mount carries them)."""
    kept: list[str] = []
    for p in sorted(paths, key=len):
        if not any(_under(p, q) for q in kept):
            kept.append(p)
    return kept


def _python_paths() -> tuple[dict[str, list[str]], list[str]]:
    """What the interpreter reads (stdlib, site-packages, sys.path), as two lists to re-expose
    read-only: ``{hidden dir: [paths inside it]}`` for paths inside a directory a foreign uid
    cannot enter, and the paths below the roots the jail covers with its own tmpfs."""
    import sys

    out: dict[str, list[str]] = {}
    covered: set[str] = set()
    for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path}:
        if p and os.path.isdir(p):
            p = os.path.abspath(p)
            if any(_under(p, root) for root in _COVERED_ROOTS):
                # A covered root itself (``python -m`` run from /tmp puts /tmp on sys.path) and
                # the jail's own work dir are never put back: they would hide the jail's tmpfs.
                if p not in _COVERED_ROOTS and not _under(p, JAIL_WORKDIR):
                    covered.add(p)
                continue
            hidden = _hidden_parent(p)
            if hidden is not None and p != hidden:
                out.setdefault(hidden, []).append(p)
    return out, _outermost(covered)


def _attach(path: str, fd: int) -> None:
    """Attach the detached mount tree ``fd`` at ``path`` (created if missing)."""
    os.makedirs(path, exist_ok=True)
    _check(_libc().syscall(_SYS_MOVE_MOUNT, fd, b"", -100, path.encode(),
                           _MOVE_MOUNT_F_EMPTY_PATH), f"move_mount {path}")
    os.close(fd)


def _clone_tree(path: str) -> int:
    """A detached copy of the mount tree at ``path`` (``open_tree``), opened while still root."""
    return _check(_libc().syscall(_SYS_OPEN_TREE, -100, path.encode(),
                                  _OPEN_TREE_CLONE | _AT_RECURSIVE), f"open_tree {path}")


def _expose(hidden: dict[str, list[tuple[str, int]]], uid: int, gid: int) -> None:
    """B: cover each hidden dir with an empty tmpfs and attach only the interpreter's paths in
    it, from detached trees cloned while still root (so the parents' modes are not checked)."""
    for top, paths in hidden.items():
        _mount("tmpfs", top, "tmpfs", _MS_NOSUID | _MS_NODEV, f"size=1m,mode=0755,uid={uid},gid={gid}")
        for path, fd in sorted(paths):
            _attach(path, fd)


def _become_unprivileged(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    # A uid change makes us non-dumpable, which would make /proc/self/uid_map root's.
    _libc().prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)


def enter_jail(limits: JailLimits, keep_fds: list[int]) -> str:
    """Enter the job's jail (see the module docstring); returns the work dir inside it.

    Called in a freshly forked job child that leads its own session. Only the candidate
    process ``C`` returns; ``A`` and ``B`` end with ``C``'s exit status. Descriptors other than
    0-2 and ``keep_fds`` are closed first. Raises :class:`JailError` (in ``A``, before any
    candidate code) when a step fails.
    """
    # The fork server's SIGCHLD wake-up descriptor is about to be closed: drop both.
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    uid, gid = os.getuid(), os.getgid()
    hidden: dict[str, list[tuple[str, int]]] = {}
    covered: list[tuple[str, int]] = []
    hidden_paths, covered_paths = _python_paths()
    if uid == 0:  # open what the interpreter needs while we may still enter /root & co.
        hidden = {top: [(p, _clone_tree(p)) for p in paths]
                  for top, paths in hidden_paths.items()}
        covered = [(p, _clone_tree(p)) for p in covered_paths]
    path_fds = [fd for paths in hidden.values() for _, fd in paths] + [fd for _, fd in covered]
    keep = sorted({0, 1, 2, *keep_fds, *path_fds})
    for lo, hi in zip(keep, keep[1:] + [1 << 20]):
        os.closerange(lo + 1, hi)
    keep = sorted({0, 1, 2, *keep_fds})
    if uid == 0:
        uid = gid = JAIL_UID_BASE + int.from_bytes(os.urandom(3), "little")
        _become_unprivileged(uid, gid)
    _die_with_parent()  # a uid change resets the parent-death signal
    _check(_libc().unshare(_CLONE_NEWUSER | _CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWNET
                           | _CLONE_NEWIPC | _CLONE_NEWUTS), "unshare namespaces")
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1")
    _write("/proc/self/gid_map", f"{gid} {gid} 1")
    status_r, status_w = os.pipe()
    init = os.fork()
    if init:  # A: outside the PID namespace; nothing left to do but report B's end
        for fd in keep + path_fds + [status_w]:
            os.close(fd)
        _report_end(status_r, init)
    try:  # B: PID 1 of the job's namespace; builds the file system, then forks C
        os.close(status_r)
        _die_with_parent()
        _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
        _expose(hidden, uid, gid)
        _all_read_only()
        if not covered:  # not root: this namespace's owner may clone what it can reach
            covered = [(p, _clone_tree(p)) for p in covered_paths]
        _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
        common = f"uid={uid},gid={gid}"
        _mount("tmpfs", os.path.dirname(JAIL_WORKDIR), "tmpfs", _MS_NOSUID | _MS_NODEV,
               f"size={int(limits.workdir_mb)}m,mode=0700,{common}")
        os.mkdir(JAIL_WORKDIR, 0o700)
        _mount("tmpfs", "/dev/shm", "tmpfs", _MS_NOSUID | _MS_NODEV,
               f"size={int(limits.shm_mb)}m,mode=0700,{common}")
        for path, fd in covered:  # the interpreter's paths under the new tmpfs, read-only
            _attach(path, fd)
            _all_read_only(path)
        import resource

        n = int(limits.max_processes)
        resource.setrlimit(resource.RLIMIT_NPROC, (n, n))
        _drop_capabilities()
        _libc().prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    except BaseException as exc:  # noqa: BLE001 - report through the output log, then stop
        os.write(2, f"sandbox: could not build the job's jail: {exc}\n".encode())
        os._exit(71)
    candidate = os.fork()
    if candidate:
        for fd in keep:
            if fd > 2:
                os.close(fd)
        status = _wait_for(candidate, init=True)
        os.write(status_w, status.to_bytes(4, "little"))
        os._exit(0)  # the kernel now kills whatever is left in the namespace
    os.close(status_w)
    _die_with_parent()  # C: the candidate's process
    landlock.restrict()
    seccomp.install()
    return JAIL_WORKDIR


def probe() -> str | None:
    """Try :func:`enter_jail` in a throwaway child: ``None`` when it works, else why not."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            os.setsid()
            os.dup2(w, 2)  # what a failing init writes to stderr is the answer too
            enter_jail(JailLimits(workdir_mb=1, shm_mb=1, max_processes=64), [w])
            # Inside, the candidate is PID 2 (its init is 1) and the root is read-only.
            writable = os.access("/", os.W_OK)
            os.write(w, b"ok" if os.getpid() == 2 and not writable else b"jail incomplete")
            code = 0
        except BaseException as exc:  # noqa: BLE001
            os.write(w, f"{exc}".encode()[:500])
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while True:
        data = os.read(r, 4096)
        if not data:
            break
        chunks.append(data)
    os.close(r)
    os.waitpid(pid, 0)
    text = b"".join(chunks).decode(errors="replace")
    if text == "ok":
        return None
    return text.strip() or "the jail's test process died without a word"
