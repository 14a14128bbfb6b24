"""RayExecutor on a real local Ray instance (2 CPUs on 127.0.0.1, started once per module)."""
from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from nimm_jupyter.execution.base import EvalRequest, ExecutorLost, JobEvent, TrainConfig
from nimm_jupyter.execution.factory import ExecutorError, make_executor
from nimm_jupyter.execution.local import LocalExecutor
from nimm_jupyter.execution.ray_executor import RAY_EXTRA_HINT, ClusterLostError
from nimm_jupyter.modeling.result import Status

sys.path.insert(0, str(Path(__file__).resolve().parent))
from toy_tasks import TRAJ_PRIOR, make_toy_trajectory  # noqa: E402

ray = pytest.importorskip("ray", reason="ray is not installed (optional extra: "
                                        "pip install nimm-jupyter[ray]); Ray executor not tested")

pytestmark = pytest.mark.timeout(240)

CONFIG = TrainConfig(seed=3, max_epochs=40, patience=40)
# Passes the contract check quickly, then spins in training: only a kill stops it.
SPIN = TRAJ_PRIOR.replace(
    "    def forward(self, y_context, u, t):\n",
    "    def forward(self, y_context, u, t):\n"
    "        if self.training:\n"
    "            while True:\n"
    "                pass\n",
)
assert SPIN != TRAJ_PRIOR


@pytest.fixture(scope="module")
def cluster():
    ray.init(address="local", _node_ip_address="127.0.0.1", num_cpus=2, include_dashboard=False,
             log_to_driver=False, object_store_memory=200 << 20)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def task():
    return make_toy_trajectory(n_train=16, n_val=8, n_test=8, T=16)


@pytest.fixture
def executor(cluster):
    from nimm_jupyter.execution.ray_executor import RayExecutor

    made = []

    def make(**kw):
        ex = RayExecutor(**{"workers": 2, **kw})
        made.append(ex)
        return ex

    yield make
    for ex in made:
        ex.shutdown()


def drain(ex, job_ids, limit=150.0) -> dict[str, list[JobEvent]]:
    """Poll until every job in ``job_ids`` is done; events per job, in order."""
    events: dict[str, list[JobEvent]] = {j: [] for j in job_ids}
    end = time.monotonic() + limit
    while not all(ev and ev[-1].kind == "done" for ev in events.values()):
        assert time.monotonic() < end, f"jobs not done in {limit} s: {events}"
        for ev in ex.poll(0.5):
            events.setdefault(ev.job_id, []).append(ev)
    return events


def wait_started(ex, job_id, limit=150.0) -> dict:
    end = time.monotonic() + limit
    while (info := ex.job_info(job_id)) is None:
        assert time.monotonic() < end, "the Ray worker never reported the job as started"
        assert not [e for e in ex.poll(0.2) if e.kind == "done"], "finished before it started?"
    return info


def descendants(pid: int) -> set[int]:
    """Live (non-zombie) processes below ``pid``."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_bytes()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2:].split()
            if fields[0] != b"Z":
                children.setdefault(int(fields[1]), []).append(int(name))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().split(b") ")[1][:1] != b"Z"
    except (OSError, IndexError):
        return False


def test_good_candidate_matches_local_and_task_is_put_once(executor, task, monkeypatch, tmp_path):
    puts = []
    real_put = ray.put
    monkeypatch.setattr(ray, "put", lambda value, **kw: (puts.append(type(value).__name__),
                                                         real_put(value, **kw))[1])
    ex = executor()
    weights = tmp_path / "runs" / "good0.pt"
    for i in range(3):
        config = replace(CONFIG, save_weights=str(weights)) if i == 0 else CONFIG
        ex.submit(EvalRequest(f"good{i}", task.hybrid_code, task, config, timeout=120))
    assert ex.running() == 3
    with LocalExecutor(workers=1, device="cpu") as reference:  # runs while Ray works
        reference.submit(EvalRequest("local", task.hybrid_code, task, CONFIG, timeout=120))
        events = drain(ex, ["good0", "good1", "good2"])
        local = reference.wait("local")
    assert local.ok, local.message
    assert puts == ["Task"] and ex.task_puts == 1  # one put for three evaluations
    for job_id, evs in events.items():
        done = evs[-1].result
        assert done.status is Status.OK, done.message
        assert done.val.rmse_norm == pytest.approx(local.val.rmse_norm, rel=1e-6)
        assert done.test.rmse == pytest.approx(local.test.rmse, rel=1e-6)
        # the sequential one-step reveal runs inside the worker, which acts as the driver
        assert local.test.rmse_one_step is not None
        assert done.test.rmse_one_step == pytest.approx(local.test.rmse_one_step, rel=1e-6)
        assert done.epochs == local.epochs and done.seed == 3 and done.device == "cpu"
        progress = [e.progress for e in evs[:-1]]
        assert progress and all(e.kind == "progress" for e in evs[:-1])
        assert {"epoch", "train", "val"} <= set(progress[-1])
        assert [p["epoch"] for p in progress] == sorted(p["epoch"] for p in progress)
    assert ex.running() == 0
    assert ex.job_info("good0")["pid"] != os.getpid()
    # The worker saved the weights in its own scratch dir; the driver wrote them where asked.
    assert events["good0"][-1].result.weights_path == str(weights)
    state = torch.load(weights)
    assert "net.0.weight" in state or any(k.startswith("net.") for k in state)


def test_bad_candidates_get_statuses(executor, task):
    ex = executor()
    ex.submit(EvalRequest("syntax", "class Model(:\n", task, CONFIG, timeout=60))
    ex.submit(EvalRequest("contract", "import torch\nx = 1\n", task, CONFIG, timeout=60))
    events = drain(ex, ["syntax", "contract"])
    assert events["syntax"][-1].result.status is Status.SYNTAX_ERROR
    contract = events["contract"][-1].result
    assert contract.status is Status.CONTRACT_ERROR and "Model" in contract.message


def test_timeout_inside_the_ray_worker(executor, task):
    ex = executor(workers=1)
    t0 = time.monotonic()
    ex.submit(EvalRequest("spin", SPIN, task, CONFIG, timeout=3))
    result = drain(ex, ["spin"])["spin"][-1].result
    assert result.status is Status.TIMEOUT, result.message
    assert "3 s" in result.message
    assert time.monotonic() - t0 < 90


def test_cancel_kills_the_worker_and_its_sandboxed_child(executor, task):
    ex = executor(workers=1)
    ex.submit(EvalRequest("spin", SPIN, task, CONFIG, timeout=120))
    ex.submit(EvalRequest("queued", task.hybrid_code, task, CONFIG, timeout=120))
    worker = wait_started(ex, "spin")["pid"]
    end = time.monotonic() + 60
    while len(tree := descendants(worker)) < 2:  # the fork server and the job child
        assert time.monotonic() < end, f"no sandboxed child under the Ray worker: {tree}"
        ex.poll(0.2)
    ex.cancel("queued")
    ex.cancel("spin")
    events = ex.poll(0.0)
    assert {e.job_id: e.result.status for e in events if e.kind == "done"} == {
        "spin": Status.CANCELLED, "queued": Status.CANCELLED}
    assert ex.running() == 0
    end = time.monotonic() + 30
    while any(alive(p) for p in tree | {worker}):
        assert time.monotonic() < end, f"still alive after cancel: {[p for p in tree if alive(p)]}"
        time.sleep(0.2)
    assert ex.poll(0.3) == []  # nothing late from the killed job


def test_killed_worker_is_crashed_or_retried(executor, task):
    ex = executor(workers=2)
    retrying = executor(workers=1, retries=1)
    ex.submit(EvalRequest("dies", SPIN, task, CONFIG, timeout=120))
    retrying.submit(EvalRequest("again", task.hybrid_code, task,
                                TrainConfig(seed=3, max_epochs=300, patience=300), timeout=120))
    os.kill(wait_started(ex, "dies")["pid"], signal.SIGKILL)
    first = wait_started(retrying, "again")
    os.kill(first["pid"], signal.SIGKILL)
    crashed = drain(ex, ["dies"])["dies"][-1].result
    assert crashed.status is Status.CRASHED
    assert "Ray worker" in crashed.message and "died" in crashed.message
    retried = drain(retrying, ["again"])["again"][-1].result
    assert retried.status is Status.OK, retried.message
    assert "retry 1" in "; ".join(retried.notes)
    second = retrying.job_info("again")
    assert second["attempt"] == 1 and second["pid"] != first["pid"]


def test_losing_the_cluster_raises_cluster_lost(executor, task, monkeypatch):
    ex = executor(workers=1)
    ex.submit(EvalRequest("lost", SPIN, task, CONFIG, timeout=60))

    def gone(*_a, **_k):
        raise ray.exceptions.RaySystemError("GCS connection lost")

    with monkeypatch.context() as m:
        m.setattr(ray, "wait", gone)
        with pytest.raises(ClusterLostError, match="lost the Ray cluster"):
            ex.poll(0.1)
    with monkeypatch.context() as m:
        m.setattr(ray, "is_initialized", lambda: False)
        with pytest.raises(ClusterLostError, match="no longer initialised"):
            ex.poll(0.1)
        with pytest.raises(ExecutorLost):  # what the search runner catches, backend unnamed
            ex.poll(0.1)
    status, message, retry = ex._classify(ray.exceptions.OutOfMemoryError("node low on memory"))
    assert status is Status.OUT_OF_MEMORY and not retry and "memory monitor" in message
    ex.shutdown()
    assert ex.running() == 0
    with pytest.raises(RuntimeError, match="shut down"):
        ex.submit(EvalRequest("late", SPIN, task, CONFIG))


def test_make_executor_names(cluster, monkeypatch):
    from nimm_jupyter.execution.ray_executor import RayExecutor

    ex = make_executor("ray", workers=2, num_cpus=1)
    try:
        assert isinstance(ex, RayExecutor) and ex.workers == 2 and ex.device == "cpu"
        assert not ex._owns_ray  # the module's Ray instance stays up
    finally:
        ex.shutdown()
    assert ray.is_initialized()
    assert make_executor(ex) is ex
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    local = make_executor("auto", workers=1, device="cpu")
    assert isinstance(local, LocalExecutor)
    local.shutdown()
    with pytest.raises(ExecutorError, match="unknown executor 'dask'"):
        make_executor("dask")
    with pytest.raises(ExecutorError, match="ray_address"):
        make_executor("local", ray_address="head:6379")
    with pytest.raises(ExecutorError, match="num_gpus only apply to the Ray executor"):
        make_executor("auto", num_gpus=1)
    local = make_executor("local", workers=1, device="cpu", num_gpus=None, memory_mb=None)
    assert isinstance(local, LocalExecutor)  # None means "not given"
    local.shutdown()
    with pytest.raises(ValueError, match="num_gpus > 0"):
        make_executor("ray", device="cuda")
    with pytest.raises(ValueError, match="GPU but the Ray cluster has 0"):
        make_executor("ray", num_gpus=1)


def test_make_executor_without_ray_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # "import ray" now raises ImportError
    monkeypatch.setattr("nimm_jupyter.execution.factory.ray_available", lambda: False)
    with pytest.raises(ExecutorError) as err:
        make_executor("ray")
    assert str(err.value) == RAY_EXTRA_HINT
    assert "pip install nimm-jupyter[ray]" in str(err.value)
    monkeypatch.setenv("RAY_ADDRESS", "head:6379")
    local = make_executor("auto", device="cpu")  # falls back to local without ray
    assert isinstance(local, LocalExecutor)
    local.shutdown()


def test_search_runs_on_ray_and_resumes_there(cluster, tmp_path):
    """The search, journal and results are unchanged when evaluations run on Ray."""
    from nimm_jupyter.search.api import open_run, resume, search

    toy = make_toy_trajectory(n_train=16, n_val=8, n_test=8, T=16)
    run_dir = tmp_path / "run"
    res = search(toy, budget=3, branches=2, proposer="offline", executor="ray",
                 workers=2, device="cpu", run_dir=run_dir,
                 train=TrainConfig(max_epochs=5)).wait()
    assert res.counts.get("ok", 0) >= 1 and res.best is not None
    assert open_run(run_dir).settings["executor"] == "ray"
    again = resume(run_dir, budget=4).wait()
    assert sum(n.completed for n in again.nodes) == 4
    assert again.settings["executor"] == "ray"
