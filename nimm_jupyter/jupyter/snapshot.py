"""The static snapshot of a search view: the branch tree as inline SVG and a ranked table,
as HTML that needs no JavaScript. It rides in the widget's display bundle (``text/html``)
so nbconvert HTML, GitHub and front ends without a widget manager show the search."""
from __future__ import annotations

import html
import math
import textwrap
from typing import Any, Mapping

DX, DY, PAD, HEADER = 30, 40, 24, 34  # node spacing and margins of the tree, in px
# Lane titles wrap inside their lane (a static SVG has no other way to show a long one):
# up to LABEL_CHARS characters a line at about CHAR_W px each, LABEL_LINES lines; a title
# longer than that ends in an ellipsis and is written out in full in a key below the tree.
LABEL_CHARS, LABEL_LINES, CHAR_W, LINE_H = 24, 3, 6.0, 12
_STATE_FILL = {"failed": "#ffffff", "cancelled": "#bdbdbd", "pending": "#e0e0e0",
               "running": "#90caf9"}


def _fmt(x: Any) -> str:
    if x is None:
        return "–"
    x = float(x)
    if not math.isfinite(x):
        return "–"
    return f"{x:.3e}" if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3) else f"{x:.4g}"


def _ramp(t: float) -> str:
    """Good (t=0, blue-green) to poor (t=1, orange): readable on light and dark paper."""
    lo, hi = (0x1b, 0x9e, 0x77), (0xd9, 0x5f, 0x02)
    c = [round(a + (b - a) * min(1.0, max(0.0, t))) for a, b in zip(lo, hi)]
    return "#%02x%02x%02x" % tuple(c)


def layout(nodes: list[Mapping[str, Any]], min_width: Mapping[int, float] | None = None,
           header: float = HEADER
           ) -> tuple[dict[int, tuple[float, float]], list[tuple[int, float]], float, float]:
    """Positions of the nodes (lane per branch, row per depth), lane x offsets, width, height.

    ``min_width`` (px per branch) leaves room for lane titles; ``header`` is the height above
    the first row of nodes."""
    by_id = {int(n["id"]): n for n in nodes}
    depth: dict[int, int] = {}

    def depth_of(nid: int) -> int:
        chain, cur = [], nid
        while cur in by_id and cur not in depth and cur not in chain:  # walk up to a known depth
            chain.append(cur)
            parent = by_id[cur].get("parent")
            cur = int(parent) if parent is not None else -1
        base = depth[cur] + 1 if cur in depth else 0  # a root, a missing parent or a cycle
        for k in reversed(chain):
            depth[k], base = base, base + 1
        return depth[nid]

    lanes = sorted({int(n.get("branch") or 0) for n in nodes})
    slots: dict[int, int] = {}
    width: dict[int, int] = {b: 1 for b in lanes}
    counts: dict[tuple[int, int], int] = {}
    for n in sorted(nodes, key=lambda n: n["id"]):
        key = (int(n.get("branch") or 0), depth_of(int(n["id"])))
        slots[int(n["id"])] = counts.get(key, 0)
        counts[key] = slots[int(n["id"])] + 1
        width[key[0]] = max(width[key[0]], counts[key])
    lane_x, x = [], float(PAD)
    for b in lanes:
        lane_x.append((b, x))
        x += max(max(width[b], 2) * DX, (min_width or {}).get(b, 0.0)) + 16
    offset = dict(lane_x)
    pos = {nid: (offset[int(by_id[nid].get("branch") or 0)] + slots[nid] * DX + DX / 2,
                 header + depth_of(nid) * DY + 10) for nid in by_id}
    max_depth = max((depth_of(nid) for nid in by_id), default=0)
    return pos, lane_x, x + PAD - 16, header + (max_depth + 1) * DY + PAD


def lane_label(branch: int, title: str) -> tuple[list[str], bool]:
    """A lane's title as wrapped lines, and whether it had to be cut (ending in "…")."""
    words = f"{branch}: {title or f'branch {branch}'}".split()
    lines = textwrap.wrap(" ".join(words), LABEL_CHARS, break_on_hyphens=False) or [""]
    if len(lines) <= LABEL_LINES:
        return lines, False
    rest = " ".join(lines[LABEL_LINES - 1:])  # more than one line: its first, then "…"
    return lines[:LABEL_LINES - 1] + [textwrap.wrap(rest, LABEL_CHARS - 1)[0] + "…"], True


def tree_svg(nodes: list[Mapping[str, Any]], branches: list[Mapping[str, Any]],
             best_id: int | None) -> str:
    """The branch tree as an SVG element (ids on nodes, changes in tooltips)."""
    if not nodes:
        return "<p>no nodes yet</p>"
    titles = {int(b["id"]): str(b.get("strategy") or "") for b in branches}
    lanes = {b: lane_label(b, titles.get(b, ""))[0]
             for b in sorted({int(n.get("branch") or 0) for n in nodes})}
    widths = {b: max(map(len, lines)) * CHAR_W for b, lines in lanes.items()}
    pos, lane_x, W, H = layout(nodes, widths, HEADER + LINE_H * (max(map(len, lanes.values())) - 1))
    vals = [float(n["val"]) for n in nodes if n.get("val") is not None and n["val"] > 0]
    lo, hi = (math.log(min(vals)), math.log(max(vals))) if vals else (0.0, 0.0)
    out = [f'<svg class="nimm-snapshot-tree" xmlns="http://www.w3.org/2000/svg" width="{W:.0f}" '
           f'height="{H:.0f}" viewBox="0 0 {W:.0f} {H:.0f}" font-family="sans-serif" font-size="10">']
    for b, x in lane_x:
        title = titles.get(b) or f"branch {b}"
        spans = "".join(f'<tspan x="{x:.0f}" dy="{0 if i == 0 else LINE_H}">{html.escape(line)}</tspan>'
                        for i, line in enumerate(lanes[b]))
        out.append(f'<text class="nimm-snapshot-lane" y="14" font-weight="bold" '
                   f'fill="currentColor">{spans}<title>{html.escape(f"branch {b}: {title}")}'
                   '</title></text>')
    for n in nodes:
        parent = n.get("parent")
        if parent is not None and parent in pos:
            (x1, y1), (x2, y2) = pos[int(parent)], pos[int(n["id"])]
            out.append(f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" '
                       'stroke="#888" stroke-width="1.2"/>')
    for n in nodes:
        nid = int(n["id"])
        x, y = pos[nid]
        state = str(n.get("state"))
        if n.get("val") is not None and n["val"] > 0 and state == "done":
            fill = _ramp(0.0 if hi - lo < 1e-12 else (math.log(n["val"]) - lo) / (hi - lo))
        else:
            fill = _STATE_FILL.get(state, "#e0e0e0")
        tip = f"#{nid} {n.get('operator', '')} · {n.get('status', '')} · val {_fmt(n.get('val'))}"
        if n.get("change"):
            tip += f"\n{n['change']}"
        out.append(f'<g transform="translate({x:.0f},{y:.0f})"><title>{html.escape(tip)}</title>')
        if nid == best_id:
            out.append('<circle r="12" fill="none" stroke="#e6a100" stroke-width="3"/>')
        out.append(f'<circle r="8" fill="{fill}" stroke="#555" stroke-width="1.5"/>')
        if state == "failed":
            out.append('<path d="M-4,-4L4,4M4,-4L-4,4" stroke="#c00" stroke-width="2"/>')
        out.append(f'<text x="10" y="-8" fill="currentColor">{nid}</text></g>')
    out.append("</svg>")
    return "".join(out)


def lane_key(branches: list[Mapping[str, Any]]) -> str:
    """The full titles of the lanes whose label in the tree had to be cut ("" if none)."""
    cut = [(int(b["id"]), str(b.get("strategy") or "")) for b in branches
           if lane_label(int(b["id"]), str(b.get("strategy") or ""))[1]]
    if not cut:
        return ""
    items = " · ".join(f"<b>{b}</b>: {html.escape(t)}" for b, t in cut)
    return f'<p class="nimm-snapshot-lanes">lanes: {items}</p>'


def ranked_rows(nodes: list[Mapping[str, Any]], top: int = 10) -> list[Mapping[str, Any]]:
    """The ``top`` evaluated nodes by validation RMSE."""
    ok = [n for n in nodes if n.get("state") == "done" and n.get("val") is not None]
    return sorted(ok, key=lambda n: (n["val"], n["id"]))[:top]


def view_state(search: Any, rows: Mapping[int, Mapping[str, Any]], best_id: int | None,
               counters: Mapping[str, Any], end_state: str, unit: str) -> dict[str, Any]:
    """What :func:`snapshot_html` shows, from the tree rows a view keeps of ``search``."""
    from .nodeview import branch_rows
    from .runs import resume_command, task_name

    return {"run_id": str(search.run_id), "task_name": task_name(search),
            "unit": unit, "nodes": [dict(rows[k]) for k in sorted(rows)],
            "branches": branch_rows(rows.values()), "best_id": best_id,
            "counters": dict(counters), "end_state": end_state, "run_dir": str(search.run_dir),
            "resume": resume_command(search.run_dir)}


def snapshot_html(state: Mapping[str, Any]) -> str:
    """HTML of the whole view: heading, progress line, tree, legend, ranked table."""
    unit = f" ({html.escape(state['unit'])})" if state.get("unit") else ""
    c = state.get("counters") or {}
    budget = f"/{c['budget']}" if c.get("budget") else ""
    line = (f"{state.get('end_state', '')} · {c.get('evaluated', 0)}{budget} evaluated, "
            f"{c.get('failed', 0)} failed, {c.get('running', 0)} running")
    rows = []
    for n in ranked_rows(state.get("nodes") or []):
        star = " ★" if n["id"] == state.get("best_id") else ""
        change = html.escape(str(n.get("change") or ""))
        rows.append(f"<tr><td>{n['id']}{star}</td><td>{n.get('branch')}</td>"
                    f"<td>{html.escape(str(n.get('operator') or ''))}</td>"
                    f'<td style="text-align:left;max-width:36em;overflow:hidden;'
                    f'text-overflow:ellipsis;white-space:nowrap" title="{change}">{change}</td>'
                    f'<td style="text-align:right">{_fmt(n.get("val"))}</td>'
                    f'<td style="text-align:right">{_fmt(n.get("train"))}</td></tr>')
    table = ("<table><thead><tr><th>node</th><th>branch</th><th>operator</th>"
             f'<th style="text-align:left">change</th><th>val RMSE{unit}</th>'
             f"<th>train RMSE{unit}</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
             if rows else "<p>No candidate evaluated successfully yet.</p>")
    resume = (f"<p>run dir <code>{html.escape(state.get('run_dir', ''))}</code> · continue with "
              f"<code>{html.escape(state.get('resume', ''))}</code></p>" if state.get("run_dir") else "")
    return "\n".join([
        '<div class="nimm-snapshot">',
        f"<h4>nimm search {html.escape(str(state.get('run_id', '')))} · "
        f"{html.escape(str(state.get('task_name', '')))} (static view)</h4>",
        f"<p>{html.escape(line)}</p>",
        tree_svg(state.get("nodes") or [], state.get("branches") or [], state.get("best_id")),
        lane_key(state.get("branches") or []),
        "<p>fill: validation RMSE, blue-green = lower (log scale) · white with ✕: failed · "
        "grey: cancelled or not evaluated · gold ring: best · number: node id</p>",
        table, resume, "</div>"])
