"""Reference candidates (prior, neural, hybrid) build, pass the contract and train."""
from __future__ import annotations

import math

import pytest
from toy_tasks import make_toy_tabular, make_toy_trajectory

from nimm_jupyter.modeling.config import TrainConfig
from nimm_jupyter.modeling import REFERENCES, Status, check_candidate, evaluate, reference_code

pytestmark = pytest.mark.timeout(120)

TASKS = {
    "trajectory": lambda: make_toy_trajectory(),
    "trajectory_no_input_c1": lambda: make_toy_trajectory(context=1, with_input=False),
    "trajectory_c5": lambda: make_toy_trajectory(context=5, T=12),
    "tabular": lambda: make_toy_tabular(),
}


def test_reference_names():
    assert REFERENCES == ("prior", "neural", "hybrid")


@pytest.mark.parametrize("name", list(TASKS))
@pytest.mark.parametrize("which", REFERENCES)
def test_reference_builds_and_trains(name, which):
    task = TASKS[name]()
    code = reference_code(task, which)
    report = check_candidate(code, task)
    assert report.ok, report.message
    res = evaluate(task, code, TrainConfig(max_epochs=30))
    assert res.status is Status.OK, res.message
    assert math.isfinite(res.val.rmse)
    assert res.loss_curve[-1]["train"] < res.loss_curve[0]["train"]


def test_prior_and_hybrid_are_the_task_sources():
    task = make_toy_trajectory()
    assert reference_code(task, "prior") == task.prior_code
    assert reference_code(task, "hybrid") == task.hybrid_code


def test_neural_learns_the_toy_trajectory():
    task = make_toy_trajectory()
    cfg = TrainConfig(max_epochs=150)
    neural = evaluate(task, reference_code(task, "neural"), cfg)
    prior = evaluate(task, reference_code(task, "prior"), cfg)
    assert neural.ok and neural.val.rmse < prior.val.rmse
    assert neural.parameters == {}  # no mechanistic parameters in a pure network


def test_neural_restarts_use_vmap():
    task = make_toy_trajectory()
    res = evaluate(task, reference_code(task, "neural"), TrainConfig(max_epochs=5, restarts=2))
    assert res.ok and "batched with vmap" in "; ".join(res.notes)


def test_errors():
    task = make_toy_tabular()
    task.hybrid_code = None
    with pytest.raises(ValueError, match="no hand-written hybrid"):
        reference_code(task, "hybrid")
    with pytest.raises(ValueError, match="unknown reference 'oracle'"):
        reference_code(task, "oracle")
