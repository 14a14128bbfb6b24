"""Hostile candidates: each ends with the right status, nothing leaks, nothing survives.

Every attack is run twice where it makes sense: through the normal path (the harness and
its static contract check, executor ``ex``), giving the status a search would see, and
through the *probe* path (``SandboxPolicy(static_check=False)``, executor ``raw``), which
skips the import check so that the runtime guards of the child are what stops it.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nimm_jupyter.execution import EvalRequest, LocalExecutor, SandboxPolicy, TrainConfig
from nimm_jupyter.execution.sandbox import redact, scrubbed_env
from nimm_jupyter.modeling.result import Status

from test_executor import PRIOR, tiny_task

pytestmark = pytest.mark.timeout(120)

FAKE_KEY = "sk-ant-fake-0123456789abcdef"


def in_forward(code: str) -> str:
    """The working prior with ``code`` run at the start of ``forward`` (static check passes
    unless ``code`` itself is forbidden)."""
    body = textwrap.indent(textwrap.dedent(code).strip(), " " * 8)
    return PRIOR.replace("        C = y_context", body + "\n        C = y_context", 1)


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def wait_dead(pids, limit: float = 5.0) -> list[int]:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def run(ex: LocalExecutor, source: str, timeout: float = 30.0, **cfg):
    job = f"j{time.monotonic_ns()}"
    memory_mb = cfg.pop("memory_mb", 4096)
    cfg.setdefault("max_epochs", 3)
    ex.submit(EvalRequest(job, source, TASK, TrainConfig(**cfg), timeout=timeout, memory_mb=memory_mb))
    t0 = time.monotonic()
    result = ex.wait(job)
    return result, time.monotonic() - t0


TASK = tiny_task()


def warm(executor: LocalExecutor) -> LocalExecutor:
    """Wait for the fork server to start, so that timings below are the candidates' own."""
    run(executor, "class Model(:\n")
    return executor


@pytest.fixture(scope="module")
def ex():
    with LocalExecutor(workers=2, device="cpu") as executor:
        yield warm(executor)


@pytest.fixture(scope="module")
def raw():
    with LocalExecutor(workers=2, device="cpu", policy=SandboxPolicy(static_check=False)) as executor:
        yield warm(executor)


# -- time, memory, crashes -------------------------------------------------------------------
def test_infinite_loop_times_out(ex):
    r, took = run(ex, in_forward("while True:\n    pass"), timeout=3)
    assert r.status is Status.TIMEOUT and "3 s" in r.message
    assert took < 8


def test_huge_allocation_is_out_of_memory(ex, raw):
    r, _ = run(ex, in_forward("x = torch.empty(2 ** 40, dtype=torch.uint8)"))
    assert r.status is Status.OUT_OF_MEMORY, r.message
    # 3 GiB is fine for this machine but not under a 2 GiB address-space limit.
    r, _ = run(ex, in_forward("x = torch.empty(3 * 2 ** 30, dtype=torch.uint8)"), memory_mb=2048)
    assert r.status is Status.OUT_OF_MEMORY, r.message
    r, _ = run(raw, "x = bytearray(2 ** 40)")
    assert r.status is Status.OUT_OF_MEMORY, r.message


def test_resident_memory_watchdog():
    # No address-space limit (what CUDA jobs get): the driver watches resident memory.
    src = ("import torch, time\nkeep = []\nfor i in range(40):\n"
           "    keep.append(torch.ones(12 * 2 ** 20))\n    time.sleep(0.05)\n")
    with LocalExecutor(device="cpu", memory_mb=500, limit_address_space=False,
                       policy=SandboxPolicy(static_check=False)) as ex2:
        r, _ = run(ex2, src)
    assert r.status is Status.OUT_OF_MEMORY and "resident memory" in r.message


def test_segfault_is_crashed(ex, raw):
    r, _ = run(ex, "import ctypes\n" + PRIOR)
    assert r.status is Status.CONTRACT_ERROR and "ctypes" in r.message
    r, _ = run(ex, in_forward("torch.ctypes.string_at(0)"))  # ctypes reached through torch
    assert r.status is Status.CRASHED and "SIGSEGV" in r.message
    r, _ = run(raw, "import ctypes\nctypes.string_at(0)")
    assert r.status is Status.CRASHED and "SIGSEGV" in r.message and "Extension modules" not in r.message


def test_os_exit_is_crashed(ex, raw):
    r, _ = run(ex, "import os\n" + PRIOR)
    assert r.status is Status.CONTRACT_ERROR
    r, _ = run(ex, in_forward("torch.os._exit(3)"))
    assert r.status is Status.CRASHED and "code 3" in r.message
    r, _ = run(raw, "import os\nos._exit(3)")
    assert r.status is Status.CRASHED and "code 3" in r.message


# -- secrets ---------------------------------------------------------------------------------
def test_api_key_never_reaches_the_candidate(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-abcdef-987654")
    # A fresh executor: its fork server starts while the key is in our environment.
    with LocalExecutor(device="cpu") as ex2:
        r, _ = run(ex2, in_forward(
            "env = torch.os.environ\n"
            "raise ValueError(f\"key={env.get('ANTHROPIC_API_KEY')} tok={env.get('MY_SERVICE_TOKEN')}"
            " home={'HOME' in env} {dict(env)}\")"))
        assert r.status is Status.RUNTIME_ERROR
        assert "key=None tok=None home=True" in r.message, r.message
        for leak in (FAKE_KEY, "tok-abcdef"):  # (the names appear in the quoted source line)
            assert leak not in r.message
        server_env = Path(f"/proc/{ex2._server.proc.pid}/environ").read_bytes()
        assert FAKE_KEY.encode() not in server_env and b"ANTHROPIC" not in server_env
        # Reading another process's environment (the driver's holds the key) is refused.
        src = in_forward("fd = torch.os.open('/proc/%d/environ' % torch.os.getppid(), 0)\n"
                         "raise ValueError(torch.os.read(fd, 100000))")
        r, _ = run(ex2, src)
        assert "reading process environments is not allowed" in r.message
        assert FAKE_KEY not in r.message


def test_scrubbed_env_and_redact():
    env = scrubbed_env({"PATH": "/bin", "ANTHROPIC_API_KEY": "x", "OMP_NUM_THREADS": "8",
                        "AWS_SECRET_ACCESS_KEY": "y", "HOME": "/root", "DB_PASSWORD": "z"}, "/tmp/w", 2)
    assert env["HOME"] == env["TMPDIR"] == "/tmp/w" and env["OMP_NUM_THREADS"] == "2"
    assert not {"ANTHROPIC_API_KEY", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD"} & set(env)
    assert redact(f"oops {FAKE_KEY}", {"ANTHROPIC_API_KEY": FAKE_KEY}) == \
        "oops [ANTHROPIC_API_KEY redacted]"


# -- network, processes, files ---------------------------------------------------------------
def test_socket_is_refused(ex, raw):
    r, _ = run(ex, "import socket\n" + PRIOR)
    assert r.status is Status.CONTRACT_ERROR and "socket" in r.message
    for src in ("import socket\nsocket.socket()",
                "import socket\nsocket.create_connection(('127.0.0.1', 9))",
                "import urllib.request\nurllib.request.urlopen('http://example.com')"):
        r, _ = run(raw, src)
        assert r.status is Status.RUNTIME_ERROR and "network access is not allowed" in r.message, r.message


def test_shell_is_refused(ex, raw, tmp_path):
    marker = tmp_path / "shell_ran"
    r, _ = run(ex, "import subprocess\n" + PRIOR)
    assert r.status is Status.CONTRACT_ERROR
    r, _ = run(ex, in_forward(f"torch.os.system('touch {marker}')"))
    assert r.status is Status.RUNTIME_ERROR and "not allowed" in r.message
    for src in (f"import subprocess\nsubprocess.run(['touch', '{marker}'])",
                f"import os\nos.posix_spawn('/usr/bin/touch', ['touch', '{marker}'], {{}})",
                f"import os\nos.execv('/usr/bin/touch', ['touch', '{marker}'])",
                "import os\nos.fork()",
                f"import pty\npty.spawn(['touch', '{marker}'])",
                f"import subprocess\nsubprocess._fork_exec([b'touch', b'{marker}'], [b'/usr/bin/touch'], True, (), "
                "None, None, -1, -1, -1, -1, -1, -1, -1, -1, False, False, -1, None, None, None, -1, None, False)",
                "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"):
        r, _ = run(raw, src)
        assert r.status is Status.RUNTIME_ERROR and "not allowed" in r.message, (src, r.message)
    assert not marker.exists()


def test_writes_outside_the_work_dir_are_refused(ex, raw, tmp_path):
    for i, code in enumerate((f"torch.save({{}}, '{tmp_path}/a.pt')",
                              f"numpy.save('{tmp_path}/b.npy', numpy.zeros(3))")):
        src = "import numpy\n" + in_forward(code)
        r, _ = run(ex, src)
        assert r.status is Status.RUNTIME_ERROR and "outside the work dir" in r.message, r.message
    keep = tmp_path / "keep.txt"
    keep.write_text("mine")
    for src in (f"open('{tmp_path}/c.txt', 'w').write('x')",
                f"import os\nos.remove('{keep}')",
                f"import os\nos.rename('{keep}', 'stolen.txt')",
                f"import os\nos.symlink('/etc/passwd', '{tmp_path}/link')",
                "import os\nos.link('/etc/hostname', 'hard')",
                f"import torch\ntorch.from_file('{keep}', shared=True, size=2)"):
        r, _ = run(raw, src)
        assert r.status is Status.RUNTIME_ERROR and "not allowed" in r.message, (src, r.message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert keep.read_text() == "mine"
    # Inside its own work dir a candidate may write (scratch files); nothing of it remains.
    r, _ = run(raw, "import os\nopen('scratch.txt', 'w').write('x')\nos.remove('scratch.txt')\n"
                    "open('left.txt', 'w').write('x')\n" + PRIOR)
    assert r.status is Status.OK, r.message
    end = time.monotonic() + 5
    while list(Path(raw._root).glob("job-*")) and time.monotonic() < end:
        raw.poll(0.1)  # the work dir goes once the process has exited
    assert list(Path(raw._root).glob("job-*")) == []


# -- candidate faults through the harness ------------------------------------------------------
def test_nan_output(ex):
    r, _ = run(ex, PRIOR.replace("return euler_rollout", "return float('nan') * euler_rollout"))
    assert r.status in (Status.CONTRACT_ERROR, Status.DIVERGED), r.message


def test_wrong_shape(ex):
    r, _ = run(ex, PRIOR.replace("return euler_rollout(", "return y_context * self.k()\n        euler_rollout("))
    assert r.status is Status.CONTRACT_ERROR and "shape" in r.message


def test_syntax_error_and_forbidden_import(ex):
    r, _ = run(ex, "class Model(:\n    pass\n")
    assert r.status is Status.SYNTAX_ERROR
    r, _ = run(ex, "import shutil\n" + PRIOR)
    assert r.status is Status.CONTRACT_ERROR and "shutil" in r.message


# -- process groups: nothing survives ---------------------------------------------------------
SPAWNER = """
import os, subprocess, time
pids = [os.getpid()]
pid = os.fork()
if pid == 0:
    time.sleep(1000)
    os._exit(0)
pids.append(pid)
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)  # leaves the process group but not the session
    time.sleep(1000)
    os._exit(0)
pids.append(pid)
pid = os.fork()
if pid == 0:
    os.setsid()  # leaves the session too: only the fork server's orphan sweep finds it
    time.sleep(1000)
    os._exit(0)
pids.append(pid)
pids.append(subprocess.Popen(['sleep', '1000']).pid)
with open(PIDFILE, 'w') as f:
    f.write(' '.join(map(str, pids)))
"""


@pytest.fixture(scope="module")
def lax():
    # The fallback path (no kernel jail): the candidate writes its pids to the host, and the
    # fork server's own sweep must find them. tests/hostile/ covers the jailed path.
    policy = SandboxPolicy(static_check=False, block_processes=False, restrict_files=False,
                           os_jail=False)
    with LocalExecutor(workers=2, device="cpu", policy=policy) as executor:
        yield warm(executor)


def test_children_of_a_hung_candidate_die_with_it(lax, tmp_path):
    pidfile = tmp_path / "pids"
    r, took = run(lax, f"PIDFILE = {str(pidfile)!r}\n" + SPAWNER + "while True:\n    pass\n", timeout=3)
    assert r.status is Status.TIMEOUT and took < 10
    pids = [int(p) for p in pidfile.read_text().split()]
    assert len(pids) == 5
    assert wait_dead(pids) == []


def test_children_left_by_a_finished_candidate_are_killed(lax, tmp_path):
    pidfile = tmp_path / "pids"
    r, _ = run(lax, f"PIDFILE = {str(pidfile)!r}\n" + SPAWNER + PRIOR)
    assert r.status is Status.OK, r.message
    assert wait_dead([int(p) for p in pidfile.read_text().split()]) == []


def test_shutdown_leaves_no_processes():
    ex2 = LocalExecutor(workers=2, device="cpu")
    for j in ("a", "b", "c"):
        ex2.submit(EvalRequest(j, in_forward("while True:\n    pass"), TASK, timeout=60))
    while not all(ex2._active[j].pid for j in ("a", "b")):
        ex2.poll(0.1)
    pids = [ex2._server.proc.pid] + [ex2._active[j].pid for j in ("a", "b")]
    root = ex2._root
    ex2.shutdown()
    assert wait_dead(pids) == []
    assert not os.path.exists(root)
    assert ex2.running() == 0


def hanging_driver(tmp_path, report: str) -> subprocess.Popen:
    """A driver process with one hanging job that prints ``report`` (a JSON-able expression
    of ``ex``) once the job runs, then sleeps until killed."""
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_executor import tiny_task, LOOP
        from nimm_jupyter.execution import EvalRequest, LocalExecutor
        ex = LocalExecutor(device="cpu")
        ex.submit(EvalRequest("hang", LOOP, tiny_task(), timeout=600))
        while not ex._active["hang"].pid:
            ex.poll(0.1)
        print(json.dumps({report}), flush=True)
        time.sleep(600)
    """))
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)


def test_killed_driver_takes_its_workers_along(tmp_path):
    proc = hanging_driver(tmp_path, '[ex._server.proc.pid, ex._active["hang"].pid]')
    try:
        pids = json.loads(proc.stdout.readline())
        assert all(alive(p) for p in pids)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert wait_dead(pids, limit=10) == []


def test_a_hostile_candidate_cannot_kill_the_driver(raw):
    r, _ = run(raw, "import os, signal\nos.killpg(os.getpgid(os.getppid()), signal.SIGKILL)")
    assert r.status is Status.RUNTIME_ERROR
    r, _ = run(raw, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    assert r.status is Status.CRASHED and "SIGKILL" in r.message


def test_a_killed_drivers_temp_dir_is_removed(tmp_path):
    """The executor's temp dir holds the task pickles (with their targets): the fork server
    removes it when its driver dies, and a new executor sweeps any a dead driver left."""
    proc = hanging_driver(tmp_path, "ex._root")
    try:
        root = json.loads(proc.stdout.readline())
        assert os.path.isdir(os.path.join(root, "tasks"))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    end = time.monotonic() + 10
    while os.path.exists(root) and time.monotonic() < end:
        time.sleep(0.1)
    assert not os.path.exists(root)

    import tempfile

    from nimm_jupyter.execution.forkserver import OWNER_FILE

    stale = tempfile.mkdtemp(prefix="nimm-exec-")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    Path(stale, OWNER_FILE).write_text(str(dead.pid))
    Path(stale, "tasks").mkdir()
    LocalExecutor(device="cpu").shutdown()
    assert not os.path.exists(stale)


def test_a_missing_jail_is_said_once(recwarn):
    a, b = LocalExecutor(device="cpu"), LocalExecutor(device="cpu")
    try:
        a._note_jail("no user namespaces on this test kernel", 0)
        b._note_jail("no user namespaces on this test kernel", 0)
        said = [w for w in recwarn.list if "WITHOUT the kernel-enforced jail" in str(w.message)]
        assert len(said) == 1 and "no user namespaces" in str(said[0].message)
        assert a.jail_problem == "no user namespaces on this test kernel"
        quiet = LocalExecutor(device="cpu", policy=SandboxPolicy(os_jail=False))
        quiet._note_jail("another reason", 0)
        assert not any("another reason" in str(w.message) for w in recwarn.list)
        quiet.shutdown()
    finally:
        a.shutdown()
        b.shutdown()
