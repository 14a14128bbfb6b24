"""Resource attacks: double fork + setsid survivors, /dev/shm fill, work-dir fill, memory
spread over tmpfs and the process (the per-job memory cgroup)."""
from __future__ import annotations

import os
import sys
import time

import pytest

from conftest import NO_GUARDS, need_jail, probe, report, run
from nimm_jupyter.execution import LocalExecutor, oslayer
from nimm_jupyter.modeling.result import Status

pytestmark = pytest.mark.timeout(120)


def _pid_namespaces() -> dict[int, str]:
    out = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                out[int(p)] = os.readlink(f"/proc/{p}/ns/pid")
            except OSError:
                pass
    return out


def test_double_fork_and_setsid_do_not_survive(jailed):
    before = set(_pid_namespaces().values())
    r = run(jailed, probe('''
import time
def escape():
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(300)
        os._exit(0)
    time.sleep(0.2)
    return "forked"
check("escape", escape)
'''))
    assert report(r)["escape"] == "forked"
    deadline = time.monotonic() + 5
    while True:
        ours = set(_pid_namespaces().values()) - before
        if not ours or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not ours, "a process of the job's PID namespace is still alive"


def test_dev_shm_fill_is_capped_and_leaves_nothing(jailed):
    host = set(os.listdir("/dev/shm"))
    r = run(jailed, probe('''
def fill():
    with open("/dev/shm/nimm_fill", "wb") as f:
        for _ in range(256):
            f.write(b"x" * (1 << 20))
check("shm", fill)
'''))
    assert "OSError" in report(r)["shm"]  # ENOSPC at the 16 MiB cap, not 256 MiB
    assert set(os.listdir("/dev/shm")) - host == set()


def test_work_dir_fill_is_capped(jailed):
    r = run(jailed, probe('''
def fill():
    n = 0
    with open("big.bin", "wb") as f:
        for _ in range(512):
            f.write(b"x" * (1 << 20)); n += 1
    return n
check("workdir", fill)
check("tmp_other", lambda: open("/tmp/other.bin", "wb").write(b"x" * (80 << 20)))
'''))
    found = report(r)
    assert "OSError" in found["workdir"] and "OSError" in found["tmp_other"]


def test_memory_cgroup_counts_tmpfs_and_memory_together():
    """700 MiB of tmpfs files plus 400 MiB of memory: each under its own cap, neither seen by
    the address-space limit or the resident-memory watchdog, together over the job's 1 GiB:
    the job's cgroup makes it ``out_of_memory``, and its group is removed afterwards."""
    need_jail()
    limits = oslayer.JailLimits(workdir_mb=900, shm_mb=16, max_processes=64)
    with LocalExecutor(workers=1, device="cpu", policy=NO_GUARDS, jail=limits, memory_mb=1024,
                       limit_address_space=False) as ex:
        if ex.cgroup_problem is not None:
            print(f"SKIP: no memory cgroup: {ex.cgroup_problem}", file=sys.stderr)
            pytest.skip(f"no memory cgroup: {ex.cgroup_problem}")
        root = ex._groups.root
        r = run(ex, probe('''
def fill():
    for k in range(14):  # under the per-file size limit
        with open(f"files{k}.bin", "wb") as f:
            for _ in range(50):
                f.write(b"x" * (1 << 20))
    held = bytearray(400 << 20)
    for i in range(0, len(held), 4096):
        held[i] = 1
    return "survived"
check("fill", fill)
'''), timeout=120)
        assert r.status is Status.OUT_OF_MEMORY, (r.status, r.message)
        assert "memory limit of 1024 MiB" in r.message and "tmpfs" in r.message
        assert [e for e in os.listdir(root) if e.startswith("job-")] == []
    assert not os.path.exists(root)
