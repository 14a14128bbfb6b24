"""Export: cells and tags, in-place notebook updates, and a fresh-kernel round trip that
reproduces the validation RMSE the search reported."""
from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import nbformat
import pytest

from nimm_jupyter import export, tasks
from nimm_jupyter.modeling.config import TrainConfig
from nimm_jupyter.modeling.harness import evaluate
from nimm_jupyter.search.node import Node
from nimm_jupyter.search.results import SearchResult

TASK_OPTIONS = {"n_patients": 8, "horizon": 15, "seed": 3}
TRAIN = {"max_epochs": 25, "patience": 10, "seed": 0}


def _trained_run(run_dir: Path, task, name: str | None = None,
                 pickle_task: bool = False) -> SearchResult:
    """One node trained for real by the harness, weights where the search keeps them."""
    source = task.prior_code
    weights = run_dir / "weights" / "node_0.pt"
    result = evaluate(task, source, TrainConfig(save_weights=str(weights), **TRAIN))
    assert result.ok, result.message
    node = Node(id=0, parent=None, branch=0, operator="draft", strategy="mechanistic prior",
                change="the prior as given", code=source, state="done", result=result)
    failed = Node(id=1, parent=0, branch=0, operator="refine", code="x", state="failed")
    return SearchResult(run_id=run_dir.name, run_dir=run_dir, task_name=name or task.name,
                        best=node, nodes=[node, failed], counts={}, tokens=0, cost=0.0,
                        wall_time=0.0, stop_reason=None, status="completed",
                        settings={"task_options": TASK_OPTIONS, "train": TRAIN},
                        _task=task if pickle_task else None)


@pytest.fixture(scope="module")
def lung_task():
    return tasks.get("lung_cancer_chemo", **TASK_OPTIONS)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A tiny search by the real engine (offline proposer, two nodes)."""
    import nimm_jupyter
    from nimm_jupyter.search.api import open_run

    run_dir = tmp_path_factory.mktemp("real") / "run-real"
    s = nimm_jupyter.search("lung_cancer_chemo", budget=2, branches=1, proposer="offline",
                            device="cpu", task_options=TASK_OPTIONS, run_dir=run_dir,
                            train=TrainConfig(max_epochs=25, patience=10), background=True)
    s.wait(180)
    assert s.done and s.best is not None
    return open_run(run_dir)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, lung_task):
    root = tmp_path_factory.mktemp("runs")
    builtin = _trained_run(root / "run-builtin", lung_task)
    user_task = dataclasses.replace(lung_task, name="my_tumours", options={})
    user = _trained_run(root / "run-user", user_task, pickle_task=True)
    return builtin, user


def test_cells_are_tagged_and_compile(runs):
    builtin, _ = runs
    cells = export.export_cells(builtin)
    assert [c.cell_type for c in cells] == ["markdown", "code", "code", "code"]
    assert [c.metadata["nimm"] for c in cells] == [
        {"run_id": "run-builtin", "node_id": 0, "role": r} for r in ("header", "model", "load", "plot")]
    assert cells[1].source == builtin.nodes[0].code.rstrip("\n")  # the candidate as is
    assert "tasks.get('lung_cancer_chemo', n_patients=8, horizon=15, seed=3)" in cells[2].source
    # the load cell reaches the weights by a path relative to the kernel's working directory
    # (where live-inserted cells run), wherever the run directory lies
    weights = re.search(r"weights = Path\('([^']+)'\)", cells[2].source).group(1)
    assert (Path.cwd() / weights).resolve() == (builtin.run_dir / "weights" / "node_0.pt").resolve()
    assert "| val |" in cells[0].source and "run-builtin" in cells[0].source
    for c in cells[1:]:
        compile(c.source, "<cell>", "exec")
    compile(export.combined_source(cells), "<combined>", "exec")


def test_bad_nodes_are_clear_errors(runs):
    builtin, _ = runs
    with pytest.raises(export.ExportError, match="node 1 has no trained model"):
        export.export_cells(builtin, [1])
    with pytest.raises(export.ExportError, match="no node 7"):
        export.export_cells(builtin, [7])
    empty = dataclasses.replace(builtin, nodes=[builtin.nodes[1]], best=None)
    with pytest.raises(export.ExportError, match="no successfully evaluated model"):
        export.export_cells(empty)


def test_notebook_update_replaces_same_node_only(runs, tmp_path):
    builtin, _ = runs
    path = tmp_path / "nb.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# my analysis"),
                                         nbformat.v4.new_code_cell("x = 1")])
    nbformat.write(nb, path)
    export.export_notebook(builtin, path)
    export.export_notebook(builtin, path)  # again: replaced, not duplicated
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.cells[0].source == "# my analysis" and nb.cells[1].source == "x = 1"
    assert len(nb.cells) == 6
    # an edited export is replaced in place; a user's cell after it stays
    nb.cells[3].source = "# edited by hand"
    nb.cells.append(nbformat.v4.new_code_cell("y = 2"))
    nbformat.write(nb, path)
    export.export_notebook(builtin, path)
    nb = nbformat.read(path, as_version=4)
    assert len(nb.cells) == 7 and nb.cells[-1].source == "y = 2"
    assert "class Model" in nb.cells[3].source and nb.cells[4].source.startswith("# Node 0")
    with pytest.raises(export.ExportError, match=".ipynb"):
        export.export_notebook(builtin, tmp_path / "nb.txt")


def test_combined_source_hoists_future_imports():
    cells = [nbformat.v4.new_markdown_cell("### title\nline"),
             nbformat.v4.new_code_cell("from __future__ import annotations\nimport math\nA = 1"),
             nbformat.v4.new_code_cell("from __future__ import annotations\nB = 2")]
    text = export.combined_source(cells)
    assert text.startswith("from __future__ import annotations\n")
    assert text.count("from __future__") == 1 and "# ### title" in text
    compile(text, "<combined>", "exec")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_fresh_kernel_reproduces_validation_rmse(runs, real_run, tmp_path):
    from nbclient import NotebookClient

    builtin, user = runs
    path = tmp_path / "exported.ipynb"
    export.export_notebook(builtin, path)
    export.export_notebook(user, path)  # a DataFrame-style task: loaded from its pickle
    assert (user.run_dir / export.TASK_PICKLE).is_file()
    export.export_notebook(real_run, path)  # the engine's own SearchResult
    nb = nbformat.read(path, as_version=4)
    assert len(nb.cells) == 12
    client = NotebookClient(nb, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    t0 = time.time()
    client.execute()
    reported = {}
    pngs = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text = out.get("text", "")
            for m in re.finditer(r"node (\d+) validation RMSE: ([0-9.eE+-]+)", text):
                reported.setdefault(cell.metadata["nimm"]["run_id"], float(m.group(2)))
            pngs += "image/png" in out.get("data", {})
    assert set(reported) == {"run-builtin", "run-user", "run-real"}, reported
    for run in (builtin, user, real_run):
        expected = run.best.result.val.rmse
        assert reported[run.run_id] == pytest.approx(expected, rel=1e-4)
    assert pngs == 3
    assert time.time() - t0 < 200


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_refit_when_weights_are_gone(runs, tmp_path):
    from nbclient import NotebookClient

    builtin, _ = runs
    cells = export.export_cells(builtin)
    load = re.sub(r"weights = Path\('[^']*'\)", f"weights = Path({str(tmp_path / 'missing.pt')!r})",
                  cells[2].source)  # the weights' path, relative to the notebook
    nb = nbformat.v4.new_notebook(cells=[cells[1], nbformat.v4.new_code_cell(load)])
    NotebookClient(nb, timeout=180, kernel_name="python3").execute()
    text = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    value = float(re.search(r"validation RMSE: ([0-9.eE+-]+)", text).group(1))
    # retrained from scratch with the same harness settings and seed
    assert value == pytest.approx(builtin.nodes[0].result.val.rmse, rel=1e-3)


def test_summary_table_and_fit_plot(real_run, runs):
    from nimm_jupyter.jupyter.summary import summary_html, summary_text

    html = summary_html(real_run)
    assert "nimm-summary" in html and "<table>" in html and "data:image/png;base64," in html
    assert f"<td>{real_run.best.id} &#9733;</td>" in html  # the best node is starred
    text = summary_text(real_run)
    assert real_run.run_id in text and "2 evaluated" in text
    builtin, _ = runs
    node = builtin.nodes[0]
    gone = dataclasses.replace(node, result=dataclasses.replace(
        node.result, weights_path=str(builtin.run_dir / "gone.pt")))
    broken = dataclasses.replace(builtin, nodes=[gone], best=gone)
    html = summary_html(broken)  # weights gone: the table stays, the plot says why
    assert "<table>" in html and "fit plot unavailable" in html
