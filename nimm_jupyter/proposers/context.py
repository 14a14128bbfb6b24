"""Build the :class:`ProposalContext` a proposer sees from a :class:`Task`."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..modeling.config import TrainConfig
from ..tasks.base import Task
from .base import ProposalContext, TrainSeries
from .dataview import data_view

_DOC = Path(__file__).resolve().parents[1] / "candidate_interface.md"


def interface_text(kind: str) -> str:
    """The candidate contract for one task kind (the text proposers must follow)."""
    text = _DOC.read_text(encoding="utf-8")
    common, _, rest = text.partition("## Trajectory forecasting")
    traj, _, tab = rest.partition("## Tabular regression")
    tab, _, tail = tab.partition("## Fitted parameters")
    body = "## Trajectory forecasting" + traj if kind == "trajectory" else "## Tabular regression" + tab
    return (common + body + "## Fitted parameters" + tail).strip()


def context_for(task: Task, user_notes: str = "", seed_code: str | None = None,
                train: TrainConfig | None = None) -> ProposalContext:
    """Everything a proposer may know about ``task`` (never its test split); ``train`` is
    how candidates will be trained (default settings when not given; a search sets its own)."""
    return ProposalContext(
        task_name=task.name,
        kind=task.kind.value,
        description=task.description,
        user_notes=user_notes,
        input_names=task.input_names,
        target_names=task.target_names,
        units={v.name: v.unit for v in [*task.inputs, *task.targets]},
        sizes={"train": len(task.train), "val": len(task.val)},
        prior_code=task.prior_code,
        prior_omits=task.prior_omits,
        interface=interface_text(task.kind.value),
        family=task.family,
        seed_code=seed_code,
        extras={"constants": sorted(task.constants), "context": task.context},
        training=(train or TrainConfig()).describe(),
        data_view=data_view(task),
        train_series=_train_series(task),
    )


def _train_series(task: Task) -> TrainSeries | None:
    if task.kind.value != "trajectory":
        return None
    states = np.asarray(task.train.targets, dtype=np.float64)
    time = task.time if task.time is not None else np.arange(states.shape[1])
    return TrainSeries(time=np.asarray(time, dtype=np.float64), states=states,
                       inputs=np.asarray(task.train.inputs, dtype=np.float64),
                       context=int(task.context))
