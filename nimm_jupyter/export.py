"""Searched models -> notebook cells and ``.ipynb`` files (nbformat; no IPython here).

For each exported node there are four cells, each tagged ``metadata.nimm = {run_id,
node_id, role}`` with role ``header`` (markdown: ids, change, scores), ``model`` (the
candidate source as is), ``load`` (rebuild the task, load the trained weights from the run
dir or refit with the harness when they are gone, print the validation RMSE) and ``plot``
(prediction vs data on the test split). Exporting again replaces the cells carrying the same
run/node tags, in a notebook file (:func:`export_notebook`) as in JupyterLab (the comm).

``result`` may be a ``SearchResult`` or a live ``Search``: anything with ``run_id``,
``run_dir``, ``nodes``, ``best`` and ``task_name`` (or ``task``).
"""
from __future__ import annotations

import linecache
import math
import pickle
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

__all__ = [
    "export_cells", "export_notebook", "merge_cells", "combined_source", "plot_fit", "refit",
    "model_source", "build_task", "load_node_model", "choose_nodes", "ExportError", "ROLES",
]

ROLES = ("header", "model", "load", "plot")
TASK_PICKLE = "task.pkl"
_TASK_PICKLES = (TASK_PICKLE, "task.pickle")
_TRAIN_KEYS = ("seed", "max_epochs", "patience", "lr", "batch_size", "restarts", "time_limit")


class ExportError(ValueError):
    """A node cannot be exported (no successful model, unknown id, no way to rebuild its task)."""


# -- reading a result ----------------------------------------------------------------------
def _nodes(result: Any) -> list[Any]:
    nodes = getattr(result, "nodes", None) or []
    if isinstance(nodes, dict):
        nodes = list(nodes.values())
    return sorted(nodes, key=lambda n: n.id)


def _task_name(result: Any) -> str:
    name = getattr(result, "task_name", None) or getattr(getattr(result, "task", None), "name", None)
    if not name:
        raise ExportError("the result names no task")
    return str(name)


def _journal_row(run_dir: Path) -> dict[str, Any]:
    """The journal's search record ({} when there is no readable journal)."""
    try:
        from .search.journal import Journal

        journal = Journal.for_run(run_dir, readonly=True)
    except Exception:
        return {}
    try:
        return journal.search_row()
    except Exception:
        return {}
    finally:
        journal.close()


def _settings(result: Any, row: dict[str, Any]) -> dict[str, Any]:
    settings = getattr(result, "settings", None)
    if settings is not None and not isinstance(settings, dict):
        settings = getattr(settings, "__dict__", None)
    return dict(settings or row.get("settings") or {})


def choose_nodes(result: Any, nodes: Iterable[Any] | None = None) -> list[Any]:
    """Nodes to export: the given ids/Nodes (``"best"`` allowed), default the best node."""
    by_id = {int(n.id): n for n in _nodes(result)}
    wanted = list(nodes) if nodes is not None else ["best"]
    if not wanted:
        wanted = ["best"]
    chosen: list[Any] = []
    for item in wanted:
        if item == "best" or item is None:
            node = getattr(result, "best", None)
            if node is None:
                raise ExportError("no successfully evaluated model to export yet")
        elif hasattr(item, "id"):
            node = item
        else:
            try:
                node = by_id[int(item)]
            except (KeyError, ValueError, TypeError):
                ids = f"0..{max(by_id)}" if by_id else "none yet"
                raise ExportError(f"no node {item!r} in run {result.run_id} (nodes: {ids})") from None
        res = getattr(node, "result", None)
        if res is None or not res.ok:
            status = getattr(node, "status", None) or getattr(getattr(res, "status", None), "value", "pending")
            raise ExportError(f"node {node.id} has no trained model (status {status}); "
                              "export a node that evaluated ok")
        if all(int(node.id) != int(c.id) for c in chosen):
            chosen.append(node)
    return chosen


def _task_at_hand(result: Any) -> Any:
    try:
        task = getattr(result, "task", None)  # SearchResult.task may rebuild (and fail)
    except Exception:
        return None
    return task if hasattr(task, "spec") else None


_REBUILDS: set[str] = set()  # (name, options) already checked to rebuild in this process


def _rebuilds(name: str, options: dict[str, Any]) -> bool:
    """Whether ``tasks.get(name, **options)`` works (options stored from ``Task.options`` can
    hold keys the factory does not take)."""
    from . import tasks

    key = repr((name, sorted(options.items())))
    if key in _REBUILDS:
        return True
    try:
        tasks.get(name, **options)
    except TypeError:
        return False
    _REBUILDS.add(key)
    return True


def _task_recipe(result: Any, run_dir: Path) -> tuple[str, Any]:
    """How a fresh kernel rebuilds the task: ("builtin", (name, options)) or ("pickle", path)."""
    from . import tasks

    name = _task_name(result)
    for candidate in _TASK_PICKLES:  # the search pickles user (DataFrame) tasks here
        if (run_dir / candidate).is_file():
            return "pickle", (run_dir / candidate).resolve()
    row = _journal_row(run_dir)
    options = row.get("task_options") if row else None
    if options is None:
        options = _settings(result, row).get("task_options")
    options = dict(options or {})
    if name in getattr(tasks, "_BUILTINS", {}) and _rebuilds(name, options):
        return "builtin", (name, options)
    task = _task_at_hand(result)
    if task is None:
        raise ExportError(f"cannot rebuild task {name!r} in a fresh kernel: it is not a built-in "
                          f"task with valid options and run dir {run_dir} holds no {TASK_PICKLE}")
    # Keep a pickle next to the journal (what the search itself does for user tasks).
    path = run_dir / TASK_PICKLE
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(task, fh)
    return "pickle", path.resolve()


def build_task(result: Any) -> Any:
    """The result's Task: ``result.task`` when it has one, else rebuilt like an exported cell."""
    task = _task_at_hand(result)
    if task is not None:
        return task
    kind, what = _task_recipe(result, Path(result.run_dir).resolve())
    if kind == "builtin":
        from . import tasks

        name, options = what
        return tasks.get(name, **options)
    with open(what, "rb") as fh:
        return pickle.load(fh)


def load_node_model(result: Any, node: Any, task: Any = None) -> Any:
    """The trained model of ``node`` (from its saved weights), in eval mode on the CPU."""
    from .modeling.harness import load_trained

    task = task if task is not None else build_task(result)
    weights = _weights(node, Path(result.run_dir).resolve())
    if weights is None or not weights.exists():
        raise ExportError(f"node {node.id} has no saved weights in {result.run_dir}")
    return load_trained(task, node.code, str(weights))


def _weights(node: Any, run_dir: Path) -> Path | None:
    wp = getattr(node.result, "weights_path", None)
    if not wp:
        return None
    p = Path(wp)
    if not p.is_absolute():
        p = run_dir / p if (run_dir / p).exists() or not p.exists() else p
    return p.resolve()


def _train_kwargs(node: Any, settings: dict[str, Any]) -> dict[str, Any]:
    train = settings.get("train") or {}
    if not isinstance(train, dict):
        train = getattr(train, "__dict__", {}) or {}
    out = {k: train[k] for k in _TRAIN_KEYS if train.get(k) is not None}
    res = node.result
    out["seed"] = int(getattr(res, "seed", out.get("seed", 0)) or 0)
    out["restarts"] = int(getattr(res, "restarts", out.get("restarts", 1)) or 1)
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


def _header_source(result: Any, node: Any, task_name: str) -> str:
    r = node.result
    lines = [
        f"### nimm model: run `{result.run_id}`, node {node.id}",
        "",
        f"**Task** `{task_name}` · **branch** {node.branch}"
        + (f" ({_md(node.strategy)})" if getattr(node, "strategy", None) else "")
        + f" · **operator** {node.operator}"
        + (f" · **parent** {node.parent}" if node.parent is not None else ""),
        "",
    ]
    if getattr(node, "change", ""):
        lines += [f"**Change:** {_md(node.change)}", ""]
    lines += ["| split | RMSE | normalised RMSE |", "|---|---|---|"]
    for split in ("train", "val", "test"):
        s = getattr(r, split)
        lines.append(f"| {split} | {_fmt(s.rmse)} | {_fmt(s.rmse_norm)} |")
    if r.parameters:
        params = ", ".join(f"{_md(k)} = {_fmt(v)}" for k, v in list(r.parameters.items())[:24])
        lines += ["", f"**Fitted parameters:** {params}"]
    return "\n".join(lines)


def _load_source(node: Any, recipe: tuple[str, Any], weights: Path | None,
                 train: dict[str, Any]) -> str:
    nid = node.id
    kind, what = recipe
    lines = [
        f"# Node {nid}: rebuild the task, load the weights the search trained (or retrain them",
        "# with the same harness settings if the run dir is gone) and check the validation RMSE.",
        "from pathlib import Path",
        "",
        "import torch",
        "",
    ]
    if kind == "builtin":
        name, options = what
        lines += ["from nimm_jupyter import tasks",
                  "from nimm_jupyter.export import refit",
                  "from nimm_jupyter.modeling.harness import predict, score_predictions",
                  "",
                  f"task = tasks.get({name!r}{''.join(f', {k}={v!r}' for k, v in options.items())})"]
    else:
        lines += ["import pickle",
                  "",
                  "from nimm_jupyter.export import refit",
                  "from nimm_jupyter.modeling.harness import predict, score_predictions",
                  "",
                  f"with open({str(what)!r}, 'rb') as fh:  # the DataFrame task the search used",
                  "    task = pickle.load(fh)"]
    lines += [
        f"weights = Path({str(weights)!r})" if weights is not None else "weights = None",
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
    return "\n".join(lines)


def _plot_source(node: Any) -> str:
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


def export_cells(result: Any, nodes: Iterable[Any] | None = None) -> list[NotebookNode]:
    """Notebook cells (header, model, load, plot) for each chosen node (default: the best).

    Raises :class:`ExportError` when a node has no trained model or the task cannot be
    rebuilt in a fresh kernel.
    """
    run_dir = Path(result.run_dir).resolve()
    chosen = choose_nodes(result, nodes)
    recipe = _task_recipe(result, run_dir)
    settings = _settings(result, _journal_row(run_dir))
    task_name = _task_name(result)
    cells: list[NotebookNode] = []
    for node in chosen:
        rid = str(result.run_id)
        cells += [
            _tag(new_markdown_cell(_header_source(result, node, task_name)), rid, node.id, "header"),
            _tag(new_code_cell(node.code.rstrip("\n")), rid, node.id, "model"),
            _tag(new_code_cell(_load_source(node, recipe, _weights(node, run_dir),
                                            _train_kwargs(node, settings))), rid, node.id, "load"),
            _tag(new_code_cell(_plot_source(node)), rid, node.id, "plot"),
        ]
    return cells


def _key(cell: Any) -> tuple[str, int] | None:
    nimm = (cell.get("metadata") or {}).get("nimm")
    if not isinstance(nimm, dict) or "run_id" not in nimm or "node_id" not in nimm:
        return None
    return str(nimm["run_id"]), int(nimm["node_id"])


def merge_cells(nb: NotebookNode, cells: Sequence[NotebookNode]) -> NotebookNode:
    """Put ``cells`` into ``nb``: each node's group replaces the cells already tagged with the
    same run/node (at the place of the first of them); new groups are appended."""
    groups: dict[tuple[str, int], list[NotebookNode]] = {}
    for cell in cells:
        key = _key(cell)
        if key is None:
            raise ExportError("exported cells must carry metadata.nimm run_id and node_id")
        groups.setdefault(key, []).append(cell)
    out: list[Any] = []
    placed: set[tuple[str, int]] = set()
    for cell in nb.cells:
        key = _key(cell)
        if key in groups:
            if key not in placed:
                out += groups[key]
                placed.add(key)
            continue  # an older export of the same node
        out.append(cell)
    for key, group in groups.items():
        if key not in placed:
            out += group
    nb.cells = out
    return nb


def export_notebook(result: Any, path: str | Path, nodes: Iterable[Any] | None = None) -> Path:
    """Write the exported cells to ``path``; an existing notebook is updated in place
    (other cells kept, earlier exports of the same run/node replaced). Returns the path."""
    path = Path(path)
    if path.suffix != ".ipynb":
        raise ExportError(f"notebook path must end in .ipynb, got {str(path)!r}")
    cells = export_cells(result, nodes)
    if path.exists():
        nb = nbformat.read(path, as_version=4)
    else:
        nb = new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
    merge_cells(nb, cells)
    nbformat.validate(nb)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    nbformat.write(nb, tmp)
    tmp.replace(path)
    return path


def combined_source(cells: Sequence[Any]) -> str:
    """All exported cells as one code cell (markdown as comments), for ``set_next_input``.

    ``from __future__`` imports are hoisted to the top, where Python requires them.
    """
    future: list[str] = []
    parts: list[str] = []
    for cell in cells:
        src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            parts.append("\n".join(f"# {line}".rstrip() for line in src.splitlines()))
            continue
        body = []
        for line in src.splitlines():
            if line.startswith("from __future__ import"):
                if line not in future:
                    future.append(line)
            else:
                body.append(line)
        parts.append("\n".join(body).strip("\n"))
    return "\n".join(future + ([""] if future else [])) + "\n\n".join(parts) + "\n"


# -- helpers the exported cells call -------------------------------------------------------
def model_source(model_class: type) -> str:
    """The source text of a candidate ``Model`` class defined in a notebook cell or file.

    IPython keeps each executed cell in ``linecache`` under the file name its code objects
    carry, so the whole cell (imports included) is recovered even though ``__main__`` has no
    file for :func:`inspect.getsource`.
    """
    for attr in vars(model_class).values():
        func = getattr(attr, "__func__", attr)
        code = getattr(func, "__code__", None)
        if code is None:
            continue
        lines = linecache.getlines(code.co_filename)
        if lines:
            return "".join(lines)
    import inspect

    try:
        return inspect.getsource(inspect.getmodule(model_class))  # type: ignore[arg-type]
    except (TypeError, OSError) as exc:
        raise ExportError(f"cannot find the source of {model_class.__name__}: {exc}") from None


def refit(model_class: type, task: Any, *, weights: str | Path | None = None,
          device: str = "cpu", **train: Any) -> Any:
    """Train ``model_class`` with the search's harness (same settings) and return it in eval
    mode. Used by exported cells when the run dir's weights are gone; the scores can differ
    slightly from the search's (thread scheduling), so they are printed again by the cell."""
    import tempfile

    from .execution.base import TrainConfig
    from .modeling.harness import evaluate, load_trained

    source = model_source(model_class)
    known = {k: v for k, v in train.items() if k in TrainConfig.__dataclass_fields__}
    target = Path(weights) if weights is not None else Path(tempfile.mkdtemp(prefix="nimm_refit_")) / "model.pt"
    config = TrainConfig(device=device, save_weights=str(target), **known)
    result = evaluate(task, source, config)
    if not result.ok:
        raise ExportError(f"refit failed ({result.status.value}): {result.message}")
    return load_trained(task, source, str(target), device=device)


def plot_fit(model: Any, task: Any, split: str = "test", *, figure: Any = None,
             max_series: int = 3, title: str = "") -> Any:
    """Plot ``model``'s predictions against the data of ``split``; returns the Figure.

    Trajectory tasks: the first ``max_series`` trajectories, one row per target (data as
    dots, the forecast from the context on as a line). Tabular tasks: predicted vs observed
    per target. Uses ``matplotlib.figure.Figure`` unless a figure is given (thread-safe,
    no pyplot state).
    """
    import numpy as np
    from matplotlib.figure import Figure

    from .modeling.harness import predict, score_predictions

    fig = figure if figure is not None else Figure(figsize=(10, 5))
    pred = predict(model, task, split)
    data = task.split(split)
    y = np.asarray(data.targets, dtype=float)
    names = [f"{v.name} [{v.unit}]" if v.unit else v.name for v in task.targets]
    scores = score_predictions(task, split, pred)
    if str(getattr(task.kind, "value", task.kind)) == "trajectory":
        n = min(max_series, y.shape[0])
        S = y.shape[2]
        t = np.asarray(task.time, dtype=float) if task.time is not None else np.arange(y.shape[1], dtype=float)
        C = int(task.context)
        axes = fig.subplots(S, n, squeeze=False)
        for j in range(S):
            for i in range(n):
                ax = axes[j][i]
                ax.plot(t, y[i, :, j], ".", color="0.25", ms=3, label="data")
                ax.plot(t[C:], pred[i, :, j], "-", color="C1", lw=1.5, label="model")
                ax.axvline(t[C - 1] if C > 0 else t[0], color="0.7", lw=0.8, ls="--")
                if i == 0:
                    ax.set_ylabel(names[j])
                if j == 0:
                    ax.set_title(f"{split} #{i}", fontsize=9)
                if j == S - 1:
                    ax.set_xlabel("time")
        axes[0][0].legend(fontsize=8, loc="best")
    else:
        Y = y.shape[1]
        axes = fig.subplots(1, Y, squeeze=False)
        for j in range(Y):
            ax = axes[0][j]
            ok = np.isfinite(y[:, j])
            ax.scatter(y[ok, j], pred[ok, j], s=10, alpha=0.7, color="C0")
            lo = float(np.nanmin([y[ok, j].min(), pred[ok, j].min()])) if ok.any() else 0.0
            hi = float(np.nanmax([y[ok, j].max(), pred[ok, j].max()])) if ok.any() else 1.0
            ax.plot([lo, hi], [lo, hi], "--", color="0.5", lw=1)
            ax.set_xlabel(f"observed {names[j]}")
            ax.set_ylabel(f"predicted {names[j]}")
    head = f"{title}: " if title else ""
    fig.suptitle(f"{head}{task.name}, {split} split (RMSE {scores.rmse:.4g})", fontsize=10)
    try:
        fig.tight_layout()
    except Exception:  # tight_layout can fail on odd sizes; the plot is still fine
        pass
    return fig

