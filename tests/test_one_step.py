"""Teacher-forced one-step scores next to the rollout's (issue 16 item 2): the windows the
model sees, the driver's scoring of a job's one-step predictions, old rows, the CLI columns."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from nimm_jupyter.execution.job import driver_scores
from nimm_jupyter.execution.protocol import ProtocolViolation, clean_predictions, encode_array
from nimm_jupyter.modeling.harness import fit_and_predict
from nimm_jupyter.modeling.config import TrainConfig
from nimm_jupyter.modeling.result import EvalResult, SplitScores, Status
from nimm_jupyter.modeling.scoring import (
    forward_one_step, one_step_key, prediction_shape, score_predictions, split_data,
)
from nimm_jupyter.commands.show import one_step_columns
from nimm_jupyter.search.node import Node

from toy_tasks import TAB_PRIOR, TRAJ_PRIOR, make_toy_tabular, make_toy_trajectory


class LastPlusTime(nn.Module):
    """Predicts every step as the last context state plus that step's time since the start:
    its one-step prediction of step s is therefore y[s-1] + t[s] - t[0] (the time origin
    stays the trajectory's), its rollout y[C-1] + t[s] - t[0]."""

    def forward(self, y_context, u, t):
        C = y_context.shape[1]
        assert u.shape[1] == t.shape[0]  # the inputs are cut where the time axis is
        return y_context[:, -1:] + (t[C:] - t[0]).reshape(1, -1, 1)


@pytest.fixture(scope="module")
def traj():
    return make_toy_trajectory(n_train=8, n_val=6, n_test=5, T=9, context=2)


def test_one_step_cuts_use_true_states_and_the_time_origin(traj):
    data = split_data(traj, "val", torch.device("cpu"), torch.float64)
    y = torch.as_tensor(traj.val.targets)
    t = torch.as_tensor(traj.time)
    one = forward_one_step(LastPlusTime(), data)
    want = y[:, 1:-1] + (t[2:] - t[0]).reshape(1, -1, 1)
    assert one.shape == (6, 7, 2)
    torch.testing.assert_close(one, want)
    # the rollout differs: it carries the last context state forward
    torch.testing.assert_close(LastPlusTime()(*data.args), y[:, 1:2] + (t[2:] - t[0]).reshape(1, -1, 1))


def _persistence_predictions(task, split):
    y = np.asarray(task.split(split).targets, dtype=np.float64)
    return y[:, task.context - 1:-1]  # step s predicted as the true step s-1


def test_driver_scores_one_step_and_keeps_test_none(traj):
    preds = {s: np.zeros(prediction_shape(traj, s)) for s in ("train", "val", "test")}
    preds[one_step_key("val")] = _persistence_predictions(traj, "val")
    res = driver_scores(traj, EvalResult(status=Status.OK), preds)
    y = np.asarray(traj.val.targets)
    err = y[:, 2:] - y[:, 1:-1]
    assert res.val.rmse_one_step == pytest.approx(math.sqrt(np.mean(err ** 2)))
    assert res.val.per_target_one_step["x2"] == pytest.approx(math.sqrt(np.mean(err[..., 1] ** 2)))
    # the rollout scores are untouched by the one-step ones
    assert res.val.rmse == score_predictions(traj, "val", preds["val"]).rmse
    assert res.train.rmse_one_step is None and res.test.rmse_one_step is None


def test_one_step_skips_steps_after_a_missing_state(traj):
    targets = np.array(traj.val.targets, copy=True)
    targets[0, 4, 0] = np.nan  # a missing target at step 4 of sample 0
    task = dataclasses.replace(traj, val=dataclasses.replace(traj.val, targets=targets))
    pred = np.nan_to_num(_persistence_predictions(task, "val"), nan=1e9)
    res = driver_scores(task, EvalResult(status=Status.OK),
                        {**{s: np.zeros(prediction_shape(task, s)) for s in ("train", "val", "test")},
                         one_step_key("val"): pred})
    y = targets
    err = y[:, 2:] - y[:, 1:-1]
    # sample 0: x1 at step 4 (its target is missing) and every later step (whose context of
    # all earlier true steps holds the missing entry) are not scored; x2 at step 4 is
    keep = np.ones(err.shape, dtype=bool)
    keep[0, 2, 0] = False
    keep[0, 3:, :] = False
    assert res.val.rmse_one_step == pytest.approx(math.sqrt(np.mean(err[keep] ** 2)))


def test_bad_one_step_predictions_are_a_protocol_violation(traj):
    preds = {s: np.zeros(prediction_shape(traj, s)) for s in ("train", "val", "test")}
    with pytest.raises(ProtocolViolation):
        driver_scores(traj, EvalResult(status=Status.OK),
                      {**preds, one_step_key("val"): np.zeros((1, 1, 2))})
    tab = make_toy_tabular(n_train=8, n_val=4, n_test=4)
    tab_preds = {s: np.zeros(prediction_shape(tab, s)) for s in ("train", "val", "test")}
    with pytest.raises(ProtocolViolation):
        driver_scores(tab, EvalResult(status=Status.OK),
                      {**tab_preds, one_step_key("val"): tab_preds["val"]})
    assert set(clean_predictions({"train_one_step": encode_array(np.zeros((2, 2)))})) == {"train_one_step"}
    for key in ("val_two_step", "val_one_step", "test_one_step"):  # val/test: only the reveal
        with pytest.raises(ProtocolViolation):
            clean_predictions({key: encode_array(np.zeros((2, 2)))})


def test_harness_returns_one_step_for_held_splits_only(traj):
    from nimm_jupyter.modeling.scoring import without_targets

    cfg = TrainConfig(max_epochs=3, polish_iters=0, threads=1)
    res, preds = fit_and_predict(without_targets(traj), TRAJ_PRIOR, cfg)
    # a job holds the true states of the training split only (issue 15): no one-step
    # prediction of a split whose states it lacks
    assert res.ok and set(preds) == {"train", "val", "test", "train_one_step"}
    scored = driver_scores(traj, res, preds)
    assert scored.train.rmse_one_step is not None and math.isfinite(scored.train.rmse_one_step)
    assert scored.train.rmse_one_step < scored.train.rmse  # one step from the truth beats a rollout
    assert scored.val.rmse_one_step is None and scored.test.rmse_one_step is None
    tab = make_toy_tabular(n_train=16, n_val=8, n_test=8)
    res, preds = fit_and_predict(tab, TAB_PRIOR, cfg)
    assert res.ok and set(preds) == {"train", "val", "test"} and res.val.rmse_one_step is None


def test_old_rows_load_and_new_rows_round_trip():
    old = {"status": "ok", "val": {"rmse": 1.0, "rmse_norm": 0.5, "per_target": {"V": 1.0}}}
    r = EvalResult.from_dict(old)
    assert r.val.rmse == 1.0 and r.val.rmse_one_step is None and r.val.per_target_one_step is None
    new = EvalResult(status=Status.OK, val=SplitScores(1.0, 0.5, {"V": 1.0}, 0.2, 0.1, {"V": 0.2}))
    back = EvalResult.from_dict(new.to_dict())
    assert back.val == new.val


def test_show_columns_carry_both_metrics():
    res = EvalResult(status=Status.OK, val=SplitScores(1.0, 0.5, {"V": 1.0}, 0.2, 0.1, {"V": 0.2}))
    cols = one_step_columns(Node(id=1, parent=None, branch=0, operator="draft", result=res))
    assert cols["val_rmse_one_step"] == 0.2 and cols["val_per_target_one_step"] == {"V": 0.2}
    assert cols["test_rmse_one_step"] is None
    assert one_step_columns(Node(id=2, parent=None, branch=0, operator="draft"))["val_rmse_one_step"] is None


def test_search_journal_and_show_json_carry_one_step(tmp_path):
    """End to end: a sandboxed search journals the driver's one-step scores, show prints them."""
    import json
    import subprocess
    import sys

    nimm = [sys.executable, "-c", "import sys; from nimm_jupyter.cli import main; sys.exit(main())"]
    run_dir = tmp_path / "run"
    subprocess.run(nimm + ["search", "lung_cancer_chemo", "--n-patients", "16", "--max-epochs", "3",
                           "--budget", "2", "--proposer", "offline", "--run-dir", str(run_dir),
                           "--json"], check=True, capture_output=True, text=True, timeout=600)
    out = json.loads(subprocess.run(nimm + ["show", str(run_dir), "--json"], check=True,
                                    capture_output=True, text=True, timeout=120).stdout)
    ok = [n for n in out["nodes"] if n["status"] == "ok"]
    assert ok
    for n in ok:  # (a 3-epoch fit: no claim that one step beats the rollout here)
        assert n["train_rmse_one_step"] > 0 and n["val_rmse"] > 0
        assert set(n["train_per_target_one_step"]) == {"V", "C"}
        # the sequential reveal gives the held-out splits' one-step scores too
        assert n["val_rmse_one_step"] > 0 and n["test_rmse_one_step"] > 0
        assert set(n["test_per_target_one_step"]) == {"V", "C"}
        # the held-out intervention scenarios ride along (issue 20 item 3)
        assert set(n["scenario_rmse"]) == {"no_treatment", "stop_after_day20", "weekly_fixed",
                                           "daily"}


# -- the sequential reveal (execution/reveal.py): val/test one-step without their targets ----
def _one_step_frame(split, step, pred):
    return {"kind": "one_step", "split": split, "step": step, "prediction": encode_array(pred)}


def _revealed(reveal):
    """The reveal frames the driver has queued for the job (and clears them)."""
    import json

    frames = [json.loads(line) for line in bytes(reveal.outbox).splitlines()]
    reveal.outbox.clear()
    return frames


def test_the_driver_reveals_a_step_only_after_its_prediction(traj):
    from nimm_jupyter.execution.protocol import decode_array
    from nimm_jupyter.execution.reveal import Revealer, reveal_steps

    reveal = Revealer(traj)
    C, T = traj.context, traj.val.targets.shape[1]
    assert reveal_steps(traj) == [(s, k) for s in ("val", "test") for k in range(C, T)]
    assert not reveal.outbox and reveal.due is None  # nothing before a prediction
    y = np.asarray(traj.val.targets)
    persistence = _persistence_predictions(traj, "val")
    for k in range(C, T):
        reveal.accept(_one_step_frame("val", k, persistence[:, k - C]))
        frames = _revealed(reveal)
        if k < T - 1:  # exactly the predicted step, never a later one
            assert [(f["split"], f["step"]) for f in frames] == [("val", k)]
            np.testing.assert_array_equal(decode_array(frames[0]["states"], "s"), y[:, k])
        else:  # the last step is never revealed
            assert frames == []
    assert set(reveal.predictions()) == {one_step_key("val")}  # test not finished: absent
    np.testing.assert_array_equal(reveal.predictions()[one_step_key("val")], persistence)


@pytest.mark.parametrize("frame", [
    {"split": "test", "step": 2},  # the test split before validation
    {"split": "val", "step": 3},  # a step ahead
    {"split": "val", "step": True},  # a boolean is no step
    {"split": "val", "step": 2, "shape": (6, 1, 2)},  # not (N, S)
    {"split": "val", "step": 2, "prediction": [[0.0, 0.0]]},  # not an encoded array
])
def test_an_out_of_order_or_malformed_one_step_frame_is_a_violation(traj, frame):
    from nimm_jupyter.execution.reveal import Revealer

    pred = encode_array(np.zeros(frame.get("shape", (6, 2))))
    msg = {"kind": "one_step", "split": frame["split"], "step": frame["step"],
           "prediction": frame.get("prediction", pred)}
    with pytest.raises(ProtocolViolation):
        Revealer(traj).accept(msg)


def test_a_late_job_is_overdue_and_done_closes_the_reveal(traj):
    import json

    from nimm_jupyter.execution.protocol import FrameReader
    from nimm_jupyter.execution.reveal import Revealer

    zeros = {s: encode_array(np.zeros(prediction_shape(traj, s))) for s in ("train", "val", "test")}
    commit = {"kind": "commit", "result": {"status": "ok"}, "predictions": zeros}

    def reader_after(*frames):
        reveal = Revealer(traj, step_timeout=5.0)
        reader = FrameReader(traj.target_names, reveal=reveal)
        reader.feed(b"".join(json.dumps(f).encode() + b"\n" for f in ({"kind": "started"},) + frames))
        return reader, reveal

    reader, reveal = reader_after(commit)
    assert reader.violation is None and "val step 2 did not come" in reveal.overdue(reveal.due + 1)
    reader, reveal = reader_after(commit, _one_step_frame("val", 2, np.zeros((6, 2))))
    assert reader.violation is None and reveal.overdue(reveal.due - 1) is None
    assert "val step 3 did not come within 5 s" in reveal.overdue(reveal.due + 1)
    reader.feed(b'{"kind": "done"}\n')
    assert reader.result is not None and reveal.overdue(1e18) is None
    assert "stopped by the job at val step 3" in reader.result.notes[-1]
    assert one_step_key("val") not in reader.predictions  # an unfinished split has none
    assert set(reader.predictions) == {"train", "val", "test"}  # the committed rollouts
    # before commit no one_step; after it nothing that could carry what was revealed
    for frames in [(_one_step_frame("val", 2, np.zeros((6, 2))),),
                   (commit, {"kind": "progress", "progress": {"epoch": 1.0}}),
                   (commit, {"kind": "done", "result": {"status": "ok"}}),
                   (commit, commit)]:
        reader, _ = reader_after(*frames)
        assert reader.violation is not None and reader.result is None, frames[-1]["kind"]
    from nimm_jupyter.execution.protocol import REVEAL_BROKEN

    reader, _ = reader_after(commit, {"kind": "error", "message": "test targets: 1.5 2.5"})
    assert reader.error == REVEAL_BROKEN


FIXED = '''from torch import nn
from nimm_jupyter.blocks import Real


class Model(nn.Module):
    """Every step is the last known state plus the time since the trajectory's start (the
    parameter only satisfies the contract: it has no gradient, so training leaves it)."""

    def __init__(self, spec):
        super().__init__()
        self.unused = Real(0.0)

    def forward(self, y_context, u, t):
        C = y_context.shape[1]
        return 0.0 * self.unused() + y_context[:, -1:] + (t[C:] - t[0]).reshape(1, -1, 1)
'''


@pytest.fixture(scope="module")
def executor():
    from nimm_jupyter.execution import LocalExecutor

    with LocalExecutor(workers=1, device="cpu") as ex:
        yield ex


def _run(executor, task, source, **cfg):
    """One evaluation on ``executor`` (3 epochs unless ``cfg`` says otherwise)."""
    from nimm_jupyter.execution import EvalRequest

    job = f"one{len(cfg)}{id(source)}{id(task)}"
    executor.submit(EvalRequest(job, source, task, TrainConfig(**{"max_epochs": 3, **cfg}),
                                timeout=300))
    return executor.wait(job)


def test_sandboxed_val_and_test_one_step_equal_the_known_models(executor, traj):
    """The job never holds val/test targets, yet its one-step scores equal teacher forcing
    computed here: for a fixed model in closed form, for a trained one from its weights."""
    r = _run(executor, traj, FIXED)
    assert r.ok, r.message
    t = np.asarray(traj.time)
    for split in ("val", "test"):
        y = np.asarray(traj.split(split).targets, dtype=np.float64)
        C = traj.context
        pred = y[:, C - 1:-1] + (t[C:] - t[0]).reshape(1, -1, 1)  # true step s-1 + t[s] - t[0]
        err = pred - y[:, C:]
        assert getattr(r, split).rmse_one_step == pytest.approx(math.sqrt(np.mean(err ** 2)), rel=1e-5)
        assert getattr(r, split).per_target_one_step["x1"] == pytest.approx(
            math.sqrt(np.mean(err[..., 0] ** 2)), rel=1e-5)


def test_trained_models_reveal_scores_match_its_weights(executor, traj, tmp_path):
    from nimm_jupyter.modeling.harness import load_trained
    from nimm_jupyter.modeling.scoring import one_step_scores

    weights = tmp_path / "w.pt"
    r = _run(executor, traj, TRAJ_PRIOR, save_weights=str(weights))
    assert r.ok, r.message
    model = load_trained(traj, TRAJ_PRIOR, str(weights))
    for split in ("val", "test"):
        data = split_data(traj, split, torch.device("cpu"))
        with torch.no_grad():
            one = forward_one_step(model, data)
        want = one_step_scores(one, data, traj.spec().target_scale, traj.target_names)
        assert getattr(r, split).rmse_one_step == pytest.approx(want["rmse_one_step"], rel=1e-5)
        assert getattr(r, split).rmse_one_step < getattr(r, split).rmse  # from the truth: better
    assert "test" not in r.for_proposer()  # test one-step rides with test: never proposed on


def test_the_output_cap_grows_by_what_the_reveal_may_send(traj):
    import json

    from nimm_jupyter.execution.reveal import Revealer

    reveal = Revealer(traj)
    frames = [json.dumps(_one_step_frame(s, k, np.zeros((traj.split(s).targets.shape[0], 2))))
              for s, k in reveal.steps]
    assert sum(len(f) + 1 for f in frames) <= reveal.output_allowance < 2 * sum(map(len, frames))
    tab = make_toy_tabular(n_train=8, n_val=4, n_test=4)
    assert Revealer(tab).steps == [] and Revealer(tab).output_allowance == 0
