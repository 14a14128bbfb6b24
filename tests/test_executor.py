"""LocalExecutor: results and progress through the real harness, parallel workers and the
queue, cancel, task shipping, devices, restart after a dead fork server, run_one helpers."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from nimm_jupyter.execution import (
    DeviceError, EvalRequest, LocalExecutor, SandboxPolicy, TrainConfig, evaluate_isolated,
    parse_device, run_one, worker_devices,
)
from nimm_jupyter.execution import devices
from nimm_jupyter.modeling.result import Status
from nimm_jupyter.tasks.base import Split, Task, Variable

pytestmark = pytest.mark.timeout(120)

PRIOR = '''import torch
from torch import nn
from nimm_jupyter.blocks import Positive, euler_rollout


class Model(nn.Module):
    """Exponential decay y' = -k y."""

    def __init__(self, spec):
        super().__init__()
        self.k = Positive(0.3)

    def forward(self, y_context, u, t):
        C = y_context.shape[1]
        return euler_rollout(lambda y, u_k, k: -self.k() * y, y_context[:, -1], None,
                             n_steps=t.shape[0] - C, dt=float(t[1] - t[0]))
'''

LOOP = PRIOR.replace("        C = y_context", "        while True:\n            pass\n        C = y_context")


def tiny_task(n: int = 8, steps: int = 10, rate: float = 0.7, seed: int = 0, name: str = "tiny_decay") -> Task:
    """8 trajectories x 10 steps of y' = -rate * y (plus a little noise)."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps, dtype=np.float64) * 0.1

    def split(m: int) -> Split:
        y0 = rng.uniform(1.0, 2.0, size=(m, 1))
        y = y0[:, None, :] * np.exp(-rate * t)[None, :, None]
        return Split(inputs=np.zeros((m, steps, 0)), targets=y + 1e-3 * rng.normal(size=y.shape))

    return Task(name=name, kind="trajectory", description="Exponential decay y' = -k y.",
                source="synthetic", provenance="test fixture", inputs=[], targets=[Variable("y")],
                train=split(n), val=split(4), test=split(4), prior_code=PRIOR,
                prior_omits="nothing", time=t, context=2)


def collect(ex: LocalExecutor, limit: float = 60.0) -> dict[str, list]:
    """Poll until nothing runs; events per job id, in arrival order."""
    events: dict[str, list] = {}
    end = time.monotonic() + limit
    while ex.running() and time.monotonic() < end:
        for ev in ex.poll(0.5):
            events.setdefault(ev.job_id, []).append(ev)
    assert ex.running() == 0, "executor did not finish in time"
    return events


@pytest.fixture(scope="module")
def task() -> Task:
    return tiny_task()


@pytest.fixture(scope="module")
def ex():
    with LocalExecutor(workers=2, device="cpu") as executor:
        yield executor


def test_prior_trains_with_progress_then_one_done(ex, task):
    ex.submit(EvalRequest("prior", PRIOR, task, TrainConfig(max_epochs=200, patience=200), timeout=60))
    evs = collect(ex)["prior"]
    assert [e.kind for e in evs][-1] == "done" and sum(e.kind == "done" for e in evs) == 1
    assert any(e.kind == "progress" for e in evs)
    assert all({"epoch", "train", "val"} <= set(e.progress) for e in evs if e.kind == "progress")
    r = evs[-1].result
    assert r.status is Status.OK, r.message
    assert r.device == "cpu" and r.epochs > 0 and r.wall_time > 0
    assert np.isfinite(r.val.rmse) and r.val.rmse < 0.2
    assert abs(r.parameters["k"] - 0.7) < 0.2  # the decay rate is recovered


def test_parallel_workers_queue_the_rest(ex, task):
    cfg = TrainConfig(max_epochs=30)
    for i in range(5):
        ex.submit(EvalRequest(f"p{i}", PRIOR, task, cfg, timeout=60))
    assert ex.running() == 5
    peak = 0
    events: dict[str, list] = {}
    while ex.running():
        peak = max(peak, sum(not j.delivered for j in ex._active.values()))
        for ev in ex.poll(0.1):
            events.setdefault(ev.job_id, []).append(ev)
    assert peak <= 2
    assert sorted(events) == [f"p{i}" for i in range(5)]
    assert all(evs[-1].result.status is Status.OK for evs in events.values())


def test_task_is_shipped_once_per_generation(ex, task):
    for i in range(3):
        ex.submit(EvalRequest(f"s{i}", PRIOR, task, TrainConfig(max_epochs=2), timeout=60))
    other = tiny_task(seed=1, name="tiny_other")
    ex.submit(EvalRequest("s_other", PRIOR, other, TrainConfig(max_epochs=2), timeout=60))
    collect(ex)
    files = os.listdir(os.path.join(ex._root, "tasks"))
    assert len(files) == 2, files  # one pickle per distinct task, however many requests
    assert len(ex._server.loaded_tasks) == 2


def test_cancel_running_and_queued(ex, task):
    for j in ("c1", "c2", "c3"):
        ex.submit(EvalRequest(j, LOOP, task, TrainConfig(max_epochs=2), timeout=60))
    ex.cancel("c3")  # still queued: two workers are busy
    t0 = time.monotonic()
    early = []
    while not all(ex._active.get(k) and ex._active[k].pid for k in ("c1", "c2")):
        early += ex.poll(0.1)
        assert time.monotonic() - t0 < 30
    assert [(e.job_id, e.kind) for e in early] == [("c3", "done")]
    ex.cancel("c1")
    ex.cancel("c2")
    events = collect(ex, limit=20)
    events["c3"] = early
    for j in ("c1", "c2", "c3"):
        assert events[j][-1].result.status is Status.CANCELLED
    assert time.monotonic() - t0 < 20


def test_duplicate_id_and_bad_arguments(ex, task):
    ex.submit(EvalRequest("dup", PRIOR, task, TrainConfig(max_epochs=1)))
    with pytest.raises(ValueError, match="already submitted"):
        ex.submit(EvalRequest("dup", PRIOR, task))
    collect(ex)
    with pytest.raises(TypeError, match="must be a Task"):
        ex.submit(EvalRequest("bad", PRIOR, "not a task"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="workers"):
        LocalExecutor(workers=0)


def test_weights_file_is_written_where_asked(ex, task, tmp_path):
    path = tmp_path / "w" / "model.pt"
    ex.submit(EvalRequest("w", PRIOR, task, TrainConfig(max_epochs=5, save_weights=str(path))))
    r = collect(ex)["w"][-1].result
    assert r.status is Status.OK, r.message
    assert path.exists() and path.stat().st_size > 0


def test_threads_and_device_reach_the_child(task):
    src = ("import os, torch\n"
           "raise RuntimeError(f'threads={torch.get_num_threads()} omp={os.environ[\"OMP_NUM_THREADS\"]}')\n")
    with LocalExecutor(device="cpu", threads_per_worker=2,
                       policy=SandboxPolicy(static_check=False)) as ex2:
        r = run_one(EvalRequest("t", src, task), ex2)
    assert "threads=2 omp=2" in r.message


def test_dead_fork_server_fails_jobs_and_restarts(task):
    with LocalExecutor(device="cpu") as ex2:
        ex2.submit(EvalRequest("a", LOOP, task, timeout=60))
        while not (ex2._active["a"].pid):
            ex2.poll(0.1)
        ex2._server.proc.kill()
        r = ex2.wait("a")
        assert r.status is Status.CRASHED and "fork server" in r.message
        r2 = run_one(EvalRequest("b", PRIOR, task, TrainConfig(max_epochs=3)), ex2)
        assert r2.status is Status.OK, r2.message


def test_evaluate_isolated_and_run_one(task):
    seen = []
    r = evaluate_isolated(task, PRIOR, TrainConfig(max_epochs=20), timeout=60, device="cpu",
                          progress=seen.append)
    assert r.status is Status.OK and seen
    r2 = run_one(EvalRequest("one", "def broken(:\n", task, timeout=60))
    assert r2.status is Status.SYNTAX_ERROR


def test_submit_after_shutdown_is_an_error(task):
    ex2 = LocalExecutor(device="cpu")
    ex2.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        ex2.submit(EvalRequest("x", PRIOR, task))


# -- devices ---------------------------------------------------------------------------------
def test_parse_device():
    assert parse_device("cpu") == "cpu"
    assert parse_device(" CPU ") == "cpu"
    assert parse_device("auto") in ("cpu", "cuda")
    for bad in ("gpu", "cuda:x", "cpu:1", "", "cuda:-1"):
        with pytest.raises(DeviceError, match="bad device"):
            parse_device(bad)


def test_cuda_unavailable_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(devices, "cuda_device_count", lambda: 0)
    assert parse_device("auto") == "cpu"
    with pytest.raises(DeviceError, match="CUDA is not available"):
        parse_device("cuda:0")


def test_gpu_slots_round_robin(monkeypatch):
    monkeypatch.setattr(devices, "cuda_device_count", lambda: 2)
    assert worker_devices("cuda", 3) == ["cuda:0", "cuda:1", "cuda:0"]
    assert worker_devices("auto", 2) == ["cuda:0", "cuda:1"]
    assert worker_devices("cuda:1", 2) == ["cuda:1", "cuda:1"]
    assert worker_devices("cpu", 2) == ["cpu", "cpu"]
    with pytest.raises(DeviceError, match="does not exist"):
        parse_device("cuda:2")
