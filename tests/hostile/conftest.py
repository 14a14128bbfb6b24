"""Shared fixtures of the hostile suite: executors whose in-process guards are OFF, so every
assertion is about what the kernel-enforced jail contains (issue 15's attacker classes).

Tests needing the jail skip, with the kernel's reason printed, where it is missing; the
report header says which way this run went."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from test_executor import PRIOR, tiny_task  # noqa: E402
from nimm_jupyter.execution import EvalRequest, LocalExecutor, SandboxPolicy, TrainConfig  # noqa: E402
from nimm_jupyter.execution import oslayer  # noqa: E402

FAKE_KEY = "sk-ant-api03-HOSTILEtest0123456789abcdefghijKLMNOP"
TASK = tiny_task()
NO_GUARDS = SandboxPolicy(static_check=False, block_network=False, block_processes=False,
                          block_native=False, restrict_files=False)
_JAIL_PROBLEM = oslayer.probe() if sys.platform.startswith("linux") else f"not Linux ({sys.platform})"


def pytest_report_header(config):
    return ("hostile suite: kernel jail available" if _JAIL_PROBLEM is None else
            f"hostile suite: kernel jail UNAVAILABLE ({_JAIL_PROBLEM}); its tests are skipped")


def need_jail() -> None:
    if _JAIL_PROBLEM is not None:
        print(f"SKIP: kernel jail unavailable: {_JAIL_PROBLEM}", file=sys.stderr)
        pytest.skip(f"kernel jail unavailable: {_JAIL_PROBLEM}")


@pytest.fixture(scope="session")
def scratch():
    """A host directory outside /tmp that the driver can write: a write target no job may reach."""
    d = TESTS / "hostile" / f"_scratch_{os.getpid()}"
    d.mkdir(exist_ok=True)
    yield d
    for p in sorted(d.rglob("*"), reverse=True):
        p.unlink() if not p.is_dir() or p.is_symlink() else p.rmdir()
    d.rmdir()


@pytest.fixture(scope="session")
def jailed():
    """Two workers, guards off, small per-job caps (work dir 64 MiB, /dev/shm 16 MiB)."""
    need_jail()
    limits = oslayer.JailLimits(workdir_mb=64, shm_mb=16, max_processes=64)
    os.environ["ANTHROPIC_API_KEY"] = FAKE_KEY  # the driver holds a key; no job may see it
    try:
        with LocalExecutor(workers=2, device="cpu", policy=NO_GUARDS, jail=limits) as ex:
            run(ex, "class Model(:\n")  # the fork server is up: timings are the candidates'
            assert ex.jail_problem is None
            yield ex
    finally:
        os.environ.pop("ANTHROPIC_API_KEY", None)


@pytest.fixture(scope="session")
def harness():
    """Guards on, static check on: the path every search takes."""
    need_jail()
    with LocalExecutor(workers=1, device="cpu") as ex:
        yield ex


def run(ex: LocalExecutor, source: str, timeout: float = 30.0, **cfg):
    job = f"h{time.monotonic_ns()}"
    cfg.setdefault("max_epochs", 3)
    ex.submit(EvalRequest(job, source, TASK, TrainConfig(**cfg), timeout=timeout))
    return ex.wait(job)


def report(result) -> dict[str, str]:
    """The ``name=value`` findings a probe candidate raised as its message."""
    text = result.message.split("RuntimeError: ", 1)[-1]
    return dict(part.split("=", 1) for part in text.split(" | ") if "=" in part)


PROBE_HEAD = '''
import os, sys
found = []
def check(name, fn):
    try:
        found.append(f"{name}=" + str(fn())[:120].replace("|", "/"))
    except BaseException as exc:
        found.append(f"{name}=refused {type(exc).__name__}")
'''
PROBE_TAIL = '''
raise RuntimeError(" | ".join(found))
'''


def probe(body: str) -> str:
    """A candidate that runs ``body`` (calls to ``check``) and reports what happened."""
    return PROBE_HEAD + body + PROBE_TAIL


__all__ = ["FAKE_KEY", "PRIOR", "TASK", "run", "report", "probe", "need_jail"]
