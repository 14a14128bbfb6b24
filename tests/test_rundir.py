"""RunDir: the run directory's layout, task rebuilding, node weights and trained models; and
the layering it enables (search does not import export; importing export stays light)."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nimm_jupyter.modeling.config import TrainConfig
from nimm_jupyter.modeling.harness import evaluate
from nimm_jupyter.search.errors import SearchError
from nimm_jupyter.search.node import Node
from nimm_jupyter.search.results import SearchResult, open_run
from nimm_jupyter.search.rundir import RunDir
from toy_tasks import TRAJ_PRIOR, make_toy_trajectory

ROOT = Path(__file__).resolve().parents[1]
TRAIN = {"max_epochs": 5, "patience": 5, "seed": 0}


@pytest.fixture(scope="module")
def toy():
    return make_toy_trajectory(n_train=8, n_val=4, n_test=4, T=10)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, toy):
    """A run dir holding one node trained for real, weights where the search keeps them."""
    rd = RunDir(tmp_path_factory.mktemp("runs") / "run")
    weights = rd.weights_path(0)
    result = evaluate(toy, TRAJ_PRIOR, TrainConfig(save_weights=str(weights), **TRAIN))
    assert result.ok, result.message
    node = Node(id=0, parent=None, branch=0, operator="draft", code=TRAJ_PRIOR, state="done",
                result=result)
    return rd, node


def test_layout_has_one_home(tmp_path):
    rd = RunDir(str(tmp_path))
    assert rd.path == tmp_path
    assert rd.journal_path == tmp_path / "journal.sqlite"
    assert rd.task_pickle == tmp_path / "task.pkl"
    assert rd.lock_path == tmp_path / "search.lock"
    assert rd.weights_path(3) == tmp_path / "weights" / "node_3.pt"
    assert not rd.has_journal()
    from nimm_jupyter.search import journal

    assert journal.JOURNAL_NAME == rd.journal_path.name  # the journal uses the same name


def test_task_recipe_prefers_the_pickle(tmp_path, toy):
    rd = RunDir(tmp_path / "run")
    recipe = rd.task_recipe("lung_cancer_chemo", {"n_patients": 4})
    assert recipe.pickle is None and recipe.options == {"n_patients": 4}
    with pytest.raises(SearchError, match="task.pkl is missing"):
        rd.task_recipe(toy.name, {}, source="pickle")
    rd.save_task(toy)
    recipe = rd.task_recipe("lung_cancer_chemo", {"n_patients": 4})  # a pickle wins
    assert recipe.pickle == rd.task_pickle.resolve()
    task = rd.load_task(toy.name)
    assert task.name == toy.name and task.kind == toy.kind


def test_registry_recipe_builds_by_name():
    task = RunDir("unused").load_task("lung_cancer_chemo", {"n_patients": 4})
    assert task.name == "lung_cancer_chemo"


def test_node_weights_follow_the_record(tmp_path):
    rd = RunDir(tmp_path)
    node = Node(id=2, parent=None, branch=0, operator="draft", code="x")
    assert rd.node_weights(node) == tmp_path / "weights" / "node_2.pt"  # no result yet
    from nimm_jupyter.modeling.result import EvalResult, Status

    node.result = EvalResult(status=Status.OK, weights_path=str(tmp_path / "elsewhere.pt"))
    assert rd.node_weights(node) == (tmp_path / "elsewhere.pt").resolve()
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "w.pt").write_bytes(b"")
    node.result.weights_path = "weights/w.pt"  # relative: looked up in the run dir
    assert rd.node_weights(node) == (tmp_path / "weights" / "w.pt").resolve()


def test_load_model_from_weights_and_refit(trained, toy, tmp_path):
    import torch

    rd, node = trained
    model = rd.load_model(toy, node, refit=False)
    assert isinstance(model, torch.nn.Module) and not model.training
    moved = RunDir(tmp_path / "copy")  # same node, weights gone: refit only when allowed
    copy = Node(id=0, parent=None, branch=0, operator="draft", code=TRAJ_PRIOR, state="done",
                result=evaluate(toy, TRAJ_PRIOR, TrainConfig(**TRAIN)))
    with pytest.raises(SearchError, match="no saved weights"):
        moved.load_model(toy, copy, refit=False)
    refitted = moved.load_model(toy, copy, train=TRAIN)
    assert isinstance(refitted, torch.nn.Module) and moved.weights_path(0).exists()
    no_code = Node(id=5, parent=None, branch=0, operator="draft", code="")
    with pytest.raises(SearchError, match="node 5 has no code"):
        rd.load_model(toy, no_code)


def test_search_result_goes_through_its_rundir(trained, toy):
    rd, node = trained
    result = SearchResult(run_id="r", run_dir=rd.path, task_name=toy.name, best=node,
                          nodes=[node], counts={}, tokens=0, cost=0.0, wall_time=0.0,
                          stop_reason=None, status="completed", settings={"train": TRAIN},
                          _task=toy)
    assert result.rundir == rd
    assert result.load_model(refit=False) is not None
    with pytest.raises(SearchError, match="no search journal"):
        open_run(rd.path)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_search_layer_does_not_import_export_or_jupyter():
    for path in sorted((ROOT / "nimm_jupyter" / "search").glob("*.py")):
        for name in _imports(path):
            assert "export" not in name.split(".") and "jupyter" not in name.split("."), \
                f"{path.name} imports {name}: search is below export and jupyter"


def test_importing_export_does_not_load_torch():
    code = "import sys, nimm_jupyter.export; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120, check=True)
    assert out.stdout.strip() == "False", out.stderr
