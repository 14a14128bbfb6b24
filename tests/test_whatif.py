"""What-if on exported models: a changed input schedule, the model's forecast under it next
to its forecast under the observed one (and another model's), and the exported cell's
``what_if_N``."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from nimm_jupyter import export, tasks
from nimm_jupyter.export.errors import ExportError
from nimm_jupyter.export.whatif import changed_schedule, plot_what_if, what_if
from nimm_jupyter.modeling.config import TrainConfig
from nimm_jupyter.modeling.harness import evaluate, predict
from nimm_jupyter.modeling.references import reference_code
from nimm_jupyter.search.node import Node
from nimm_jupyter.search.results import SearchResult

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lung():
    return tasks.get("lung_cancer_chemo", n_patients=6, horizon=20, seed=1)


def _model(task, which):
    ns: dict = {}
    exec(reference_code(task, which), ns)
    return ns["Model"](task.spec())


def test_schedule_changes_shift_scale_zero_and_replace(lung):
    u = np.array([[1.0], [0.0], [2.0], [0.0]])
    assert changed_schedule(lung, u, shift={"chemo_dose": 1})[:, 0].tolist() == [0, 1, 0, 2]
    assert changed_schedule(lung, u, shift={"chemo_dose": -2})[:, 0].tolist() == [2, 0, 0, 0]
    assert changed_schedule(lung, u, scale={"chemo_dose": 3})[:, 0].tolist() == [3, 0, 6, 0]
    assert changed_schedule(lung, u, zero=["chemo_dose"]).sum() == 0
    new = np.array([[5.0], [5.0], [5.0], [5.0]])
    assert changed_schedule(lung, u, inputs=new, scale={"chemo_dose": 2}).sum() == 40
    assert u[:, 0].tolist() == [1, 0, 2, 0]  # the observed schedule is left alone
    with pytest.raises(ExportError, match="'radio_dose' is not an input.*chemo_dose"):
        changed_schedule(lung, u, zero=["radio_dose"])
    with pytest.raises(ExportError, match=r"shape \(2, 1\)"):
        changed_schedule(lung, u, inputs=new[:2])


def test_what_if_forecasts_as_the_harness_does_and_changes_only_under_the_change(lung):
    model, prior = _model(lung, "hybrid"), _model(lung, "prior")
    frame = what_if(model, lung, trajectory=2, split="val", zero=["chemo_dose"], against=prior)
    C = int(lung.context)
    harness = predict(model, lung, "val")[2]  # (T-C, S): what the search scored
    assert np.allclose(frame["V model"].to_numpy()[C:], harness[:, 0], rtol=1e-5)
    assert np.isnan(frame["V model"].to_numpy()[:C]).all()
    assert (frame["chemo_dose what-if"] == 0).all() and frame["chemo_dose"].sum() > 0
    # without any drug the drug state stays 0 and the untreated tumour grows larger
    assert np.allclose(frame["C model what-if"].to_numpy()[C:], 0.0)
    assert frame["V model what-if"].iloc[-1] > frame["V model"].iloc[-1]
    assert {"V against", "V against what-if"} <= set(frame.columns)
    assert np.allclose(frame["V"].to_numpy(), lung.split("val").targets[2][:, 0])
    fig = plot_what_if(frame, lung, title="no chemo")
    assert len(fig.axes) == 3  # V, C and the inputs


def test_what_if_refuses_what_it_cannot_do(lung):
    model = _model(lung, "prior")
    with pytest.raises(ExportError, match="equals the observed one"):
        what_if(model, lung, 0)
    with pytest.raises(ExportError, match="between 0 and 5"):
        what_if(model, lung, 6, zero=["chemo_dose"])
    plain = tasks.get("lung_cancer", n_patients=4, horizon=10)
    with pytest.raises(ExportError, match="no inputs"):
        what_if(_model(plain, "prior"), plain, 0, zero=["x"])


def test_exported_load_cell_defines_what_if(lung, tmp_path):
    run_dir = tmp_path / "run-wi"
    weights = run_dir / "weights" / "node_0.pt"
    result = evaluate(lung, lung.prior_code, TrainConfig(save_weights=str(weights), max_epochs=10))
    assert result.ok, result.message
    node = Node(id=0, parent=None, branch=0, operator="draft", code=lung.prior_code,
                state="done", result=result)
    run = SearchResult(run_id="run-wi", run_dir=run_dir, task_name=lung.name, best=node,
                       nodes=[node], counts={}, tokens=0, cost=0.0, wall_time=0.0,
                       stop_reason=None, status="completed",
                       settings={"task_options": {"n_patients": 6, "horizon": 20, "seed": 1},
                                 "train": {"max_epochs": 10}})
    cells = export.export_cells(run, base=tmp_path)
    ns: dict = {}
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the load cell's paths are relative to the notebook's folder
    try:
        for cell in cells:
            if cell.metadata["nimm"]["role"] in ("model", "load"):
                exec(cell.source, ns)
    finally:
        os.chdir(cwd)
    frame = ns["what_if_0"](1, scale={"chemo_dose": 2.0})
    assert np.allclose(frame["chemo_dose what-if"], 2 * frame["chemo_dose"])
    assert not np.allclose(frame["V model what-if"].to_numpy()[1:], frame["V model"].to_numpy()[1:])
