"""The user's own prior as the root of a search: node 0, scored unchanged.

A search on the user's data with the user's prior (``task_from_dataframe(prior_code=...)``,
``nimm search --csv ... --seed-code``) first scores that prior as given, so every later node
can be read as better or worse than it ("vs prior"). Its branch is closed at once: the policy
grows the proposer's branches, and the prior stays the baseline (and the best model if
nothing beats it). Built-in tasks and the generic baselines of a task without a prior are
left as they were.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..modeling.scoring import one_step_key, predictions_file
from ..modeling.sensitivity import constant_of_key
from ..proposers.base import MechanismFit, Proposal, Strategy
from ..tasks.base import Task
from .rundir import RunDir

PRIOR_STRATEGY = Strategy("the prior as given",
                          "the user's mechanistic prior, fitted unchanged: the baseline", "prior")
PRIOR_NOTE = "baseline: the prior as given"


def user_prior(task: Task) -> str | None:
    """The prior code of a task built from the user's data with the user's own prior."""
    from ..tasks.dataframe import GENERIC_TABULAR_PRIOR, GENERIC_TRAJECTORY_PRIOR

    if "layout" not in task.options:  # only task_from_dataframe sets it: not a built-in task
        return None
    if task.prior_code in (GENERIC_TABULAR_PRIOR, GENERIC_TRAJECTORY_PRIOR):
        return None
    return task.prior_code


def prior_proposal(code: str) -> Proposal:
    """Node 0's proposal; ``meta["prior"]`` marks it for the CLI's "vs prior" column."""
    return Proposal(code=code, change="the prior as given (baseline)", meta={"prior": True})


def prior_node(nodes: list) -> object | None:
    """The baseline node of a finished tree (the node with ``prior`` in its meta), or None."""
    for n in nodes:
        if (getattr(n, "proposer_meta", None) or {}).get("prior"):
            return n
    return None


def prior_status(nodes: list) -> str | None:
    """The baseline node's evaluation status once it is scored (``ok``, ``contract_error``,
    ...), None before that or without a user prior."""
    root = prior_node(nodes)
    return root.result.status.value if root is not None and root.result is not None else None


def prior_weak_spots(nodes: list) -> str:
    """Where the scored prior's validation error is largest, as one line for a proposer:
    its normalised RMSE, the worst target, forecast-step range and input regime (validation
    figures only, never test); "" before the prior is scored ok or without a user prior."""
    root = prior_node(nodes)
    if root is None or not root.ok:
        return ""
    val = root.result.val
    parts = []
    for what, scores in (("target", val.per_target), ("forecast steps", val.by_horizon),
                         ("input regime", val.by_regime)):
        if scores and len(scores) > 1:
            key = max(scores, key=lambda k: scores[k])
            parts.append(f"{what} {key} ({scores[key]:.4g}"
                         + (" in original units)" if what == "target" else ")"))
    if not parts:
        return ""
    return (f"The prior (node {root.id}) has validation normalised RMSE {val.rmse_norm:.4g}; "
            "its largest errors: " + "; ".join(parts) + ".")


def _saved_fit(run_dir: Path, node) -> MechanismFit | None:
    """A node's training one-step predictions and constant sensitivities, from the file the
    driver keeps next to its weights (only those arrays: its test predictions stay here)."""
    try:
        with np.load(predictions_file(RunDir(Path(run_dir)).node_weights(node))) as saved:
            key = one_step_key("train")
            if key not in saved.files:
                return None
            sens = {name: np.array(saved[k]) for k in saved.files
                    if (name := constant_of_key(k)) is not None}
            return MechanismFit(np.array(saved[key]), sens)
    except (OSError, ValueError):
        return None


def mechanism_fits(run_dir: Path, nodes: list,
                   known: dict[int, MechanismFit] | None = None) -> dict[int, MechanismFit]:
    """``ProposalContext.fits``: the saved fit of every ok node that is the user's prior or
    that its proposer marked ``meta["mechanistic"]`` (no network), by node id; a finished
    node's file does not change, so those in ``known`` are not read again."""
    out = {}
    for n in nodes:
        meta = n.proposer_meta or {}
        if n.ok and (meta.get("mechanistic") or meta.get("prior")):
            fit = (known or {}).get(n.id) or _saved_fit(run_dir, n)
            if fit is not None:
                out[n.id] = fit
    return out


def reference_fit(nodes: list, fits: dict[int, MechanismFit]) -> MechanismFit | None:
    """The fitted mechanism a proposer ranks terms against by default
    (``ProposalContext.reference_one_step`` / ``reference_sensitivity``): the prior's once
    scored ok, else the best ok node of ``fits`` (a prior that fails can be made to run, e.g.
    clamped, and its residual then ranks the terms); None when there is none yet."""
    root = prior_node(nodes)
    if root is not None and root.ok:
        return fits.get(root.id)
    ok = [n for n in nodes if n.ok and n.id in fits]
    return fits[min(ok, key=lambda n: n.score).id] if ok else None
