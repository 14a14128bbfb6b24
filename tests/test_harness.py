"""The training/evaluation harness on tiny synthetic tasks."""
from __future__ import annotations

import dataclasses
import math
import re
import time

import numpy as np
import pytest
import torch
from toy_tasks import (
    TAB_PRIOR, TRAJ_HYBRID, TRAJ_PRIOR, holdout_rmse_norm, line_of, make_toy_tabular,
)

from nimm_jupyter.modeling.config import TrainConfig
from nimm_jupyter.modeling.harness import fit_and_predict
from nimm_jupyter.tasks.splits import holdout_indices
from nimm_jupyter.modeling import (
    EvalResult, Status, evaluate, load_candidate, load_trained, mechanistic_parameters, predict,
    score_predictions,
)
from nimm_jupyter.modeling import training

pytestmark = pytest.mark.timeout(120)



# A linear tabular model whose forward counts its calls, to fail on cue during training.
COUNTING = '''import torch
from torch import nn


class Model(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.lin = nn.Linear(2, 1)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        out = self.lin(x)
        {fault}
        return out
'''


def counting(fault: str) -> str:
    return COUNTING.replace("{fault}", fault)


def test_ok_result_fields(traj):
    res = evaluate(traj, TRAJ_HYBRID, TrainConfig(max_epochs=40, seed=3, polish_iters=0, val_every=1))
    assert res.status is Status.OK and res.message == ""
    for s in (res.train, res.val, res.test):
        assert math.isfinite(s.rmse) and math.isfinite(s.rmse_norm)
        assert set(s.per_target) == {"x1", "x2"}
        assert all(math.isfinite(v) for v in s.per_target.values())
    assert res.epochs == len(res.loss_curve) == 40
    assert set(res.loss_curve[0]) == {"epoch", "train", "val"}
    assert [c["epoch"] for c in res.loss_curve] == list(range(1, 41))
    assert set(res.parameters) == {"a", "b", "c"} and all(v > 0 for v in res.parameters.values())
    assert res.n_parameters == 3 + (2 * 16 + 16) + (16 * 2 + 2)
    assert res.wall_time > 0 and res.device == "cpu" and res.seed == 3 and res.restarts == 1
    assert res.score == pytest.approx(res.val.rmse_norm)
    # normalised RMSE pools the per-target errors divided by each target's train std
    scale = traj.spec().target_scale.double().numpy()
    per = np.array([res.val.per_target["x1"], res.val.per_target["x2"]])
    assert res.val.rmse_norm == pytest.approx(float(np.sqrt(np.mean((per / scale) ** 2))), rel=1e-6)
    assert res.val.rmse == pytest.approx(float(np.sqrt(np.mean(per ** 2))), rel=1e-6)


def test_training_improves_and_hybrid_beats_prior(traj):
    cfg = TrainConfig(max_epochs=150)
    prior = evaluate(traj, TRAJ_PRIOR, cfg)
    hybrid = evaluate(traj, TRAJ_HYBRID, cfg)
    assert prior.ok and hybrid.ok
    assert hybrid.loss_curve[-1]["val"] < hybrid.loss_curve[0]["val"]
    assert hybrid.val.rmse < 0.5 * prior.val.rmse
    assert hybrid.test.rmse < 0.5 * prior.test.rmse


def test_hybrid_beats_prior_tabular(tab):
    cfg = TrainConfig(max_epochs=300, lr=0.03)
    prior = evaluate(tab, tab.prior_code, cfg)
    hybrid = evaluate(tab, tab.hybrid_code, cfg)
    assert hybrid.val.rmse < 0.5 * prior.val.rmse


def test_reproducible(traj):
    cfg = TrainConfig(max_epochs=25, seed=7)
    a, b = evaluate(traj, TRAJ_HYBRID, cfg).to_dict(), evaluate(traj, TRAJ_HYBRID, cfg).to_dict()
    a.pop("wall_time"), b.pop("wall_time")
    assert a == b
    c = evaluate(traj, TRAJ_HYBRID, TrainConfig(max_epochs=25, seed=8)).to_dict()
    assert c["val"] != a["val"]


def test_divergence_is_reported(tab):
    src = counting("if self.calls > 6:\n            out = out * float('nan')")
    res = evaluate(tab, src, TrainConfig(max_epochs=50))
    assert res.status is Status.DIVERGED
    assert "NaN" in res.message and "epoch" in res.message
    assert res.score == math.inf


def test_never_finite_on_full_data_is_diverged(tab):
    # Finite on the 3-sample contract batch, NaN on the full training set.
    src = counting("if x.shape[0] > 3:\n            out = out * float('nan')")
    res = evaluate(tab, src, TrainConfig(max_epochs=20))
    assert res.status is Status.DIVERGED and "no finite loss" in res.message


def test_transient_nan_recovers(tab):
    # One bad training step (call 4) is undone: restart from the best weights, halved lr.
    src = counting("if self.calls == 4:\n            out = out * float('nan')")
    res = evaluate(tab, src, TrainConfig(max_epochs=30))
    assert res.status is Status.OK, res.message
    assert math.isfinite(res.val.rmse)


def test_runtime_error_during_training_names_line(tab):
    src = counting("if self.calls > 5:\n            raise ValueError('state exploded')")
    res = evaluate(tab, src, TrainConfig(max_epochs=30))
    assert res.status is Status.RUNTIME_ERROR
    assert "ValueError: state exploded" in res.message
    assert f"candidate line {line_of(src, 'raise ValueError')}" in res.message


def test_memory_error_is_out_of_memory(tab):
    src = counting("if self.calls > 5:\n            raise MemoryError('no room')")
    res = evaluate(tab, src, TrainConfig(max_epochs=30))
    assert res.status is Status.OUT_OF_MEMORY


def test_contract_failure_passes_through(tab):
    res = evaluate(tab, "class Model(:\n", TrainConfig(max_epochs=5))
    assert res.status is Status.SYNTAX_ERROR and "line 1" in res.message
    assert res.wall_time >= 0 and res.epochs == 0


def test_early_stopping(tab):
    config = TrainConfig(max_epochs=3000, patience=10, lr=0.1)
    res, preds = fit_and_predict(tab, TAB_PRIOR, config)
    assert res.ok
    assert res.epochs < 3000
    best = min(c["val"] for c in res.loss_curve)  # the curve's "val" is the hold-out
    # the best weights on the hold-out were kept
    assert holdout_rmse_norm(tab, preds["train"]) == pytest.approx(best, rel=1e-4)


def test_early_stopping_never_sees_the_validation_split(tab):
    """Training stops on a hold-out carved from training: validation targets cannot change
    the fit (the job never holds them), only the driver's score."""
    config = TrainConfig(max_epochs=300, patience=10, lr=0.1)
    res, preds = fit_and_predict(tab, TAB_PRIOR, config)
    noisy = dataclasses.replace(tab, val=dataclasses.replace(
        tab.val, targets=tab.val.targets + 100.0 * np.random.default_rng(1).normal(
            size=tab.val.targets.shape)))
    res2, preds2 = fit_and_predict(noisy, TAB_PRIOR, config)
    np.testing.assert_array_equal(preds["train"], preds2["train"])
    assert res.epochs == res2.epochs and res2.val.rmse > 10 * res.val.rmse


def test_holdout_of_windows_is_the_latest_and_purged():
    from nimm_jupyter.tasks.base import Split
    starts = np.repeat(np.arange(20), 2)  # two regions per window start
    split = Split(inputs=np.zeros((40, 6, 0)), targets=np.zeros((40, 6, 1)), groups=starts)
    fit, hold, how = holdout_indices(split, 0.2, windows=True, horizon=3)
    assert set(starts[hold]) == {16, 17, 18, 19} and "latest 4 of 20" in how
    assert starts[fit].max() == 13  # windows 14, 15 forecast steps the hold-out forecasts
    assert len(np.intersect1d(fit, hold)) == 0


def test_holdout_of_groups_keeps_each_group_whole():
    from nimm_jupyter.tasks.base import Split
    groups = np.array([f"p{i // 3}" for i in range(30)])
    split = Split(inputs=np.zeros((30, 2)), targets=np.zeros((30, 1)), groups=groups)
    fit, hold, how = holdout_indices(split, 0.2)
    assert len(set(groups[hold])) == 2 and not set(groups[hold]) & set(groups[fit])
    assert len(fit) + len(hold) == 30 and "2 of 10 training groups" in how
    one = Split(inputs=np.zeros((1, 2)), targets=np.zeros((1, 1)))
    fit, hold, how = holdout_indices(one, 0.2)
    assert list(fit) == list(hold) == [0] and "no hold-out" in how


def test_time_limit_stops_and_scores(traj):
    res = evaluate(traj, TRAJ_HYBRID, TrainConfig(max_epochs=10_000, time_limit=0.3))
    assert res.ok and "time limit" in notes_of(res)
    assert 1 <= res.epochs < 10_000


def test_progress_callback(traj, monkeypatch):
    monkeypatch.setattr(training, "PROGRESS_INTERVAL", 0.0)
    seen: list[dict] = []
    res = evaluate(traj, TRAJ_PRIOR, TrainConfig(max_epochs=12, polish_iters=0, val_every=1), progress=seen.append)
    assert res.ok
    assert len(seen) >= 12
    assert set(seen[0]) == {"epoch", "train", "val"}
    assert [s["epoch"] for s in seen[:12]] == list(range(1, 13))
    assert seen[-1]["epoch"] == 12


def test_progress_is_throttled_and_errors_ignored(traj):
    calls = []

    def broken(d):
        calls.append(d)
        raise RuntimeError("observer bug")

    with pytest.warns(UserWarning, match="progress callback failed"):
        res = evaluate(traj, TRAJ_PRIOR, TrainConfig(max_epochs=30), progress=broken)
    assert res.ok and len(calls) == 1


def test_weights_saved_and_reloaded(traj, tmp_path):
    path = tmp_path / "w" / "best.pt"
    res = evaluate(traj, TRAJ_HYBRID, TrainConfig(max_epochs=30, save_weights=str(path)))
    assert res.ok and res.weights_path == str(path) and path.exists()
    model = load_trained(traj, TRAJ_HYBRID, str(path))
    pred = predict(model, traj, "val")
    assert pred.shape == (16, 18, 2)
    again = score_predictions(traj, "val", pred)
    assert again.rmse == pytest.approx(res.val.rmse, rel=1e-6)
    assert again.per_target == pytest.approx(res.val.per_target, rel=1e-6)
    assert mechanistic_parameters(model) == pytest.approx(res.parameters)
    assert "weights_path" not in res.for_proposer()


def test_for_proposer_hides_test(traj):
    res = evaluate(traj, TRAJ_PRIOR, TrainConfig(max_epochs=5))
    view = res.for_proposer()
    assert "test" not in view
    assert str(res.test.rmse) not in repr(view)
    assert EvalResult.from_dict(res.to_dict()).val == res.val


def test_minibatches(traj):
    res = evaluate(traj, TRAJ_HYBRID, TrainConfig(max_epochs=10, batch_size=8, polish_iters=0))
    assert res.ok and res.epochs == 10


def test_missing_targets_are_masked():
    task = make_toy_tabular()
    task.train.targets[::5, 0] = np.nan
    task.val.targets[1, 0] = np.nan
    res = evaluate(task, task.hybrid_code, TrainConfig(max_epochs=30))
    assert res.ok and math.isfinite(res.train.rmse) and math.isfinite(res.val.rmse)


def notes_of(res: EvalResult) -> str:
    """An ok result's notes as one text, to search with regexes."""
    return "; ".join(res.notes)


def _per_copy(message: str) -> list[float]:
    return [float(v) for v in re.search(r"per copy: ([^;]*)", message).group(1).split(",")]


def test_restarts_vmap_picks_best(traj, monkeypatch):
    cfg = dict(max_epochs=40, seed=1, polish_iters=0, val_every=1)  # Adam restarts, no polish
    t0 = time.perf_counter()
    one, one_pred = fit_and_predict(traj, TRAJ_HYBRID, TrainConfig(**cfg))
    t1 = time.perf_counter()
    four, four_pred = fit_and_predict(traj, TRAJ_HYBRID, TrainConfig(restarts=4, **cfg))
    t4 = time.perf_counter() - t1
    print(f"\nrestarts=1: {t1 - t0:.2f}s, restarts=4 (vmap): {t4:.2f}s, ratio {t4 / (t1 - t0):.2f}")
    assert four.ok and four.restarts == 4 and one.ok
    assert "batched with vmap" in notes_of(four)
    per_copy = _per_copy(notes_of(four))
    assert len(per_copy) == 4
    best = int(re.search(r"best copy (\d)", notes_of(four)).group(1))
    assert per_copy[best] == min(per_copy)
    # the per-copy figures (and the curves' "val") are on the training hold-out
    hold_four, hold_one = holdout_rmse_norm(traj, four_pred["train"]), holdout_rmse_norm(
        traj, one_pred["train"])
    assert hold_four == pytest.approx(min(per_copy), rel=1e-3)
    assert four.epochs == 40
    # Copy k starts from seed + k (and, for k > 0, jittered mechanistic starting values), and
    # batched training is the same arithmetic as a plain run: the chosen copy equals a plain
    # single run of that copy (the sequential path trains each copy alone), and copy 0 is the
    # single run.
    assert per_copy[0] == pytest.approx(hold_one, rel=1e-3)
    assert hold_four <= hold_one * (1 + 1e-3)

    def no_vmap(*args, **kwargs):
        raise RuntimeError("vmap disabled by the test")

    monkeypatch.setattr("nimm_jupyter.modeling.training.VmapEngine", no_vmap)
    alone = evaluate(traj, TRAJ_HYBRID, TrainConfig(restarts=4, **cfg))
    assert "sequential" in notes_of(alone) and f"best copy {best}" in notes_of(alone)
    assert four.val.rmse_norm == pytest.approx(alone.val.rmse_norm, rel=1e-3)
    assert four.parameters == pytest.approx(alone.parameters, rel=1e-3)


def test_restarts_fall_back_to_sequential(tab):
    src = counting("if out.abs().max().item() > 1e9:\n            out = out.clamp(-1e9, 1e9)")
    res = evaluate(tab, src, TrainConfig(max_epochs=15, restarts=3))
    assert res.ok, res.message
    assert "sequential" in notes_of(res) and "vmap unavailable" in notes_of(res)
    assert len(_per_copy(notes_of(res))) == 3


def test_restarts_reproducible(tab):
    cfg = TrainConfig(max_epochs=20, restarts=3, seed=2)
    a, b = evaluate(tab, tab.hybrid_code, cfg).to_dict(), evaluate(tab, tab.hybrid_code, cfg).to_dict()
    a.pop("wall_time"), b.pop("wall_time")
    assert a == b


def test_mechanistic_parameters_rules():
    from nimm_jupyter.blocks import Positive, Real

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.k = Positive(2.0)
            self.v = Real([1.0, 2.0, 3.0])
            self.big = Real(0.5, shape=(40,))
            self.sub = torch.nn.Module()
            self.sub.r = Positive(0.25)

    p = mechanistic_parameters(M())
    assert p == pytest.approx({"k": 2.0, "v[0]": 1.0, "v[1]": 2.0, "v[2]": 3.0,
                               "big.mean": 0.5, "sub.r": 0.25})

    class Custom(M):
        def mechanistic_parameters(self):
            return {"K": self.k() * 10, "n": 3}

    assert mechanistic_parameters(Custom()) == pytest.approx({"K": 20.0, "n": 3.0})


def test_bad_config_raises(tab):
    with pytest.raises(ValueError, match="restarts"):
        evaluate(tab, TAB_PRIOR, TrainConfig(restarts=0))
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(tab, TAB_PRIOR, TrainConfig(batch_size=0))


def test_restarts_drop_diverged_copies(tab):
    # Copies whose random `flag` starts above 0.5 output NaN from the start; the others train.
    src = counting("out = out + torch.where(self.flag > 0.5, float('nan'), 0.0)").replace(
        "self.calls = 0", "self.calls = 0\n        self.flag = nn.Parameter(torch.rand(1))")
    cls = load_candidate(src)

    def flag(seed):
        torch.manual_seed(seed)
        return float(cls(tab.spec()).flag.detach())

    seed = next(s for s in range(100)
                if flag(s) <= 0.5 and any(flag(s + k) > 0.5 for k in range(1, 4)))
    res = evaluate(tab, src, TrainConfig(max_epochs=20, restarts=4, seed=seed))
    assert res.ok, res.message
    assert "batched with vmap" in notes_of(res) and "copies diverged" in notes_of(res)
    per_copy = _per_copy(notes_of(res))
    assert sum(math.isnan(v) for v in per_copy) == sum(flag(seed + k) > 0.5 for k in range(4))
