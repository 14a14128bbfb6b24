"""Static end-of-search summary: an HTML table of the top nodes and a PNG of the best fit.

Shown in the search cell's output when a search ends, so a saved notebook stays readable
without widget state. Rendering never touches pyplot (safe off the main thread).
"""
from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..export.cells import Result, _fmt as _fmt_number, snapshot
from ..export.fit import plot_fit
from ..modeling.scoring import predictions_file
from ..search.rundir import RunDir

if TYPE_CHECKING:
    from ..search.node import Node
    from ..search.results import SearchResult
    from ..tasks.base import Task


def _val(node: "Node") -> float:
    r = node.result
    if r is None or not r.ok:
        return math.inf
    v = float(r.val.rmse)
    return v if math.isfinite(v) else math.inf


def top_nodes(result: Result, top: int = 10) -> list["Node"]:
    """The ``top`` successful nodes by validation RMSE."""
    ok = [n for n in snapshot(result).nodes if _val(n) < math.inf]
    return sorted(ok, key=lambda n: (_val(n), n.id))[:top]


def _fmt(x: object) -> str:
    return _fmt_number(x, 4)


def shorten(text: str, width: int) -> str:
    """``text`` cut at a word boundary to at most ``width`` characters, with an ellipsis."""
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > width // 2 else cut).rstrip(" ,;:") + "…"


def end_state(done: bool, stop_reason: str | None) -> str:
    """``running``, ``stopped``, ``failed (<reason>)`` or ``finished (<reason>)``: one
    wording for every front end."""
    if not done:
        return "running"
    reason = str(stop_reason or "")
    if reason == "stopped":
        return "stopped"
    if reason.startswith(("error", "cluster_lost")):  # the search itself failed
        return f"failed ({reason})"
    return f"finished ({reason})" if reason else "finished"


def _counts(result: "SearchResult") -> str:
    done = [n for n in result.nodes if n.result is not None]
    failed = [n for n in done if not n.ok]
    state = end_state(True, result.stop_reason) if result.stop_reason else ""
    return f"{len(done)} evaluated, {len(failed)} failed" + (f", {state}" if state else "")


def fit_png(result: Result, task: "Task | None" = None, node: "Node | None" = None) -> bytes | None:
    """PNG of the best (or given) node's predictions on the test split; None if unavailable.

    Drawn from the test predictions the driver received from the node's sandboxed job and
    kept next to its weights: no candidate code runs here (issue 15 item 3), and nothing is
    retrained. Raises when those predictions or the task are unavailable.
    """
    import numpy as np

    result = snapshot(result)
    node = node if node is not None else result.best
    if node is None:
        return None
    from matplotlib.figure import Figure

    task = task if task is not None else result.task
    saved = predictions_file(RunDir(Path(result.run_dir).resolve()).node_weights(node))
    with np.load(saved, allow_pickle=False) as arrays:
        pred = np.asarray(arrays["test"], dtype=np.float64)
    fig = Figure(figsize=(9, 4.5), dpi=80)
    plot_fit(None, task, "test", figure=fig, title=f"best node {node.id}", predictions=pred)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def summary_html(result: Result, task: "Task | None" = None, top: int = 10,
                 plot: bool = True) -> str:
    """HTML: heading, counts, table of the top nodes and (if possible) the best fit plot."""
    result = snapshot(result)
    rows = []
    best = result.best
    from .nodeview import rmse_unit

    unit = rmse_unit(task)  # only a task at hand: rebuilding one for a unit is not worth it
    left, right = ' style="text-align:left"', ' style="text-align:right"'
    for n in top_nodes(result, top):
        r = n.result
        assert r is not None  # top nodes evaluated ok
        mark = " &#9733;" if best is not None and n.id == best.id else ""
        change = n.change or ""
        texts = (html.escape(n.strategy or ""), html.escape(n.operator),
                 f'<span title="{html.escape(change)}">{html.escape(shorten(change, 120))}</span>')
        numbers = (_fmt(r.train.rmse), _fmt(r.val.rmse), _fmt(r.test.rmse))
        rows.append(f"<tr><td>{n.id}{mark}</td><td>{n.branch}</td>"  # ids: numbers, right
                    + "".join(f"<td{left}>{c}</td>" for c in texts)
                    + "".join(f"<td{right}>{c}</td>" for c in numbers) + "</tr>")
    units = f" ({html.escape(unit)})" if unit else ""
    head = "<th>node</th><th>branch</th>" \
        + "".join(f"<th{left}>{h}</th>" for h in ("strategy", "operator", "change")) \
        + "".join(f"<th{right}>{h} RMSE{units}</th>" for h in ("train", "val", "test"))
    parts = [
        '<div class="nimm-summary">',
        f"<h4>nimm search {html.escape(str(result.run_id))} · {html.escape(result.task_name)}</h4>",
        f"<p>{html.escape(_counts(result))}. Ranked by validation RMSE; "
        "test RMSE is reported, never used for selection.</p>",
    ]
    if rows:
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    else:
        parts.append("<p>No candidate evaluated successfully.</p>")
    if plot and best is not None:
        try:
            png = fit_png(result, task, best)
        except Exception as exc:  # the table is still worth showing
            parts.append(f"<p>fit plot unavailable: {html.escape(type(exc).__name__)}: "
                         f"{html.escape(str(exc)[:200])}</p>")
        else:
            if png:
                b64 = base64.b64encode(png).decode("ascii")
                parts.append(f'<img alt="best model fit on the test split" src="data:image/png;base64,{b64}"/>')
    parts.append("</div>")
    return "\n".join(parts)


def summary_text(result: Result, top: int = 10) -> str:
    """Plain-text version of the summary table (terminal IPython, ``%nimm status`` of a run dir)."""
    result = snapshot(result)
    lines = [f"nimm search {result.run_id} · {result.task_name}: {_counts(result)}"]
    nodes = top_nodes(result, top)
    if not nodes:
        lines.append("no candidate evaluated successfully")
        return "\n".join(lines)
    lines.append(f"{'node':>5} {'branch':>6} {'operator':<8} {'train':>10} {'val':>10} {'test':>10}  change")
    for n in nodes:
        r = n.result
        assert r is not None
        lines.append(f"{n.id:>5} {n.branch:>6} {n.operator:<8} {_fmt(r.train.rmse):>10} "
                     f"{_fmt(r.val.rmse):>10} {_fmt(r.test.rmse):>10}  {shorten(n.change or '', 60)}")
    return "\n".join(lines)
