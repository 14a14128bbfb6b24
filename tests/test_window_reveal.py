"""The time-ordered window reveal (issues 15/16): a windowed series' validation and test
windows overlap (stride 1), so the context of a later window holds the targets of earlier
ones. The job gets only the contexts of the windows that start first; every later context
arrives after the job has committed the rollout of every window that starts before it."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from nimm_jupyter.execution.protocol import ProtocolViolation, decode_array, encode_array
from nimm_jupyter.modeling.config import TrainConfig
from nimm_jupyter.modeling.scoring import prediction_shape, score_predictions

from test_one_step import _run, executor  # noqa: F401 - the fixture, shared

pytestmark = pytest.mark.timeout(300)


def series_task(n: int = 90, context: int = 6, horizon: int = 3, seed: int = 0):
    """One random-walk series (continuous values: no two steps coincide by chance) cut into
    windows of ``context + horizon`` steps, stride 1, split chronologically."""
    import pandas as pd

    from nimm_jupyter.tasks import task_from_dataframe

    rng = np.random.default_rng(seed)
    y = np.cumsum(rng.normal(size=n)) + 20.0
    u = rng.normal(size=n)
    df = pd.DataFrame({"t": np.arange(n, dtype=float), "y": y, "u": u})
    return task_from_dataframe(df, time="t", targets="y", inputs=["u"], context=context,
                               horizon=horizon, name="walk")


# Keeps every context it was ever given; for each window finds another window whose context
# starts with the tail of this one's, and returns the values that follow (the forecast
# targets), else the last context value.
COPIER = '''import torch
from torch import nn

SEEN = []  # every context row it was given, (s, S) each


class Model(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, y_context, u, t):
        B, s, S = y_context.shape
        H = t.shape[0] - s
        rows = [r for r in y_context.detach().double() if bool(torch.isfinite(r).all())]
        SEEN.extend(rows)
        starts = {}
        for j, r in enumerate(SEEN):
            starts.setdefault(tuple(r[0].tolist()), []).append(j)
        out = y_context[:, -1:].detach().double().repeat(1, H, 1)
        for i in range(B):
            ctx = y_context[i].detach().double()
            filled = 0
            for m in range(1, s):  # another window starting s - m steps later
                for j in starts.get(tuple(ctx[s - m].tolist()), []):
                    other = SEEN[j]
                    if other.shape[0] > m and bool((other[:m] == ctx[s - m:]).all()):
                        k = min(H, other.shape[0] - m)
                        if k > filled:
                            out[i, filled:k] = other[m + filled:m + k]
                            filled = k
        return out.to(y_context.dtype) + 0.0 * self.w
'''


@pytest.fixture(scope="module")
def task():
    return series_task()


def _persistence(task, split):
    y = np.asarray(task.split(split).targets, dtype=np.float64)
    C = task.context
    return np.repeat(y[:, C - 1:C], y.shape[1] - C, axis=1)


@pytest.mark.parametrize("make", ["series_task", "two_series_task"])
def test_a_copier_of_later_contexts_gets_no_better_than_persistence(executor, make):
    """Before the window reveal this candidate copied the targets of every window but the
    last few out of later windows' contexts; now it finds no later context before its
    prediction and scores exactly the persistence error."""
    task = globals()[make]()
    r = _run(executor, task, COPIER)
    assert r.ok, r.message
    for split in ("val", "test"):
        persistence = score_predictions(task, split, _persistence(task, split)).rmse
        assert persistence > 0.5
        assert getattr(r, split).rmse == pytest.approx(persistence, rel=1e-6), split


def test_a_normal_candidate_scores_as_on_the_full_split(executor, task, tmp_path):
    """Rollout scores (pooled, per target, by horizon, standard error) equal the trained
    model's predictions on the whole split in-process; one-step is the first forecast step."""
    from nimm_jupyter.modeling.harness import load_trained
    from nimm_jupyter.modeling.scoring import predict

    source = task.prior_code  # the generic linear-ODE baseline, trained
    weights = tmp_path / "w.pt"
    r = _run(executor, task, source, save_weights=str(weights), max_epochs=20)
    assert r.ok, r.message
    model = load_trained(task, source, str(weights))
    for split in ("val", "test"):
        pred = predict(model, task, split)
        want = score_predictions(task, split, pred)
        got = getattr(r, split)
        assert got.rmse == pytest.approx(want.rmse, rel=1e-5)
        assert got.rmse_norm_se == pytest.approx(want.rmse_norm_se, rel=1e-4)
        assert got.by_horizon.keys() == want.by_horizon.keys()
        for k in want.by_horizon:
            assert got.by_horizon[k] == pytest.approx(want.by_horizon[k], rel=1e-5)
        y = np.asarray(task.split(split).targets)[:, task.context]
        first = math.sqrt(float(np.mean((pred[:, 0] - y) ** 2)))
        assert got.rmse_one_step == pytest.approx(first, rel=1e-5)
    assert any("window reveal" in n for n in r.notes), r.notes


def test_the_job_gets_only_the_first_windows_contexts(task):
    from nimm_jupyter.modeling.scoring import window_stages, without_targets

    hidden = without_targets(task)
    C = task.context
    stages = window_stages(task)
    first = stages[0][0]
    for split in ("val", "test"):
        full, seen = task.split(split), hidden.split(split)
        assert np.isnan(seen.targets[:, C:]).all()
        given = np.isfinite(seen.targets[:, :C]).all(axis=(1, 2))
        np.testing.assert_array_equal(given, full.window_start == first)
        np.testing.assert_array_equal(seen.targets[given][:, :C], full.targets[given][:, :C])
    assert hidden.train.targets is not None and np.isfinite(hidden.train.targets).all()
    assert [s for s, _ in stages] == sorted({int(a) for sp in ("val", "test")
                                             for a in task.split(sp).window_start})


def _stage_frame(task, start, idx, fill=0.0):
    H = task.val.targets.shape[1] - task.context
    S = task.val.targets.shape[2]
    return {"kind": "windows", "start": start,
            "predictions": {s: encode_array(np.full((len(i), H, S), fill)) for s, i in idx.items()}}


def two_series_task():
    """Two random walks of different lengths, the last 10 points of each held out for test
    and the 10 before for validation: one window start holds windows of both series and
    both splits (series b's test windows start where series a's validation windows do)."""
    import pandas as pd

    from nimm_jupyter.tasks import task_from_dataframe

    rng = np.random.default_rng(2)
    df = pd.concat([pd.DataFrame({"t": np.arange(n, dtype=float), "g": g,
                                  "y": np.cumsum(rng.normal(size=n))})
                    for g, n in (("a", 60), ("b", 50))])
    return task_from_dataframe(df, time="t", targets="y", group="g", context=6, horizon=3,
                               split_by="time", test_last=10, val_last=10, name="walks")


@pytest.mark.parametrize("make", [series_task, two_series_task])
def test_no_target_is_visible_before_its_prediction(make):
    """Drive the driver's side with predictions and track what the job holds: before each
    window's prediction, none of its targets (by position, series and step, and by value)
    is among the values the job was given or sent."""
    from nimm_jupyter.execution.reveal import Revealer
    from nimm_jupyter.modeling.scoring import window_stages, without_targets

    task = make()
    C, T = task.context, task.val.targets.shape[1]
    hidden = without_targets(task)

    def series(split, i):  # one series, or the DataFrame group a window was cut from
        groups = task.split(split).groups
        return groups[i] if groups.dtype == object else ""

    held_steps: set[tuple[str, int]] = set()  # (series, step) whose value the job holds
    held_values: list[np.ndarray] = []
    for split in ("val", "test"):
        sp = hidden.split(split)
        for i, a in enumerate(sp.window_start):
            ok = np.isfinite(sp.targets[i, :, 0])
            held_steps.update((series(split, i), int(a) + k) for k in np.nonzero(ok)[0])
            held_values.append(sp.targets[i][ok].ravel())
    reveal = Revealer(task)
    reveal.open()
    checked = 0
    for start, idx in window_stages(task):
        values = np.concatenate(held_values)
        for split, rows in idx.items():
            y = np.asarray(task.split(split).targets)[rows][:, C:]
            for i in rows:
                steps = {(series(split, i), start + k) for k in range(C, T)}
                assert not steps & held_steps, (split, start)
            assert not np.isin(np.round(y, 9), np.round(values, 9)).any(), (split, start)
            checked += y.size
        reveal.accept(_stage_frame(task, start, idx))
        for line in bytes(reveal.outbox).splitlines():
            frame = json.loads(line)
            assert frame["kind"] == "contexts" and frame["start"] > start
            for split, enc in frame["contexts"].items():
                ctx = decode_array(enc, "contexts")
                rows = dict(window_stages(task))[frame["start"]][split]
                assert ctx.shape == (len(rows), C, 1)
                held_values.append(ctx.ravel())
                held_steps.update((series(split, i), frame["start"] + k)
                                  for i in rows for k in range(C))
        reveal.outbox.clear()
    assert checked == sum(np.asarray(task.split(s).targets)[:, C:].size for s in ("val", "test"))
    preds = reveal.predictions()
    assert {k: v.shape for k, v in preds.items()} == {s: prediction_shape(task, s) for s in ("val", "test")}
    assert reveal.steps == []  # no one-step reveal on windowed splits: it would leak


@pytest.mark.parametrize("bad", ["start", "split", "shape", "early"])
def test_a_stage_out_of_order_or_malformed_is_a_violation(task, bad):
    from nimm_jupyter.execution.reveal import Revealer
    from nimm_jupyter.modeling.scoring import window_stages

    stages = window_stages(task)
    start, idx = stages[0]
    frame = _stage_frame(task, start, idx)
    if bad == "start":
        frame["start"] = stages[1][0]
    elif bad == "split":
        frame["predictions"]["extra"] = frame["predictions"][next(iter(idx))]
    elif bad == "shape":
        frame["predictions"] = {s: encode_array(np.zeros((len(i) + 1, 3, 1))) for s, i in idx.items()}
    reveal = Revealer(task)
    reveal.open()
    if bad == "early":
        with pytest.raises(ProtocolViolation):
            reveal.accept({"kind": "one_step", "split": "val", "step": task.context,
                           "prediction": encode_array(np.zeros((len(task.val), 1)))})
        return
    with pytest.raises(ProtocolViolation):
        reveal.accept(frame)
    assert not reveal.outbox  # nothing revealed for a refused frame


def test_a_model_that_fails_mid_reveal_is_a_runtime_error(executor):
    """A rollout that raises on a later window ends the reveal: the driver, not the job,
    says why (the job had seen revealed values), and nothing is scored. The same model
    never meets a hidden (NaN) context: the job predicts only contexts it was given."""
    from nimm_jupyter.modeling.result import Status

    source = series_task().prior_code.replace("    def forward(self, y_context, u, t):\n",
                             "    def forward(self, y_context, u, t):\n"
                             "        if not bool(torch.isfinite(y_context).all()):\n"
                             "            raise ValueError('a NaN context')\n"
                             "        if float(y_context.abs().max()) > 1e9:\n"
                             "            raise ValueError('too large')\n")
    assert _run(executor, series_task(seed=1), source).ok
    task2 = series_task(seed=1)
    task2.val.targets[5, :, 0] = 2e9  # one later window whose context makes the model raise
    r = _run(executor, task2, source)
    assert r.status is Status.RUNTIME_ERROR, (r.status, r.message)
    assert "window reveal" in r.message and "ValueError" not in r.message, r.message


def test_in_process_and_driver_agree_on_windows_of_the_builtin_cutters():
    """Every windowed cutter marks its windows' start steps."""
    from nimm_jupyter.tasks.metapop.core import windowed_task
    from nimm_jupyter.tasks.base import Variable

    counts = np.arange(2 * 40 * 1, dtype=float).reshape(2, 40, 1)
    t = windowed_task(name="w", description="", source="synthetic", provenance="",
                      targets=[Variable("c")], inputs=[], counts=counts,
                      exog=np.zeros((2, 40, 0)), constants={}, window=4, horizon=2,
                      split=(0.6, 0.2, 0.2), prior_code="", prior_omits="", hybrid_code=None,
                      options={})
    for s in ("train", "val", "test"):
        sp = t.split(s)
        assert sp.window_start is not None and len(sp.window_start) == len(sp)
        # replicate r's window starting at a holds counts[r, a:a+T]
        r = np.arange(len(sp)) // (len(sp) // 2)
        np.testing.assert_array_equal(sp.targets[:, 0, 0], counts[r, sp.window_start, 0])
    assert series_task().val.window_start is not None


def test_the_ray_executor_runs_the_window_reveal_too(task):
    """Each Ray worker runs a LocalExecutor with the full task, acting as the driver."""
    ray = pytest.importorskip("ray", reason="ray is not installed (optional extra)")
    from nimm_jupyter.execution import EvalRequest
    from nimm_jupyter.execution.ray_executor import RayExecutor

    ray.init(address="local", _node_ip_address="127.0.0.1", num_cpus=1, include_dashboard=False,
             log_to_driver=False, object_store_memory=100 << 20)
    try:
        ex = RayExecutor(workers=1)
        try:
            ex.submit(EvalRequest("ray-win", COPIER, task, TrainConfig(max_epochs=3), timeout=300))
            done = []
            while not done:
                done = [e for e in ex.poll(0.5) if e.kind == "done"]
        finally:
            ex.shutdown()
    finally:
        ray.shutdown()
    r = done[0].result
    assert r.ok, r.message
    for split in ("val", "test"):
        persistence = score_predictions(task, split, _persistence(task, split)).rmse
        assert getattr(r, split).rmse == pytest.approx(persistence, rel=1e-6), split
