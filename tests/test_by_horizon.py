"""Error by forecast horizon (issue 18 item 4): the driver's scores of a rollout say where it
drifts, and a proposer sees it for the parent it refines (validation only, never test)."""
from __future__ import annotations

import numpy as np
import pytest
from toy_tasks import make_toy_trajectory

from nimm_jupyter.modeling.result import EvalResult, Status
from nimm_jupyter.modeling.scoring import HORIZON_BUCKETS, prediction_shape, score_predictions
from nimm_jupyter.proposers.prompts import format_metrics


@pytest.fixture(scope="module")
def traj():
    return make_toy_trajectory(n_train=8, n_val=6, n_test=5, T=20, context=2)


def test_error_by_horizon_grows_with_a_drifting_forecast(traj):
    y = np.asarray(traj.val.targets, dtype=np.float64)[:, traj.context:]
    steps = np.arange(1, y.shape[1] + 1)[None, :, None]
    scores = score_predictions(traj, "val", y + 0.01 * steps)  # drifts linearly
    h = scores.by_horizon
    assert list(h) == ["1-3", "4-6", "7-9", "10-12", "13-15", "16-18"]
    assert len(h) == HORIZON_BUCKETS and all(a < b for a, b in zip(list(h.values()), list(h.values())[1:]))
    exact = score_predictions(traj, "val", y)
    assert all(v < 1e-6 for v in exact.by_horizon.values())  # float32 targets
    assert score_predictions(traj, "val", np.zeros(prediction_shape(traj, "val"))).rmse > 0


def test_a_proposer_sees_the_parents_validation_error_by_horizon_not_tests(traj):
    y = np.asarray(traj.val.targets, dtype=np.float64)[:, traj.context:]
    r = EvalResult(status=Status.OK, val=score_predictions(traj, "val", y + 0.1),
                   test=score_predictions(traj, "test", np.zeros(prediction_shape(traj, "test"))))
    text = format_metrics(r.for_proposer())
    assert "normalised RMSE by forecast step: steps 1-3" in text
    assert text.count("by forecast step") == 1  # val only: test never reaches a proposer
    back = EvalResult.from_dict(r.to_dict())
    assert back.val.by_horizon == r.val.by_horizon
