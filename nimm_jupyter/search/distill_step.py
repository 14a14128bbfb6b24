"""The ``distill`` operator: a child of a trained hybrid whose networks became laws.

Three steps, each on its own side of the boundary:

1. **probe** (jailed): a job loads the parent's saved weights into the parent's code and
   returns its networks' inputs and outputs on the training split
   (:mod:`nimm_jupyter.modeling.network_probe`). It runs on a private one-worker
   :class:`~nimm_jupyter.execution.local.LocalExecutor` because this step runs in the
   runner's proposer thread (as an LLM call does), while the search's own executor belongs
   to the driver thread and its slots to node evaluations; a probe trains nothing and takes
   about as long as the fork server's start.
2. **sparse fit** (driver, numbers only): :func:`nimm_jupyter.distill.fit_law` per network.
3. **rewrite** (text): :func:`nimm_jupyter.distill.distilled_source`; the child is then
   queued, trained (its coefficients refitted) and scored like any node.

What the node reports goes into ``proposer_meta``: ``formula`` (``text``, ``latex``: the
sparse fit's law, the child's starting point), ``laws`` (its terms, coefficients and error
on the table), ``distilled_from`` and the network parameters the law removed.
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from ..distill import (distilled_source, fit_law, formula_latex, formula_text, laws_from_meta,
                       laws_to_meta, refitted)
from ..execution.base import EVAL_TIMEOUT_S, EvalRequest
from ..execution.local import LocalExecutor, run_one
from ..modeling.config import TrainConfig
from ..proposers.base import Proposal
from ..tasks.base import Task
from .node import Node

__all__ = ["distill_proposal", "distill_report", "fitted_formula", "has_network",
           "MAX_WEIGHTS_BYTES"]

MAX_WEIGHTS_BYTES = 64 << 20  # a state_dict larger than this is no small hybrid's


def has_network(node: Node) -> bool:
    """Whether ``node`` trained ok with network parameters (what a distill child removes)."""
    return node.ok and node.result is not None and node.result.n_network_parameters > 0


def fitted_formula(node: Node) -> dict[str, str] | None:
    """A distilled node's law with its trained coefficients (``text``, ``latex``); None
    for other nodes and for one that did not train ok."""
    laws = laws_from_meta((node.proposer_meta or {}).get("laws") or {})
    if node.operator != "distill" or not laws or not node.ok or node.result is None:
        return None
    fitted = refitted(laws, node.result.parameters)
    return {"text": formula_text(fitted), "latex": formula_latex(fitted)}


def distill_report(node: Node, parent: Node | None) -> dict[str, Any]:
    """What ``nimm show --json`` adds to a node's row: ``n_network_parameters`` for every
    node; for a distilled one also ``formula`` (``text``, ``latex``: the sparse fit's law),
    ``formula_fitted`` (the same law with its trained coefficients), ``distilled_from``, the
    network parameters it removed and its validation RMSE against its neural parent's
    (``val_ratio`` < 1: the law is better)."""
    r = node.result
    row: dict[str, Any] = {"n_network_parameters": r.n_network_parameters if r is not None else None}
    meta = node.proposer_meta or {}
    if node.operator != "distill":
        return row
    row["formula"] = meta.get("formula")
    row["formula_fitted"] = fitted_formula(node)
    row["distilled_from"] = meta.get("distilled_from")
    row["removed_network_parameters"] = meta.get("removed_network_parameters")
    val, parent_val = node.rmse("val"), parent.rmse("val") if parent is not None else float("nan")
    row["vs_neural_parent"] = {"val_rmse": val, "parent_val_rmse": parent_val,
                               "val_ratio": val / parent_val if parent_val else float("nan")}
    return row


def distill_proposal(task: Task, parent: Node, weights: Path, train: TrainConfig,
                     timeout: float = EVAL_TIMEOUT_S) -> Proposal:
    """The ``distill`` child of ``parent`` (trained weights at ``weights``), or a Proposal
    with ``error`` saying why there is none (the node then fails, as a proposer's would)."""
    def failed(why: str) -> Proposal:
        return Proposal(code=None, change="distill the network into a closed-form law", error=why)

    try:
        state = weights.read_bytes()
    except OSError as exc:
        return failed(f"the parent's trained weights are not readable: {exc}")
    if len(state) > MAX_WEIGHTS_BYTES:
        return failed(f"the parent's weights file is over {MAX_WEIGHTS_BYTES >> 20} MiB")
    config = TrainConfig(dtype=train.dtype, seed=train.seed)
    request = EvalRequest(job_id=f"probe-{parent.id}-{uuid.uuid4().hex[:8]}", source=parent.code,
                          task=task, config=config, timeout=min(float(timeout), 300.0),
                          network_probe=state)
    with LocalExecutor(workers=1) as executor:
        probe = run_one(request, executor)
    if not probe.ok:
        return failed(f"sampling the parent's networks failed ({probe.status.value}): "
                      f"{probe.message}")
    if not probe.network_samples:
        return failed("the parent calls no blocks.mlp network on the training data")
    laws = {path: fit_law(x, y) for path, (x, y) in probe.network_samples.items()}
    text, latex = formula_text(laws), formula_latex(laws)
    removed = parent.result.n_network_parameters if parent.result is not None else 0
    meta = {
        "formula": {"text": text, "latex": latex},
        "distilled_from": parent.id,
        "removed_network_parameters": int(removed),
        "laws": laws_to_meta(laws),  # the sparse fit: terms, starting coefficients, error
    }
    change = (f"distil node {parent.id}'s network(s) ({removed} parameters) into "
              f"{sum(law.n_terms for law in laws.values())} fitted terms: "
              + "; ".join(text.splitlines()))
    return Proposal(code=distilled_source(parent.code, laws, parent.id), change=change, meta=meta)
