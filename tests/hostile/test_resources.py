"""Resource attacks: double fork + setsid survivors, /dev/shm fill, work-dir fill."""
from __future__ import annotations

import os
import time

import pytest

from conftest import probe, report, run

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
