"""JSON views of search nodes for the widget and the static snapshot: one row per node for
the tree, and the full panel (code, diff against the parent, metrics, parameters, notes) for
a selected node. Test scores never appear here: they are for the end of a search."""
from __future__ import annotations

import difflib
import math
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from ..proposers.base import Strategy

if TYPE_CHECKING:
    from ..search.node import Node

MAX_CURVE_POINTS = 200  # per node; older points are thinned, never the latest one
MAX_DIFF_LINES = 400
# EvalResult.to_dict() keys the panel shows in its own sections; any other key (notes,
# convergence flags, stop reasons a newer harness adds) is listed under "notes"
_SHOWN_RESULT_KEYS = frozenset({
    "status", "message", "train", "val", "test", "loss_curve", "parameters", "n_parameters",
    "n_network_parameters", "epochs", "wall_time", "device", "seed", "restarts", "weights_path",
    "scenarios"})  # scenarios: shown as intervention metrics
# display states beyond the node lifecycle: evaluated nodes are done/failed; a node that
# was still pending or running when its search ended is "cancelled" (resume re-runs it)
CANCELLED = "cancelled"


def finite(x: Any) -> float | None:
    """``x`` as a float, or None when it is missing or not finite (JSON has no NaN)."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def strategy_title(strategy: Strategy | dict[str, Any] | str | None) -> str:
    """A strategy's title, whichever form an event carries it in."""
    if strategy is None:
        return ""
    if isinstance(strategy, str):
        return strategy
    if isinstance(strategy, dict):
        return str(strategy.get("title", ""))
    if isinstance(strategy, Strategy):
        return strategy.title
    return str(strategy)


def empty_row(nid: int) -> dict[str, Any]:
    """The tree row of a node known only by its id (an event for an unseen node)."""
    return {"id": nid, "parent": None, "branch": 0, "operator": "", "strategy": "",
            "change": "", "state": "pending", "status": "pending", "val": None,
            "train": None, "message": ""}


def _identity(node: "Node") -> dict[str, Any]:
    """Where a node sits in the tree and what it claims to change."""
    return {"id": int(node.id), "parent": None if node.parent is None else int(node.parent),
            "branch": int(node.branch or 0), "operator": node.operator or "",
            "strategy": node.strategy or "", "change": node.change or ""}


def node_summary(node: "Node") -> dict[str, Any]:
    """The tree's row for one Node (all JSON values)."""
    res = node.result
    state = node.state
    if res is not None:
        state = "done" if node.status == "ok" else "failed"
    return {
        **_identity(node),
        "state": str(state or "pending"),
        "status": str(node.status),
        "val": finite(res.val.rmse) if res is not None else None,
        "train": finite(res.train.rmse) if res is not None else None,
        "message": node.message,
    }


def branch_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per branch: id, strategy title (its first node's), node count, best val RMSE."""
    out: dict[int, dict[str, Any]] = {}
    for n in sorted(rows, key=lambda n: n["id"]):
        b = out.setdefault(n["branch"], {"id": n["branch"], "strategy": "", "n_nodes": 0,
                                         "best_val": None})
        b["n_nodes"] += 1
        if not b["strategy"] and n["strategy"]:
            b["strategy"] = n["strategy"]
        if n["val"] is not None and (b["best_val"] is None or n["val"] < b["best_val"]):
            b["best_val"] = n["val"]
    return [out[k] for k in sorted(out)]


def mark_cancelled(rows: dict[int, dict[str, Any]]) -> None:
    """At the end of a search: nodes that never finished are shown as cancelled."""
    for row in rows.values():
        if row["state"] in ("pending", "running"):
            row["state"] = row["status"] = CANCELLED


def code_diff(parent_code: str, code: str, parent_id: int | None) -> str:
    """Unified diff of a node's code against its parent's ("" for a root)."""
    if parent_id is None or not parent_code:
        return ""
    lines = list(difflib.unified_diff(parent_code.splitlines(), code.splitlines(),
                                      f"node {parent_id}", "this node", n=2, lineterm=""))
    if len(lines) > MAX_DIFF_LINES:
        lines = lines[:MAX_DIFF_LINES] + [f"... ({len(lines) - MAX_DIFF_LINES} more lines)"]
    return "\n".join(lines) if lines else "(same code as the parent)"


def _note_value(value: Any) -> str | None:
    # A flag is shown only when raised (``untrained``, ``still_improving``) and a figure only
    # when it was measured (``grad_norm`` is NaN when training never ran).
    if value in (None, "", [], {}) or value is False:
        return None
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)[:300]
    return str(value)[:300]


def result_notes(res: Any) -> dict[str, str]:
    """Whatever an EvalResult carries beyond the standard fields, as text (by name)."""
    notes: dict[str, str] = {}
    for key, value in res.to_dict().items():
        if key in _SHOWN_RESULT_KEYS:
            continue
        if isinstance(value, dict):
            for sub, v in value.items():
                text = _note_value(v)
                if text is not None:
                    notes[f"{key}.{sub}"] = text
            continue
        text = _note_value(value)
        if text is not None:
            notes[key] = text
    return notes


def node_details(node: "Node", parent: "Node | None" = None) -> dict[str, Any]:
    """What the node panel shows for a selected node."""
    res = node.result
    d: dict[str, Any] = {
        **_identity(node),
        "code": node.code or "",
        "diff": code_diff(parent.code or "" if parent is not None else "", node.code or "",
                          None if parent is None else int(parent.id)),
        "status": str(node.status),
        "metrics": {},
        "params": {},
        "notes": {},
        "error": "",
        "tokens": int((node.tokens_in or 0) + (node.tokens_out or 0)),
        "cost": float(node.cost or 0.0),
    }
    if res is not None:
        d["metrics"] = {k: v for k, v in {
            "train_rmse": finite(res.train.rmse),
            "val_rmse": finite(res.val.rmse),
            "val_rmse_norm": finite(res.val.rmse_norm),
            "val_rmse_norm bootstrap SE": finite(res.val.rmse_norm_se),
            "epochs": int(res.epochs),
            "n_parameters": int(res.n_parameters),
            "n_network_parameters": int(res.n_network_parameters),
            "wall_time": round(float(res.wall_time), 2),
        }.items() if v is not None}
        # held-out interventions, beside the in-distribution figures (never selected on)
        d["metrics"].update({f"intervention {k}: RMSE": v for k, v in (
            (k, finite(sc.rmse)) for k, sc in res.scenarios.items()) if v is not None})
        d["params"] = {k: v for k, v in ((k, finite(v)) for k, v in res.parameters.items())
                       if v is not None}
        d["notes"] = result_notes(res)
        law = (node.proposer_meta or {}).get("formula") if node.operator == "distill" else None
        if isinstance(law, dict) and law.get("text"):  # neural -> law: the sparse fit's law
            d["notes"]["law (sparse fit; the refit starts here)"] = str(law["text"])
        d["error"] = "" if res.ok else (res.message or res.status.value)
    elif d["status"] not in ("pending", "running"):
        d["error"] = node.message
    return d


def thin(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every other point (the newest kept) once a curve is longer than the cap."""
    if len(points) <= MAX_CURVE_POINTS:
        return points
    last = points[-1]
    return points[:-1:2] + [last]


def curve_points(loss_curve: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A result's loss curve as JSON points, at most :data:`MAX_CURVE_POINTS`."""
    pts = [{"epoch": p.get("epoch"), "train": finite(p.get("train")), "val": finite(p.get("val"))}
           for p in loss_curve]
    while len(pts) > MAX_CURVE_POINTS:
        pts = thin(pts)
    return pts


def rmse_unit(task: Any) -> str:
    """The unit of an original-scale RMSE: the targets' shared unit, else ""."""
    units = {getattr(v, "unit", "") or "" for v in getattr(task, "targets", None) or []}
    return units.pop() if len(units) == 1 else ""
