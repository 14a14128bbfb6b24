"""Searched nodes -> notebook cells: which nodes, how a fresh kernel rebuilds their task, and
the text of each node's four cells (header, model, load, plot)."""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Union

from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell

from .. import tasks
from ..search.rundir import RunDir, TaskRecipe
from ..tasks.base import Task
from .errors import ExportError

if TYPE_CHECKING:  # imported when used: they pull in torch, and importing export must not
    from ..search.api import Search
    from ..search.node import Node
    from ..search.results import SearchResult

# What export takes: a snapshot, or a live search (exported as its snapshot now).
Result = Union["SearchResult", "Search"]
NodeRef = Union[int, str, "Node", None]  # a node id, "best" (or None), or the Node itself
_TRAIN_KEYS = ("seed", "max_epochs", "patience", "lr", "batch_size", "restarts", "time_limit")


def snapshot(result: Result) -> "SearchResult":
    """``result`` as a :class:`SearchResult` (a live search's snapshot of now)."""
    from ..search.api import Search

    return result.result if isinstance(result, Search) else result


# -- which nodes ---------------------------------------------------------------------------
def choose_nodes(result: Result, nodes: Iterable[NodeRef] | None = None) -> list["Node"]:
    """Nodes to export: the given ids/Nodes (``"best"`` allowed), default the best node."""
    from ..search.node import Node

    result = snapshot(result)
    by_id = {int(n.id): n for n in result.nodes}
    wanted = list(nodes) if nodes is not None else ["best"]
    if not wanted:
        wanted = ["best"]
    chosen: list["Node"] = []
    for item in wanted:
        if item == "best" or item is None:
            node = result.best
            if node is None:
                raise ExportError("no successfully evaluated model to export yet")
        elif isinstance(item, Node):
            node = item
        else:
            try:
                node = by_id[int(item)]
            except (KeyError, ValueError, TypeError):
                ids = f"0..{max(by_id)}" if by_id else "none yet"
                raise ExportError(f"no node {item!r} in run {result.run_id} (nodes: {ids})") from None
        if not node.ok:
            raise ExportError(f"node {node.id} has no trained model (status {node.status}); "
                              "export a node that evaluated ok")
        if all(int(node.id) != int(c.id) for c in chosen):
            chosen.append(node)
    return chosen


# -- the task in a fresh kernel ------------------------------------------------------------
def _task_at_hand(result: "SearchResult") -> Task | None:
    try:
        task = result.task  # SearchResult.task may rebuild (and fail)
    except Exception:
        return None
    return task if isinstance(task, Task) else None


_REBUILDS: set[str] = set()  # (name, options) already checked to rebuild in this process


def _rebuilds(recipe: TaskRecipe) -> bool:
    """Whether the registry rebuilds ``recipe`` (options stored from ``Task.options`` can
    hold keys the factory does not take)."""
    key = repr((recipe.name, sorted(recipe.options.items())))
    if key in _REBUILDS:
        return True
    try:
        recipe.build()
    except TypeError:
        return False
    _REBUILDS.add(key)
    return True


def fresh_kernel_recipe(result: Result) -> TaskRecipe:
    """How a fresh kernel rebuilds the task: the run dir's pickle, else a built-in task by
    name and options; a task that is neither is pickled into the run dir now."""
    result = snapshot(result)
    if not result.task_name:
        raise ExportError("the result names no task")
    rundir = RunDir(Path(result.run_dir).resolve())
    recipe = rundir.task_recipe(result.task_name, result.settings.get("task_options"))
    if recipe.pickle is not None or (tasks.is_builtin(recipe.name) and _rebuilds(recipe)):
        return recipe
    task = _task_at_hand(result)
    if task is None:
        raise ExportError(f"cannot rebuild task {recipe.name!r} in a fresh kernel: it is not a "
                          f"built-in task with valid options and run dir {rundir.path} holds "
                          f"no {rundir.task_pickle.name}")
    rundir.save_task(task)  # kept next to the journal, as the search does for user tasks
    return rundir.task_recipe(recipe.name, recipe.options)


def _train_kwargs(node: "Node", settings: dict[str, Any]) -> dict[str, Any]:
    train = settings.get("train") or {}
    out = {k: train[k] for k in _TRAIN_KEYS if train.get(k) is not None}
    res = node.result
    assert res is not None  # choose_nodes keeps evaluated nodes only
    out["seed"] = int(res.seed or 0)
    out["restarts"] = int(res.restarts or 1)
    return out


# -- cell text -----------------------------------------------------------------------------
def _fmt(x: Any, digits: int = 6) -> str:
    """``x`` with ``digits`` significant digits; "–" for None, NaN, inf and non-numbers."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return "–"
    return f"{f:.{digits}g}" if math.isfinite(f) else "–"


def _md(text: str) -> str:
    return re.sub(r"([|*_`<>])", r"\\\1", " ".join(str(text).split()))


def _header_source(result: "SearchResult", node: "Node") -> str:
    r = node.result
    lines = [
        f"### nimm model: run `{result.run_id}`, node {node.id}",
        "",
        f"**Task** `{result.task_name}` · **branch** {node.branch}"
        + (f" ({_md(node.strategy)})" if node.strategy else "")
        + f" · **operator** {node.operator}"
        + (f" · **parent** {node.parent}" if node.parent is not None else ""),
        "",
    ]
    if node.change:
        lines += [f"**Change:** {_md(node.change)}", ""]
    formula = None
    if node.operator == "distill":  # imported here: importing export must not load torch
        from ..search.distill_step import fitted_formula

        formula = fitted_formula(node)  # the sparse fit's law is in the model cell's docstring
    if formula:
        lines += [f"**Law** (the network of node {node.parent} distilled, coefficients as "
                  "trained; x0, x1, ...: its inputs):", "", f"$$ {formula['latex']} $$", ""]
    lines += ["| split | RMSE | normalised RMSE |", "|---|---|---|"]
    for split in ("train", "val", "test"):
        s = getattr(r, split)
        lines.append(f"| {split} | {_fmt(s.rmse)} | {_fmt(s.rmse_norm)} |")
    if r.parameters:
        params = ", ".join(f"{_md(k)} = {_fmt(v)}" for k, v in list(r.parameters.items())[:24])
        lines += ["", f"**Fitted parameters:** {params}"]
    return "\n".join(lines)


def _relative(path: Path, base: Path) -> str:
    """``path`` as the notebook in ``base`` reaches it (so a moved project keeps working)."""
    try:
        return os.path.relpath(path, base)
    except ValueError:  # another drive (Windows): only the absolute path reaches it
        return str(path)


def _use_source(nid: int, kind: str | None) -> list[str]:
    """The cell's ``forecast_N(history, steps)`` or ``predict_N(df)`` for new data."""
    if kind == "trajectory":
        return ["",
                f"def forecast_{nid}(history, steps=None, inputs=None):",
                "    \"\"\"Forecast `steps` (default: the horizon scored) after the last row of "
                "`history`,",
                "    a DataFrame with the target columns; see nimm_jupyter.export.forecast.\"\"\"",
                f"    return forecast(model_{nid}, task, history, steps=steps, inputs=inputs)",
                "",
                f"def what_if_{nid}(trajectory=0, split='test', scale=None, shift=None, zero=(),",
                "              inputs=None, against=None):",
                "    \"\"\"This model's forecast of one trajectory under a changed input schedule, "
                "beside",
                "    its forecast under the observed one (and `against`'s, e.g. the prior's "
                "model);",
                "    see nimm_jupyter.export.whatif. Plot it with plot_what_if(frame, task).\"\"\"",
                f"    return what_if(model_{nid}, task, trajectory, split, scale=scale, shift=shift,",
                "                   zero=zero, inputs=inputs, against=against)"]
    if kind == "tabular":
        return ["",
                f"def predict_{nid}(df):",
                "    \"\"\"The targets predicted for the rows of `df` (the feature columns).\"\"\"",
                f"    return predict_table(model_{nid}, task, df)"]
    return []


def _load_source(node: "Node", recipe: TaskRecipe, weights: Path | None,
                 train: dict[str, Any], base: Path, kind: str | None) -> str:
    nid = node.id
    lines = [
        f"# Node {nid}: rebuild the task, load the weights the search trained (or retrain them",
        "# with the same harness settings if the run dir is gone) and check the validation RMSE.",
        "# Running these cells is your explicit step: they run the model's code (written by the",
        "# search's proposer) and unpickle the run's task with your rights, outside the sandbox.",
        "# Paths are relative to this notebook's folder (the kernel's working directory).",
        "from pathlib import Path",
        "",
        "import torch",
        "",
    ]
    helpers = ["from nimm_jupyter.export import forecast, plot_what_if, predict_table, refit, what_if",
               "from nimm_jupyter.modeling.harness import predict, score_predictions"]
    if recipe.pickle is None:
        name, options = recipe.name, recipe.options
        lines += ["from nimm_jupyter import tasks", *helpers, "",
                  f"task = tasks.get({name!r}{''.join(f', {k}={v!r}' for k, v in options.items())})"]
    else:
        lines += ["import pickle", "", *helpers, "",
                  f"with open({_relative(recipe.pickle, base)!r}, 'rb') as fh:  "
                  "# the DataFrame task the search used",
                  "    task = pickle.load(fh)"]
    lines += [
        f"weights = Path({_relative(weights, base)!r})" if weights is not None else "weights = None",
        "if weights is not None and weights.exists():",
        f"    model_{nid} = Model(task.spec())",
        f"    model_{nid}.load_state_dict(torch.load(weights, map_location='cpu', weights_only=True))",
        "else:",
        f"    model_{nid} = refit(Model, task{''.join(f', {k}={v!r}' for k, v in train.items())})",
        f"model_{nid}.eval()",
        f"val_{nid} = score_predictions(task, 'val', predict(model_{nid}, task, 'val'))",
        f"print(f'node {nid} validation RMSE: {{val_{nid}.rmse:.6g}} "
        f"(search: {_fmt(node.result.val.rmse)})')",
    ]
    return "\n".join(lines + _use_source(nid, kind))


def _plot_source(node: "Node") -> str:
    nid = node.id
    return "\n".join([
        f"# Node {nid}: prediction vs data on the test split.",
        "import matplotlib.pyplot as plt",
        "",
        "from nimm_jupyter.export import plot_fit",
        "",
        "fig = plt.figure(figsize=(10, 5))",
        f"plot_fit(model_{nid}, task, 'test', figure=fig, title='node {nid}')",
        "plt.show()",
    ])


def _tag(cell: NotebookNode, run_id: str, node_id: int, role: str) -> NotebookNode:
    cell.metadata["nimm"] = {"run_id": str(run_id), "node_id": int(node_id), "role": role}
    return cell


def _task_kind(result: "SearchResult", recipe: TaskRecipe) -> str | None:
    """``trajectory`` or ``tabular`` (None when the task cannot be built here)."""
    task = _task_at_hand(result)
    if task is None:
        try:
            task = recipe.build()
        except Exception:  # the cell still rebuilds it in the notebook's kernel
            return None
    return str(getattr(task.kind, "value", task.kind))


def export_cells(result: Result, nodes: Iterable[NodeRef] | None = None,
                 base: str | Path | None = None) -> list[NotebookNode]:
    """Notebook cells (header, model, load, plot) for each chosen node (default: the best).

    The load cell reaches the run's files by paths relative to ``base``, the folder of the
    notebook the cells go into (default: the working directory, which is the notebook's
    folder in a Jupyter kernel), and defines ``forecast_N(history, steps)`` and
    ``what_if_N(trajectory, scale=, shift=, zero=)`` (series) or ``predict_N(df)`` (tables)
    for new data. Raises :class:`ExportError` when a node has no trained model or the task
    cannot be rebuilt in a fresh kernel.
    """
    result = snapshot(result)
    rundir = RunDir(Path(result.run_dir).resolve())
    chosen = choose_nodes(result, nodes)
    recipe = fresh_kernel_recipe(result)
    kind = _task_kind(result, recipe)
    where = Path(base).resolve() if base is not None else Path.cwd()
    cells: list[NotebookNode] = []
    for node in chosen:
        rid = str(result.run_id)
        assert node.result is not None  # chosen nodes evaluated ok
        weights = rundir.node_weights(node) if node.result.weights_path else None
        cells += [
            _tag(new_markdown_cell(_header_source(result, node)), rid, node.id, "header"),
            _tag(new_code_cell(node.code.rstrip("\n")), rid, node.id, "model"),
            _tag(new_code_cell(_load_source(node, recipe, weights,
                                            _train_kwargs(node, result.settings), where, kind)),
                 rid, node.id, "load"),
            _tag(new_code_cell(_plot_source(node)), rid, node.id, "plot"),
        ]
    return cells
