"""Static end-of-search summary: an HTML table of the top nodes and a PNG of the best fit.

Shown in the search cell's output when a search ends, so a saved notebook stays readable
without widget state. Rendering never touches pyplot (safe off the main thread).
"""
from __future__ import annotations

import base64
import html
import io
import math
from typing import Any

from ..export import _fmt as _fmt_number
from ..export import build_task, load_node_model, plot_fit


def _nodes(result: Any) -> list[Any]:
    nodes = getattr(result, "nodes", None) or []
    if isinstance(nodes, dict):
        nodes = list(nodes.values())
    return list(nodes)


def _val(node: Any) -> float:
    r = getattr(node, "result", None)
    if r is None or not r.ok:
        return math.inf
    v = float(r.val.rmse)
    return v if math.isfinite(v) else math.inf


def top_nodes(result: Any, top: int = 10) -> list[Any]:
    """The ``top`` successful nodes by validation RMSE."""
    ok = [n for n in _nodes(result) if _val(n) < math.inf]
    return sorted(ok, key=lambda n: (_val(n), n.id))[:top]


def _fmt(x: Any) -> str:
    return _fmt_number(x, 4)


def _counts(result: Any) -> str:
    nodes = _nodes(result)
    done = [n for n in nodes if getattr(n, "result", None) is not None]
    failed = [n for n in done if not n.result.ok]
    reason = getattr(result, "stop_reason", None) or ""
    return (f"{len(done)} evaluated, {len(failed)} failed"
            + (f", stopped: {reason}" if reason else ""))


def _task_name(result: Any) -> str:
    return str(getattr(result, "task_name", None) or getattr(getattr(result, "task", None), "name", ""))


def fit_png(result: Any, task: Any = None, node: Any = None) -> bytes | None:
    """PNG of the best (or given) node's predictions on the test split; None if unavailable."""
    node = node if node is not None else getattr(result, "best", None)
    if node is None:
        return None
    from matplotlib.figure import Figure

    task = task if task is not None else build_task(result)
    model = load_node_model(result, node, task)
    fig = Figure(figsize=(9, 4.5), dpi=80)
    plot_fit(model, task, "test", figure=fig, title=f"best node {node.id}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def summary_html(result: Any, task: Any = None, top: int = 10, plot: bool = True) -> str:
    """HTML: heading, counts, table of the top nodes and (if possible) the best fit plot."""
    rows = []
    best = getattr(result, "best", None)
    for n in top_nodes(result, top):
        r = n.result
        mark = " &#9733;" if best is not None and n.id == best.id else ""
        rows.append(
            "<tr>" + "".join(f"<td>{c}</td>" for c in (
                f"{n.id}{mark}", n.branch, html.escape(str(getattr(n, "strategy", "") or "")),
                html.escape(n.operator), html.escape((n.change or "")[:120]),
                _fmt(r.train.rmse), _fmt(r.val.rmse), _fmt(r.test.rmse),
            )) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("node", "branch", "strategy", "operator", "change",
                                                  "train RMSE", "val RMSE", "test RMSE"))
    parts = [
        '<div class="nimm-summary">',
        f"<h4>nimm search {html.escape(str(result.run_id))} · {html.escape(_task_name(result))}</h4>",
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


def summary_text(result: Any, top: int = 10) -> str:
    """Plain-text version of the summary table (terminal IPython, ``%nimm status`` of a run dir)."""
    lines = [f"nimm search {result.run_id} · {_task_name(result)}: {_counts(result)}"]
    nodes = top_nodes(result, top)
    if not nodes:
        lines.append("no candidate evaluated successfully")
        return "\n".join(lines)
    lines.append(f"{'node':>5} {'branch':>6} {'operator':<8} {'train':>10} {'val':>10} {'test':>10}  change")
    for n in nodes:
        r = n.result
        lines.append(f"{n.id:>5} {n.branch:>6} {n.operator:<8} {_fmt(r.train.rmse):>10} "
                     f"{_fmt(r.val.rmse):>10} {_fmt(r.test.rmse):>10}  {(n.change or '')[:60]}")
    return "\n".join(lines)
