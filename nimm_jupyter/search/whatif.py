"""A what-if on a searched node, computed in the sandbox: one trajectory of a split under a
changed input schedule, forecast by the node's trained model (and the fitted prior's), without
running candidate code in the caller (the notebook's kernel or the CLI's driver).

The question becomes a small task: the chosen trajectory as observed (its validation and test
splits, so the driver can score the observed forecast) and the changed schedule as a scenario
(no targets the model could know). A jailed job loads the node's saved weights into its code,
predicts both, and the driver hands the arrays back (:attr:`EvalRequest.predict_with`).
"""
from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..execution.base import EVAL_TIMEOUT_S, EvalRequest
from ..modeling.config import TrainConfig
from ..tasks.base import Scenario, Split, Task
from ..tasks.schedules import ScheduleError, WhatIfCase

if TYPE_CHECKING:
    import pandas as pd

    from .node import Node

__all__ = ["WhatIfError", "what_if_task", "sandbox_what_if", "WHAT_IF"]

WHAT_IF = "what_if"  # the scenario holding the changed schedule


class WhatIfError(ValueError):
    """A what-if cannot be asked (the message says what is wrong and how to ask instead)."""


def what_if_task(task: Task, trajectory: int, split: str, changed: np.ndarray) -> Task:
    """``task`` reduced to one trajectory of ``split`` (as its validation and test splits)
    and, as scenario :data:`WHAT_IF`, the same trajectory under the ``changed`` inputs. The
    training split stays: it sets the model's normalisation (``task.spec()``)."""
    data = task.split(split)
    keep = slice(int(trajectory), int(trajectory) + 1)
    one = Split(inputs=np.asarray(data.inputs)[keep], targets=np.asarray(data.targets)[keep])
    changed_split = Split(inputs=np.asarray(changed, dtype=np.float64)[None],
                          targets=one.targets.copy())
    return dataclasses.replace(task, val=one, test=one, scenarios={
        WHAT_IF: Scenario(split=changed_split, description="the what-if schedule")})


def _predictions(task: Task, node: "Node", weights: Path, train: dict[str, Any],
                 timeout: float) -> dict[str, np.ndarray]:
    from ..execution.oneshot import run_one

    config = TrainConfig(dtype=str((train or {}).get("dtype", "float32")))
    request = EvalRequest(job_id=f"whatif-{node.id}-{uuid.uuid4().hex[:8]}", source=node.code,
                          task=task, config=config, timeout=timeout,
                          predict_with=weights.read_bytes())
    result = run_one(request)
    if not result.ok:
        raise WhatIfError(f"node {node.id}'s what-if failed ({result.status.value}): "
                          f"{result.message}")
    return result.predictions


def _node(run: Any, node_id: Any) -> "Node":
    try:
        return run.node(int(node_id))
    except (KeyError, TypeError, ValueError):
        raise WhatIfError(f"run {run.run_id} has no node {node_id!r}; its nodes are "
                          f"{', '.join(str(n.id) for n in run.nodes)}") from None


def sandbox_what_if(run: Any, node_id: int, trajectory: int = 0, split: str = "test",
                    *, scale: Mapping[str, float] | None = None,
                    shift: Mapping[str, int] | None = None, zero: Sequence[str] = (),
                    inputs: Any = None, against: int | str | None = "prior",
                    timeout: float = min(EVAL_TIMEOUT_S, 120.0)) -> "pd.DataFrame":
    """Forecast trajectory ``trajectory`` of ``split`` with node ``node_id``'s trained model
    (``run``: the run's :class:`~.results.SearchResult`, which calls this as ``what_if``)
    under its observed input schedule and under a changed one (``scale``/``shift``/``zero``/
    ``inputs`` as :func:`~nimm_jupyter.tasks.schedules.changed_schedule`), in jailed jobs.

    Returns the frame :func:`nimm_jupyter.export.whatif.what_if` returns (``time``, each input
    and ``<input> what-if``, each target with ``<target> model`` / ``<target> model what-if``),
    plus ``<target> against`` / ``<target> against what-if`` for another node: ``"prior"``
    (the default) is the fitted user prior the tree is rooted in, when the run has one; a
    node id names any node; None compares with nothing. Raises :class:`WhatIfError`.
    """
    from .prior_root import prior_node

    task = run.task
    node = _node(run, node_id)
    try:
        case = WhatIfCase.make(task, trajectory, split, scale=scale, shift=shift, zero=zero,
                               inputs=inputs)
    except ScheduleError as exc:
        raise WhatIfError(str(exc)) from None
    small = what_if_task(task, int(trajectory), split, case.changed)
    models = {"model": node}
    other = prior_node(run.nodes) if against == "prior" else (
        None if against is None else _node(run, against))
    if other is not None and other.id != node.id:
        models["against"] = other
    forecasts: dict[str, np.ndarray] = {}
    for label, m in models.items():
        if not m.ok or not m.result.weights_path:
            raise WhatIfError(f"node {m.id} has no trained weights (status {m.status})")
        preds = _predictions(small, m, run.rundir.node_weights(m),
                             run.settings.get("train") or {}, timeout)
        forecasts[label] = preds["val"][0]
        forecasts[f"{label} what-if"] = preds[WHAT_IF][0]
    return case.frame(forecasts)
