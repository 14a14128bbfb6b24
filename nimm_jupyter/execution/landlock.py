"""Landlock for candidate processes: read only what a Python training job needs.

The jail's mounts are read-only already, so this layer is about *reads*: without it a job
could read every world-readable file on the host (and, under a normal user, that user's own
files). With it the candidate may read the system's libraries and configuration (``/usr``,
``/lib*``, ``/bin``, ``/etc``), ``/proc``, ``/sys`` and ``/dev`` (CUDA needs them), and the
interpreter's own paths (stdlib, site-packages, ``sys.path``); it may write only in ``/tmp``
(the job's capped tmpfs), ``/dev/shm`` and devices. Descriptors opened before (the result
pipe, the output log, the weights file) are not affected.

Landlock is an unprivileged Linux security module (5.13+). :func:`abi` is 0 where the
kernel lacks it; :func:`restrict` then does nothing and the driver says so once.
"""
from __future__ import annotations

import ctypes
import os
import struct
import sys

__all__ = ["abi", "restrict", "READ_ROOTS"]

_SYS_CREATE, _SYS_ADD_RULE, _SYS_RESTRICT = 444, 445, 446  # same on every architecture
_CREATE_VERSION, _RULE_PATH_BENEATH = 1, 1
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1, 2, 4, 8
_READ = _EXECUTE | _READ_FILE | _READ_DIR
# Every file-system right of each ABI (ioctl rights left unhandled: CUDA needs device ioctls).
_ALL_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1}
_ALL_LATER = (1 << 15) - 1  # ABI 3+: + truncate

READ_ROOTS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc",
              "/proc", "/sys", "/opt/conda")
WRITE_ROOTS = ("/tmp", "/dev/shm", "/dev")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def abi() -> int:
    """The kernel's Landlock ABI version, 0 when unavailable."""
    try:
        v = _libc().syscall(_SYS_CREATE, None, 0, _CREATE_VERSION)
    except (OSError, AttributeError):
        return 0
    return max(0, int(v))


def _interpreter_paths() -> set[str]:
    return {os.path.realpath(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path}
            if p and os.path.isdir(p)}


def restrict(extra_read: tuple[str, ...] = ()) -> int:
    """Restrict this process (and what it starts) as the module docstring says; returns the
    ABI used (0: nothing done). Needs ``no_new_privs``."""
    version = abi()
    if version < 1:
        return 0
    handled = _ALL_BY_ABI.get(version, _ALL_LATER)
    libc = _libc()
    attr = struct.pack("QQQ", handled, 0, 0)
    ruleset = libc.syscall(_SYS_CREATE, ctypes.c_char_p(attr), 8, 0)  # ABI 1 size: fs rights only
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        rules = [(p, _READ) for p in (*READ_ROOTS, *sorted(_interpreter_paths()), *extra_read)]
        rules += [(p, handled) for p in WRITE_ROOTS]
        for path, access in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # not on this system
            try:
                rule = struct.pack("=Qi", access & handled, fd)
                if libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.c_char_p(rule), 0) != 0:
                    err = ctypes.get_errno()
                    if err != 22:  # EINVAL: rights a file (not a dir) cannot hold; skip it
                        raise OSError(err, f"landlock_add_rule {path}: {os.strerror(err)}")
            finally:
                os.close(fd)
        if libc.syscall(_SYS_RESTRICT, ruleset, 0) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    return version
