"""Hostile candidates against the kernel jail, with the in-process guards switched off: no read
of the driver's memory or environment, no other job's pipe, no write outside the work dir
(whatever the route: dir_fd, ctypes system(), a re-imported _posixsubprocess, torch.jit from
C++), no network, no tracing."""
from __future__ import annotations

import os
import time

import pytest

from conftest import FAKE_KEY, TASK, probe, report, run
from nimm_jupyter.execution import EvalRequest, TrainConfig

pytestmark = pytest.mark.timeout(120)


def test_driver_proc_memory_and_environment_are_out_of_reach(jailed):
    driver = os.getpid()
    r = run(jailed, probe(f'''
def scan_memory(pid):
    hits = 0
    with open(f"/proc/{{pid}}/maps") as maps, open(f"/proc/{{pid}}/mem", "rb", 0) as mem:
        for line in maps:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            try:
                mem.seek(lo); hits += mem.read(min(hi - lo, 1 << 24)).count(b"HOSTILEtest")
            except OSError:
                pass
    return hits
check("driver_environ", lambda: open("/proc/{driver}/environ", "rb").read())
check("driver_mem", lambda: scan_memory({driver}))
check("pids", lambda: sorted(p for p in os.listdir("/proc") if p.isdigit()))
check("any_environ", lambda: [p for p in os.listdir("/proc") if p.isdigit()
                              and b"HOSTILE" in open(f"/proc/{{p}}/environ", "rb").read()])
check("init_mem", lambda: scan_memory(1))
check("own_env", lambda: [k for k, v in os.environ.items() if "HOSTILE" in v])
'''))
    found = report(r)
    assert FAKE_KEY not in r.message and "HOSTILEtest" not in r.message
    assert found["driver_environ"].startswith("refused") and found["driver_mem"].startswith("refused")
    assert found["pids"] == "['1', '2']"  # its init and itself: nothing of the host
    assert found["own_env"] == "[]"
    assert found["any_environ"] == "[]" or found["any_environ"].startswith("refused")
    assert found["init_mem"].startswith("refused")  # init is not dumpable


def test_another_jobs_pipe_cannot_be_written(jailed):
    """Job A sleeps; job B tries every pipe it can find with a forged result frame."""
    slow = probe("import time\ntime.sleep(2.5)\ncheck('slept', lambda: 'yes')\n")
    forger = probe('''
import json
frame = (json.dumps({"kind": "done", "result": {"status": "ok", "message": "forged",
         "val": {"rmse": 0.0, "rmse_norm": 0.0}}}) + "\\n").encode()
def forge():
    hit = []
    for pid in [p for p in os.listdir("/proc") if p.isdigit() and p != str(os.getpid())]:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                w = os.open(f"/proc/{pid}/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK); os.write(w, frame); hit.append(pid)
            except OSError:
                pass
    return hit
check("forged_into", forge)
''')
    jailed.submit(EvalRequest("pipe-a", slow, TASK, TrainConfig(max_epochs=1), timeout=30))
    time.sleep(0.3)  # A is up and holding its pipe
    jailed.submit(EvalRequest("pipe-b", forger, TASK, TrainConfig(max_epochs=1), timeout=30))
    done = {}
    while len(done) < 2:
        done.update({ev.job_id: ev.result for ev in jailed.poll(0.2) if ev.kind == "done"})
    a, b = done["pipe-a"], done["pipe-b"]
    assert report(b)["forged_into"] in ("[]",) or report(b)["forged_into"].startswith("refused")
    assert "forged" not in a.message and report(a)["slept"] == "yes"


def test_writes_outside_the_work_dir_fail_on_every_route(jailed, scratch):
    targets = {k: scratch / k for k in ("dirfd", "system", "posixsub", "jit", "plain", "link")}
    r = run(jailed, probe(f'''
import ctypes, torch
def dirfd():
    d = os.open({str(scratch)!r}, os.O_RDONLY)
    return os.open("dirfd", os.O_WRONLY | os.O_CREAT, dir_fd=d)
def system():
    return ctypes.CDLL(None).system(b"touch {targets['system']} && echo ran")
def posixsub():
    sys.modules.pop("_posixsubprocess", None)
    import _posixsubprocess, subprocess
    return subprocess.run(["touch", {str(targets['posixsub'])!r}]).returncode
def jit():
    m = torch.jit.script(torch.nn.Linear(1, 1))
    torch.jit.save(m, {str(targets['jit'])!r})
check("dirfd", dirfd)
check("system", system)
check("posixsub", posixsub)
check("jit", jit)
check("plain", lambda: open({str(targets['plain'])!r}, "w"))
check("link", lambda: os.symlink("/etc/passwd", {str(targets['link'])!r}))
check("etc", lambda: open("/etc/nimm_hostile", "w"))
check("workdir", lambda: open("scratch.txt", "w").write("fine"))
'''))
    found = report(r)
    assert not any(p.exists() or p.is_symlink() for p in targets.values()), found
    assert not os.path.exists("/etc/nimm_hostile")
    assert found["workdir"] == "4"  # its own work dir stays writable
    assert found["dirfd"].startswith("refused") and found["jit"].startswith("refused")


def test_no_network_and_no_tracing(jailed):
    r = run(jailed, probe('''
import socket, ctypes
libc = ctypes.CDLL(None, use_errno=True)
check("tcp", lambda: socket.create_connection(("127.0.0.1", 22), timeout=1))
check("abstract_unix", lambda: socket.socket(socket.AF_UNIX).connect("\\0nimm-hostile"))
check("interfaces", lambda: sorted(n for _, n in socket.if_nameindex()))
check("ptrace", lambda: (libc.ptrace(16, 1, 0, 0), ctypes.get_errno()))
check("unshare", lambda: (libc.unshare(0x10000000), ctypes.get_errno()))
check("uid", os.getuid)
'''))
    found = report(r)
    assert found["tcp"].startswith("refused") and found["abstract_unix"].startswith("refused")
    assert found["interfaces"] in ("['lo']", "[]")
    assert found["ptrace"] == "(-1, 1)" and found["unshare"] == "(-1, 1)"  # EPERM (seccomp)
    assert found["uid"] != "0"


SECRET_PROBE = '''
check("secret", lambda: open(SECRET).read())
check("listing", lambda: os.listdir(os.path.dirname(SECRET)))
check("etc", lambda: len(open("/etc/hostname").read()) > 0)
'''


def test_host_files_outside_the_allowed_roots_cannot_be_read(jailed):
    from nimm_jupyter.execution import landlock

    if landlock.abi() < 1:
        print("SKIP: this kernel has no Landlock", flush=True)
        pytest.skip("this kernel has no Landlock (reads are not restricted)")
    secret_dir = f"/var/tmp/nimm-hostile-{os.getpid()}"
    os.makedirs(secret_dir, exist_ok=True)
    secret = os.path.join(secret_dir, "secret.txt")
    with open(secret, "w") as f:
        f.write("HOSTILEsecret")
    os.chmod(secret_dir, 0o755)
    os.chmod(secret, 0o644)  # world-readable: only Landlock stands in the way
    try:
        r = run(jailed, probe(f"SECRET = {secret!r}\n" + SECRET_PROBE))
    finally:
        os.unlink(secret)
        os.rmdir(secret_dir)
    found = report(r)
    assert "HOSTILEsecret" not in r.message
    assert found["secret"].startswith("refused") and found["listing"].startswith("refused")
    assert found["etc"] == "True"
