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
   queued, trained (its coefficients refitted) and scored like any node. An LLM proposer
   is first shown the parent, a short view of the table (:func:`table_text`) and the sparse
   fit (the ``distill`` prompt) and may write the closed form itself, with a physical
   reading; when it writes none, the sparse fit's child stands.

What the node reports goes into ``proposer_meta``: ``formula`` (``text``, ``latex``: the
sparse fit's law, the child's starting point), ``laws`` (its terms, coefficients and error
on the table), ``distilled_from`` and the network parameters the law removed.
"""
from __future__ import annotations

import uuid

import numpy as np
from pathlib import Path
from typing import Any

from ..distill import (distilled_source, fit_law, formula_latex, formula_text, laws_from_meta,
                       laws_to_meta, refitted)
from ..execution.base import EVAL_TIMEOUT_S, EvalRequest
from ..execution.local import LocalExecutor
from ..execution.oneshot import run_one
from ..modeling.config import TrainConfig
from ..proposers.base import NodeView, Proposal, ProposalContext, Proposer
from ..tasks.base import Task
from .node import Node

__all__ = ["distill_proposal", "distill_report", "fitted_formula", "table_text",
           "MAX_WEIGHTS_BYTES"]

MAX_WEIGHTS_BYTES = 64 << 20  # a state_dict larger than this is no small hybrid's
TABLE_ROWS = 24  # rows of each network's table a proposer is shown


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


def table_text(samples: dict[str, tuple[np.ndarray, np.ndarray]], rows: int = TABLE_ROWS) -> str:
    """The sampled tables as short text for a prompt: per network its column ranges and
    ``rows`` rows spread evenly over the range of its first input."""
    out = []
    for path, (x, y) in samples.items():
        order = np.argsort(x[:, 0], kind="stable")
        pick = order[np.linspace(0, len(order) - 1, min(rows, len(order))).round().astype(int)]
        names = [f"x{i}" for i in range(x.shape[1])] + [f"y{k}" for k in range(y.shape[1])]
        both = np.concatenate([x, y], axis=1)
        ranges = ", ".join(f"{n} in [{both[:, j].min():.4g}, {both[:, j].max():.4g}]"
                           for j, n in enumerate(names))
        lines = [f"network `{path}`: {len(x)} rows; {ranges}", "| " + " | ".join(names) + " |",
                 "|" + "---|" * len(names)]
        lines += ["| " + " | ".join(f"{v:.4g}" for v in both[i]) + " |" for i in pick]
        out.append("\n".join(lines))
    return "\n\n".join(out)


def _llm_child(proposer: Proposer, ctx: ProposalContext, view: NodeView, samples: dict,
               text: str, laws: dict, sparse: Proposal) -> Proposal:
    """The proposer's closed form in place of the sparse fit's child, when it writes one;
    else the sparse child, carrying the call's cost and why it was not used."""
    errors = "; ".join(f"{p}: " + ", ".join(f"{e:.3g}" for e in law.errors) for p, law in laws.items())
    llm = proposer.distill(ctx, view, table_text(samples), text, errors)
    if llm is None:
        return sparse
    if not llm.code:
        sparse.meta["llm_error"] = llm.error or "no code"
        sparse.tokens_in, sparse.tokens_out, sparse.cost = llm.tokens_in, llm.tokens_out, llm.cost
        sparse.raw = llm.raw
        return sparse
    llm.meta = {**llm.meta, "law_by": proposer.name, "distilled_from": sparse.meta["distilled_from"],
                "removed_network_parameters": sparse.meta["removed_network_parameters"],
                "formula": {"text": llm.change, "latex": ""}, "sparse_fit": sparse.meta["formula"]}
    return llm


def distill_proposal(task: Task, parent: Node, weights: Path, train: TrainConfig,
                     timeout: float = EVAL_TIMEOUT_S, *, proposer: Proposer | None = None,
                     ctx: ProposalContext | None = None, view: NodeView | None = None) -> Proposal:
    """The ``distill`` child of ``parent`` (trained weights at ``weights``), or a Proposal
    with ``error`` saying why there is none (the node then fails, as a proposer's would).
    With a ``proposer`` (and its ``ctx`` and the parent's ``view``), the proposer is shown
    the table and the sparse fit and may write the closed form itself
    (:meth:`~nimm_jupyter.proposers.base.Proposer.distill`; the LLM proposers do); its
    ``formula`` is then its CHANGE line and ``sparse_fit`` the library's law."""
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
    sparse = Proposal(code=distilled_source(parent.code, laws, parent.id), change=change, meta=meta)
    if proposer is None or ctx is None or view is None:
        return sparse
    return _llm_child(proposer, ctx, view, probe.network_samples, text, laws, sparse)
