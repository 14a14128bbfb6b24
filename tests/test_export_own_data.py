"""Exports of a model of the user's own data: forecast/predict new data, plots on the data's
time axis, and exported notebooks that still load their weights after the folder moves."""
from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch

from nimm_jupyter import export
from nimm_jupyter.modeling.config import TrainConfig
from nimm_jupyter.export import ExportError, forecast, predict_table
from nimm_jupyter.modeling.contract import load_candidate
from nimm_jupyter.modeling.harness import evaluate, predict
from nimm_jupyter.search.node import Node
from nimm_jupyter.search.results import SearchResult
from nimm_jupyter.tasks import task_from_dataframe

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def pelts() -> pd.DataFrame:
    years = np.arange(1900, 1921)
    return pd.DataFrame({"year": years, "hare": 30 + 10 * np.sin(years / 2.0),
                         "lynx": 20 + 5 * np.cos(years / 2.0)})


def _model(task, seed: int = 0):
    torch.manual_seed(seed)
    model = load_candidate(task.prior_code)(task.spec())
    with torch.no_grad():  # a model that is not the persistence forecast
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def test_forecast_continues_the_series_as_the_harness_scores_it(pelts):
    task = task_from_dataframe(pelts, time="year", targets=["hare", "lynx"], test_last=4)
    model = _model(task)
    out = forecast(model, task, pelts.head(17))  # the rows before the test window
    assert out.year.tolist() == [1917.0, 1918.0, 1919.0, 1920.0]
    assert list(out.columns) == ["year", "hare", "lynx"]
    np.testing.assert_allclose(out[["hare", "lynx"]].to_numpy(), predict(model, task, "test")[0],
                               rtol=1e-5)
    assert len(forecast(model, task, pelts, steps=7)) == 7  # past the data's end
    with pytest.raises(ExportError, match="history has 2 rows; the model observes the last 4"):
        forecast(model, task, pelts.head(2))
    with pytest.raises(ExportError, match="history lacks the column"):
        forecast(model, task, pelts[["year", "hare"]])


def test_forecast_of_dated_series_and_inputs():
    days = pd.date_range("2021-01-01", periods=40, freq="D")
    df = pd.DataFrame({"day": days, "cases": np.linspace(10, 50, 40),
                       "temp": np.sin(np.arange(40))})
    task = task_from_dataframe(df, time="day", targets="cases", inputs=["temp"], test_last=5)
    model = _model(task)
    with pytest.raises(ExportError, match="needs the inputs temp over the 3 steps ahead"):
        forecast(model, task, df, steps=3)
    future = pd.DataFrame({"temp": [0.1, 0.2, 0.3]})
    out = forecast(model, task, df, steps=3, inputs=future)
    assert out.day.tolist() == list(pd.date_range("2021-02-10", periods=3, freq="D"))
    history = df.head(35)
    np.testing.assert_allclose(
        forecast(model, task, history, inputs=df.iloc[35:40][["temp"]]).cases.to_numpy(),
        predict(model, task, "test")[0, :, 0], rtol=1e-5)


def test_predict_table_matches_the_harness():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.random(30), "b": rng.random(30)})
    df["y"] = 2 * df.a - df.b
    task = task_from_dataframe(df, targets="y", features=["a", "b"])
    model = _model(task)
    rows = pd.DataFrame(task.test.inputs, columns=["a", "b"],
                        index=range(100, 100 + len(task.test)))
    out = predict_table(model, task, rows)
    assert list(out.index) == list(rows.index)
    np.testing.assert_allclose(out.y.to_numpy(), predict(model, task, "test")[:, 0], rtol=1e-5)
    with pytest.raises(ExportError, match="use forecast"):
        predict_table(model, task_from_dataframe(pd.DataFrame({"t": range(20), "y": range(20)}),
                                                 time="t", targets="y"), rows)


def test_plot_uses_the_time_column_and_draws_one_step_models_as_points(pelts):
    task = task_from_dataframe(pelts, time="year", targets="hare", test_last=3, horizon=1,
                               context=3)
    fig = export.plot_fit(_model(task), task, "test")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "year"
    model_line = [ln for ln in ax.get_lines() if ln.get_label() == "model"][0]
    assert model_line.get_linestyle() == "None" and model_line.get_marker() == "o"
    assert model_line.get_xdata().tolist() == [1918.0]
    assert any(p.get_label() == "test forecast window" for p in ax.patches)


def test_exported_notebook_travels_with_its_folder(pelts, tmp_path):
    from nbclient import NotebookClient

    task = task_from_dataframe(pelts, name="pelts", time="year", targets="hare", test_last=4)
    project = tmp_path / "project"
    run_dir = project / "runs" / "run-pelts"
    weights = run_dir / "weights" / "node_0.pt"
    result = evaluate(task, task.prior_code, TrainConfig(save_weights=str(weights), max_epochs=20))
    assert result.ok, result.message
    node = Node(id=0, parent=None, branch=0, operator="draft", code=task.prior_code,
                state="done", result=result)
    run = SearchResult(run_id="run-pelts", run_dir=run_dir, task_name="pelts", best=node,
                       nodes=[node], counts={}, tokens=0, cost=0.0, wall_time=0.0,
                       stop_reason=None, status="completed", settings={"train": {}}, _task=task)
    path = export.export_notebook(run, project / "analysis" / "pelts.ipynb")
    nb = nbformat.read(path, as_version=4)
    load = nb.cells[2].source
    assert str(project) not in load and "'../runs/run-pelts/weights/node_0.pt'" in load
    assert "with your rights" in load
    moved = tmp_path / "elsewhere"
    shutil.move(str(project), str(moved))
    nb.cells.append(nbformat.v4.new_code_cell(
        "assert weights.exists()\n"
        "import pandas as pd\n"
        "history = pd.DataFrame({'year': [1913, 1914, 1915, 1916], 'hare': [28.0, 29, 30, 31]})\n"
        "print(forecast_0(history, steps=2).year.tolist())"))
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(moved / "analysis")}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "node 0 validation RMSE" in text and "[1917.0, 1918.0]" in text
