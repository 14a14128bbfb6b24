"""The payloads of the runner's search events (``node_finished``, ``best_changed``,
``search_finished``): what the journal stores and the widget and CLI read, built in one place.

JSON has no NaN: every non-finite float in a payload becomes None (:func:`finite`).
"""
from __future__ import annotations

import math
from typing import Any

from .node import Node
from .tree import Tree


def finite(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with its non-finite float values as None."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in data.items()}


def node_finished(node: Node) -> dict[str, Any]:
    r = node.result
    return {
        "node": node.id, "branch": node.branch, "state": node.state, "status": node.status,
        "val": node.rmse("val"), "train": node.rmse("train"), "test": node.rmse("test"),
        "val_score": node.score if node.ok else None, "message": node.message[:500],
        "wall_time": r.wall_time if r is not None else 0.0,
    }


def best_changed(best: Node) -> dict[str, Any]:
    return {"node": best.id, "branch": best.branch, "val": best.rmse("val"),
            "val_score": best.score, "test": best.rmse("test")}


def search_finished(reason: str, status: str, tree: Tree, *, tokens: int, cost: float,
                    elapsed: float) -> dict[str, Any]:
    best = tree.answer()
    return {
        "reason": reason, "status": status, "best": best.id if best else None,
        "best_val": best.rmse("val") if best else None,
        "best_test": best.rmse("test") if best else None,
        "counts": tree.counts(), "tokens": tokens, "cost": cost, "elapsed": elapsed,
    }
