"""A what-if on a searched node computed in the sandbox: the node's trained weights loaded in
a jailed job (no training, no candidate code in this process), its forecast of one trajectory
under the observed and a changed input schedule, beside the fitted prior's."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nimm_jupyter.execution.base import EvalRequest
from nimm_jupyter.execution.oneshot import run_one
from nimm_jupyter.modeling.config import TrainConfig
from nimm_jupyter.modeling.harness import load_trained, predict
from nimm_jupyter.search.whatif import WHAT_IF, WhatIfError, sandbox_what_if, what_if_task

torch.set_num_threads(1)
OPTIONS = {"n_patients": 6, "horizon": 20, "seed": 2}


def _small_search(run_dir, budget: int, epochs: int):
    """A real offline search on a few simulated patients (the weights a what-if loads)."""
    import nimm_jupyter

    s = nimm_jupyter.search("lung_cancer_chemo", budget=budget, branches=1, proposer="offline",
                            device="cpu", task_options=OPTIONS, run_dir=run_dir,
                            train=TrainConfig(max_epochs=epochs, patience=5), background=True)
    s.wait(240)
    assert s.best is not None
    return s


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from nimm_jupyter.search.api import open_run

    run_dir = tmp_path_factory.mktemp("whatif") / "run"
    _small_search(run_dir, budget=2, epochs=15)
    r = open_run(run_dir)
    assert r.nodes[0].ok
    return r


def test_sandboxed_what_if_matches_the_trained_model_and_reacts_to_the_change(run):
    node = run.best
    other = next(n for n in run.nodes if n.ok and n.id != node.id)
    frame = sandbox_what_if(run, node.id, trajectory=1, split="val", zero=["chemo_dose"],
                            against=other.id)
    C = int(run.task.context)
    # the same weights loaded here (the test's explicit step) give the same forecast
    model = load_trained(run.task, node.code, str(run.rundir.node_weights(node)))
    assert np.allclose(frame["V model"].to_numpy()[C:], predict(model, run.task, "val")[1][:, 0],
                       rtol=1e-4)
    assert np.allclose(frame["C model what-if"].to_numpy()[C:], 0.0, atol=1e-6)  # no drug given
    assert frame["V model what-if"].iloc[-1] > frame["V model"].iloc[-1]
    theirs = load_trained(run.task, other.code, str(run.rundir.node_weights(other)))
    assert np.allclose(frame["V against"].to_numpy()[C:],
                       predict(theirs, run.task, "val")[1][:, 0], rtol=1e-4)
    assert not np.allclose(frame["V against what-if"], frame["V against"], equal_nan=True)
    # built-in tasks have no user prior at the root: nothing to compare with by default
    assert "V against" not in sandbox_what_if(run, node.id, zero=["chemo_dose"]).columns


def test_what_if_job_holds_no_target_of_the_changed_schedule(run):
    task = run.task
    changed = np.zeros_like(task.split("val").inputs[0])
    small = what_if_task(task, 0, "val", changed)
    assert small.split("val").targets.shape[0] == 1 and WHAT_IF in small.scenarios
    node = run.nodes[0]
    res = run_one(EvalRequest(job_id="wi-test", source=node.code, task=small,
                              config=TrainConfig(), predict_with=b"not a state dict"))
    assert res.status.value == "runtime_error" and "loading the weights" in res.message


def test_what_if_refuses_what_it_cannot_answer(run):
    with pytest.raises(WhatIfError, match="equals the observed one"):
        sandbox_what_if(run, run.best.id)
    with pytest.raises(WhatIfError, match="'radio_dose' is not an input"):
        sandbox_what_if(run, run.best.id, zero=["radio_dose"])
    with pytest.raises(WhatIfError, match="between 0 and 5"):
        sandbox_what_if(run, run.best.id, trajectory=9, zero=["chemo_dose"])
    with pytest.raises(WhatIfError, match="has no node 99; its nodes are 0, 1"):
        sandbox_what_if(run, 99, zero=["chemo_dose"])


def test_the_widget_panel_asks_the_sandbox_and_shows_the_first_target(tmp_path):
    from nimm_jupyter.jupyter.widget import SearchWidget

    s = _small_search(tmp_path / "run", budget=1, epochs=10)
    w = SearchWidget(s)
    assert w.what_if_inputs == ["chemo_dose"]
    nid = s.best.id
    answer = w.run_what_if({"node": nid, "trajectory": 2, "split": "val", "input": "chemo_dose",
                            "op": "scale", "value": 0})
    assert w.what_if == answer and answer["target"] == "V" and answer["change"] == "scale chemo_dose by 0"
    assert set(answer["series"]) == {"observed", "model", "model what-if"}
    assert len(answer["time"]) == len(answer["series"]["model"]) == s.task.split("val").targets.shape[1]
    assert answer["series"]["model"][0] is None  # the context step is given, not forecast
    bad = w.run_what_if({"node": nid, "input": "nope", "op": "zero"})
    assert bad["error"].startswith("what-if failed: zero: 'nope' is not an input")
