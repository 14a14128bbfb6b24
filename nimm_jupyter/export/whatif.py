"""What-if on an exported model: take one trajectory of a split, change its input schedule
(scale an input, move it in time, switch it off, or give a whole new schedule) and compare
the model's forecast under the changed schedule with its forecast under the observed one,
and with another model's (typically the fitted prior's) under the same change.

It runs the model in the kernel, as every exported cell does once the user runs it; the
search itself never does (issue 20: interventions are the user's question, not a score).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..tasks import schedules
from .errors import ExportError
from .forecast import _tensor_maker

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from matplotlib.figure import Figure

    from ..tasks.base import Task

__all__ = ["changed_schedule", "what_if", "plot_what_if"]


def changed_schedule(task: "Task", u: np.ndarray, *, scale: Mapping[str, float] | None = None,
                     shift: Mapping[str, int] | None = None, zero: Sequence[str] = (),
                     inputs: Any = None) -> np.ndarray:
    """``u`` with :func:`nimm_jupyter.tasks.schedules.changed_schedule`'s changes applied;
    raises :class:`ExportError` naming an unknown input or a bad shape."""
    try:
        return schedules.changed_schedule(task.input_names, u, scale=scale, shift=shift,
                                          zero=zero, inputs=inputs,
                                          task_name=f"task {task.name!r}")
    except schedules.ScheduleError as exc:
        raise ExportError(str(exc)) from None


def _rollout(model: "torch.nn.Module", y_context: np.ndarray, u: np.ndarray,
             t: np.ndarray) -> np.ndarray:
    import torch

    f32 = _tensor_maker(model)
    model.eval()
    with torch.no_grad():
        out = model(f32(y_context)[None], f32(u)[None], f32(t))
    return out.double().cpu().numpy()[0]


def what_if(model: "torch.nn.Module", task: "Task", trajectory: int = 0, split: str = "test",
            *, scale: Mapping[str, float] | None = None, shift: Mapping[str, int] | None = None,
            zero: Sequence[str] = (), inputs: Any = None,
            against: "torch.nn.Module | None" = None) -> "pd.DataFrame":
    """Forecast trajectory ``trajectory`` of ``split`` under its observed input schedule and
    under a changed one (:func:`changed_schedule`'s ``scale``/``shift``/``zero``/``inputs``).

    Returns one row per time step: ``time``, each input as observed and ``<input> what-if``,
    each target as observed (``<target>``), the model's forecast (``<target> model``) and its
    what-if forecast (``<target> model what-if``); with ``against`` (e.g. the fitted prior's
    exported model) also ``<target> against`` and ``<target> against what-if``. Forecast
    columns are NaN on the context steps the model is given.
    """
    try:
        case = schedules.WhatIfCase.make(task, trajectory, split, scale=scale, shift=shift,
                                         zero=zero, inputs=inputs)
    except schedules.ScheduleError as exc:
        raise ExportError(str(exc)) from None
    C = int(task.context)
    runs = {"model": model} | ({"against": against} if against is not None else {})
    forecasts = {}
    for label, m in runs.items():  # the model is called exactly as the harness calls it
        forecasts[label] = _rollout(m, case.y[:C], case.u, case.t)
        forecasts[f"{label} what-if"] = _rollout(m, case.y[:C], case.changed, case.t)
    return case.frame(forecasts)


def plot_what_if(frame: "pd.DataFrame", task: "Task", *, figure: "Figure | None" = None,
                 title: str = "") -> "Figure":
    """One panel per target (observed points, forecasts under the observed and the changed
    schedule) and one for the inputs (observed vs changed), from a :func:`what_if` frame."""
    from matplotlib.figure import Figure

    fig = figure if figure is not None else Figure(figsize=(10, 3 * (len(task.target_names) + 1)))
    axes = fig.subplots(len(task.target_names) + 1, 1, squeeze=False, sharex=True)[:, 0]
    t = frame["time"].to_numpy()
    for ax, v in zip(axes, task.targets):
        ax.plot(t, frame[v.name], "k.", ms=3, label="observed")
        for label, style in (("model", "C0-"), ("model what-if", "C0--"),
                             ("against", "C1-"), ("against what-if", "C1--")):
            col = f"{v.name} {label}"
            if col in frame:
                ax.plot(t, frame[col], style, label=label)
        ax.set_ylabel(f"{v.name} [{v.unit}]" if v.unit else v.name)
        ax.legend(fontsize=8)
    for name in task.input_names:
        axes[-1].step(t, frame[name], where="post", label=f"{name} observed")
        axes[-1].step(t, frame[f"{name} what-if"], where="post", ls="--", label=f"{name} what-if")
    axes[-1].set_ylabel("inputs")
    axes[-1].set_xlabel("time")
    axes[-1].legend(fontsize=8)
    if title:
        axes[0].set_title(title)
    return fig
