"""A seccomp filter for candidate processes: refuse the system calls training never needs.

Installed last in the jail (:mod:`.oslayer`, after ``no_new_privs``), so it binds the
candidate and everything it starts. Refused calls fail with ``EPERM`` (``clone3`` with
``ENOSYS``, so the C library falls back to ``clone``, whose flags the filter can see): no
tracing or reading other processes' memory, no mounts or new namespaces, no kernel keyrings,
bpf, perf events, userfaultfd, io_uring (which would bypass the filter), module loading or
reboot. Unknown architectures and x32 calls are refused outright.
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

__all__ = ["install", "DENIED"]

DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "mount", "umount2",
    "pivot_root", "unshare", "setns", "fsopen", "fsmount", "fspick", "move_mount", "open_tree",
    "mount_setattr", "keyctl", "add_key", "request_key", "bpf", "perf_event_open",
    "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register", "kexec_load",
    "init_module", "finit_module", "delete_module", "open_by_handle_at", "reboot", "swapon",
    "acct",
)
# (audit arch, syscall numbers) per machine; the generic numbers are shared by arm64.
_X86_64 = dict(ptrace=101, process_vm_readv=310, process_vm_writev=311, kcmp=312, mount=165,
               umount2=166, pivot_root=155, unshare=272, setns=308, keyctl=250, add_key=248,
               request_key=249, bpf=321, perf_event_open=298, userfaultfd=323, kexec_load=246,
               init_module=175, finit_module=313, delete_module=176, open_by_handle_at=304,
               reboot=169, swapon=167, acct=163, clone=56)
_ARM64 = dict(ptrace=117, process_vm_readv=270, process_vm_writev=271, kcmp=272, mount=40,
              umount2=39, pivot_root=41, unshare=97, setns=268, keyctl=219, add_key=217,
              request_key=218, bpf=280, perf_event_open=241, userfaultfd=282, kexec_load=104,
              init_module=105, finit_module=273, delete_module=106, open_by_handle_at=265,
              reboot=142, swapon=224, acct=89, clone=220)
_NEW = dict(io_uring_setup=425, io_uring_enter=426, io_uring_register=427, open_tree=428,
            move_mount=429, fsopen=430, fsmount=432, fspick=433, mount_setattr=442, clone3=435)
_ARCH = {"x86_64": (0xC000003E, {**_X86_64, **_NEW}), "aarch64": (0xC00000B7, {**_ARM64, **_NEW})}
_NAMESPACE_FLAGS = 0x7E020080  # CLONE_NEW{NS,CGROUP,UTS,IPC,USER,PID,NET} + CLONE_NEWTIME

# classic BPF
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _KILL, _ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2


def _ins(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k & 0xFFFFFFFF)


def _program(arch: int, numbers: dict[str, int]) -> list[bytes]:
    prog = [_ins(_LD_W_ABS, 4), _ins(_JEQ_K, arch, 1, 0), _ins(_RET_K, _KILL),
            _ins(_LD_W_ABS, 0)]
    if arch == 0xC000003E:  # x32 system calls carry bit 30: refuse them all
        prog += [_ins(_JGE_K, 0x40000000, 0, 1), _ins(_RET_K, _ERRNO | errno.EPERM)]
    for name in DENIED:
        prog += [_ins(_JEQ_K, numbers[name], 0, 1), _ins(_RET_K, _ERRNO | errno.EPERM)]
    prog += [_ins(_JEQ_K, numbers["clone3"], 0, 1), _ins(_RET_K, _ERRNO | errno.ENOSYS)]
    # clone(flags, ...): refuse new namespaces (the flags are the first argument's low word).
    prog += [_ins(_JEQ_K, numbers["clone"], 0, 3), _ins(_LD_W_ABS, 16),
             _ins(_JSET_K, _NAMESPACE_FLAGS, 0, 1), _ins(_RET_K, _ERRNO | errno.EPERM)]
    prog.append(_ins(_RET_K, _ALLOW))
    return prog


def install() -> None:
    """Install the filter on this process (inherited by its children). Needs no_new_privs."""
    arch = _ARCH.get(platform.machine())
    if arch is None:
        raise OSError(f"no seccomp filter for this machine ({platform.machine()})")
    code = b"".join(_program(*arch))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buf = ctypes.create_string_buffer(code, len(code))
    prog = SockFprog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp filter refused: {os.strerror(err)}")
