"""``nimm show RUN_DIR``: every node of a run, the best model and per-branch best scores."""
from __future__ import annotations

import argparse
import json
from typing import Any

from ..cli import CLIError
from .search import summary_text


def add_parser(sub: Any) -> None:
    p = sub.add_parser("show", help="show a search's tree and best model",
                       description="Read a run directory's journal (also while it runs).")
    p.add_argument("run_dir", help="the search's run directory")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def node_usage(node: Any) -> dict[str, Any]:
    """What proposing ``node`` cost: tokens, USD and the prompt-cache split.

    ``tokens_in`` counts every prompt token (uncached + cache writes + cache reads); the
    split comes from the proposer's usage record and is None when it kept none (the offline
    grammar, runs journaled before it was recorded).
    """
    usage = (node.proposer_meta or {}).get("usage") or {}

    def known(key: str) -> int | None:
        return int(usage[key]) if isinstance(usage.get(key), (int, float)) else None

    return {
        "tokens_in": int(node.tokens_in), "tokens_out": int(node.tokens_out),
        "cost": float(node.cost),
        "uncached_input_tokens": known("input_tokens"),
        "cache_write_tokens": known("cache_creation_input_tokens"),
        "cache_read_tokens": known("cache_read_input_tokens"),
    }


def one_step_columns(node: Any) -> dict[str, Any]:
    """``<split>_rmse_one_step`` and ``<split>_per_target_one_step`` of ``node``: the
    teacher-forced one-step RMSE beside the rollout's ``<split>_rmse`` (validation and test
    through the sequential reveal, :mod:`nimm_jupyter.execution.reveal`; None for tabular
    tasks, where it is the plain RMSE, and for nodes without a result or from journals older
    than the field)."""
    out: dict[str, Any] = {}
    for s in ("train", "val", "test"):
        scores = getattr(node.result, s, None)
        out[f"{s}_rmse_one_step"] = getattr(scores, "rmse_one_step", None)
        out[f"{s}_per_target_one_step"] = getattr(scores, "per_target_one_step", None)
    return out


def scenario_columns(node: Any) -> dict[str, Any]:
    """``scenario_rmse``: the node's RMSE on each held-out intervention scenario of its task
    (empty for tasks without scenarios and nodes that did not reach ``ok``)."""
    scenarios = getattr(node.result, "scenarios", None) or {}
    return {"scenario_rmse": {k: v.rmse for k, v in scenarios.items()}}


def run(args: argparse.Namespace) -> int:
    from ..search.api import SearchError, open_run
    from ..search.distill_step import distill_report
    from ..search.results import json_safe

    try:
        result = open_run(args.run_dir)
    except SearchError as exc:
        raise CLIError(str(exc)) from None
    if args.json:
        d = result.to_dict()
        usage = {n.id: node_usage(n) for n in result.nodes}
        one_step = {n.id: one_step_columns(n) for n in result.nodes}
        for row in d["nodes"]:
            row.update(usage[row["id"]])
            row.update(json_safe(one_step[row["id"]]))
        by_id = {n.id: n for n in result.nodes}
        for n, row in zip(result.nodes, d["nodes"]):
            row.update(json_safe(scenario_columns(n)))
            row.update(json_safe(distill_report(n, by_id.get(n.parent))))
        print(json.dumps(d))
    else:
        print(summary_text(result))
    return 0
