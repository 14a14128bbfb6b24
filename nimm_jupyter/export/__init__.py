"""Searched models -> notebook cells and ``.ipynb`` files (nbformat; no IPython here).

For each exported node there are four cells, each tagged ``metadata.nimm = {run_id,
node_id, role}`` with role ``header`` (markdown: ids, change, scores), ``model`` (the
candidate source as is), ``load`` (rebuild the task, load the trained weights from the run
dir, by a path relative to the notebook, or refit with the harness when they are gone,
print the validation RMSE, define ``forecast_N``/``predict_N`` for new data and
``what_if_N`` for a changed input schedule) and ``plot``
(prediction vs data on the test split, on the data's time axis). Exporting again replaces
the cells carrying the same run/node tags, in a notebook file (:func:`export_notebook`) as
in JupyterLab (the comm).

``result`` is a :class:`~nimm_jupyter.search.results.SearchResult` or a live ``Search``
(exported as its snapshot of now). Modules: :mod:`.cells` renders the cells,
:mod:`.fit` and :mod:`.forecast` hold what the exported cells call (:func:`refit`,
:func:`plot_fit`, :func:`forecast`, :func:`predict_table`), this
module writes notebooks.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_notebook

from ..search.rundir import TASK_PICKLE
from .cells import NodeRef, Result, choose_nodes, export_cells, fresh_kernel_recipe
from .errors import ExportError
from .fit import model_source, plot_fit, refit
from .forecast import forecast, predict_table
from .whatif import plot_what_if, what_if

__all__ = [
    "export_cells", "export_notebook", "merge_cells", "combined_source", "plot_fit", "refit",
    "model_source", "choose_nodes", "fresh_kernel_recipe", "ExportError", "ROLES",
    "TASK_PICKLE", "forecast", "predict_table", "what_if", "plot_what_if",
]

ROLES = ("header", "model", "load", "plot")


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


def export_notebook(result: Result, path: str | Path,
                    nodes: Iterable[NodeRef] | None = None) -> Path:
    """Write the exported cells to ``path``; an existing notebook is updated in place
    (other cells kept, earlier exports of the same run/node replaced). Returns the path."""
    path = Path(path)
    if path.suffix != ".ipynb":
        raise ExportError(f"notebook path must end in .ipynb, got {str(path)!r}")
    cells = export_cells(result, nodes, base=path.parent)
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
