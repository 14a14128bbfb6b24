"""Changing a trajectory's input schedule: what a what-if asks ("no chemo after day 20",
"twice the dose", "the same doses a week later"). Pure numbers on a task's input columns;
used by the sandboxed what-if of a search (:mod:`nimm_jupyter.search.whatif`) and by the
exported models' ``what_if`` (:mod:`nimm_jupyter.export.whatif`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["ScheduleError", "WhatIfCase", "changed_schedule"]


class ScheduleError(ValueError):
    """A schedule change names an unknown input or has the wrong shape (the message says)."""


def changed_schedule(input_names: Sequence[str], u: np.ndarray, *,
                     scale: Mapping[str, float] | None = None,
                     shift: Mapping[str, int] | None = None, zero: Sequence[str] = (),
                     inputs: Any = None, task_name: str = "the task") -> np.ndarray:
    """``u`` (``(T, U)``, the columns ``input_names``) with the changes applied in this
    order: ``inputs`` replaces the whole schedule (array or DataFrame with the input
    columns, ``T`` rows), ``shift`` moves an input ``k`` steps later (earlier for ``k < 0``;
    what moves past the end is dropped, the gap is 0), ``scale`` multiplies it, ``zero``
    switches it off. Raises :class:`ScheduleError` naming an unknown input or a bad shape."""
    names = list(input_names)
    out = np.array(u, dtype=np.float64, copy=True)
    if inputs is not None:
        cols = getattr(inputs, "columns", None)
        new = (inputs[names].to_numpy(dtype=np.float64) if cols is not None
               else np.asarray(inputs, dtype=np.float64))
        if new.shape != out.shape:
            raise ScheduleError(f"inputs has shape {new.shape}; this trajectory's schedule is "
                                f"{out.shape} (time steps x {', '.join(names)})")
        out = new.copy()

    def column(name: str, what: str) -> int:
        if name not in names:
            raise ScheduleError(f"{what}: {name!r} is not an input of {task_name}; its inputs "
                                f"are {', '.join(names) or '(none)'}")
        return names.index(name)

    for name, k in (shift or {}).items():
        j, k = column(name, "shift"), int(k)
        moved = np.zeros(len(out))
        if k >= 0:
            moved[k:] = out[:len(out) - k, j]
        else:
            moved[:k] = out[-k:, j]
        out[:, j] = moved
    for name, factor in (scale or {}).items():
        out[:, column(name, "scale")] *= float(factor)
    for name in zero:
        out[:, column(name, "zero")] = 0.0
    return out


@dataclass(frozen=True)
class WhatIfCase:
    """One trajectory of a split and its changed schedule: what both what-ifs (the exported
    model's, in the kernel, and the sandboxed one of a search) forecast and tabulate."""

    task: Any  # the Task
    y: np.ndarray  # (T, S) the trajectory's observed states
    u: np.ndarray  # (T', U) its observed inputs
    changed: np.ndarray  # the changed inputs, same shape
    t: np.ndarray  # the task's time grid, as the harness passes it

    @classmethod
    def make(cls, task: Any, trajectory: int, split: str, *,
             scale: Mapping[str, float] | None = None, shift: Mapping[str, int] | None = None,
             zero: Sequence[str] = (), inputs: Any = None) -> "WhatIfCase":
        """Check the question once (a trajectory task with inputs, a trajectory that exists,
        a change that changes something); raises :class:`ScheduleError` naming what is wrong."""
        if str(getattr(task.kind, "value", task.kind)) != "trajectory" or not task.input_names:
            raise ScheduleError(f"task {task.name!r} has no inputs to change (a what-if needs "
                                "a trajectory task with inputs)")
        data = task.split(split)
        n = int(np.shape(data.targets)[0])
        if not 0 <= int(trajectory) < n:
            raise ScheduleError(f"trajectory must be between 0 and {n - 1} ({split} has {n})")
        y = np.asarray(data.targets, dtype=np.float64)[int(trajectory)]
        u = np.asarray(data.inputs, dtype=np.float64)[int(trajectory)]
        changed = changed_schedule(task.input_names, u, scale=scale, shift=shift, zero=zero,
                                   inputs=inputs, task_name=f"task {task.name!r}")
        if np.array_equal(changed, u):
            raise ScheduleError("the changed schedule equals the observed one: give scale=, "
                                "shift=, zero= or inputs=")
        T = y.shape[0]
        t = np.asarray(task.time if task.time is not None else np.arange(T), dtype=np.float64)
        return cls(task, y, u, changed, t)

    def frame(self, forecasts: Mapping[str, np.ndarray]) -> Any:
        """The what-if table: ``time``, each input and ``<input> what-if``, each target and
        ``<target> <label>`` per forecast (``(T-C, S)`` arrays, NaN on the context steps)."""
        import pandas as pd

        T, C = self.y.shape[0], int(self.task.context)
        out: dict[str, Any] = {"time": self.t[:T]}
        for j, name in enumerate(self.task.input_names):
            out[name] = self.u[:T, j]
            out[f"{name} what-if"] = self.changed[:T, j]
        pad = np.full((C, self.y.shape[1]), np.nan)
        for s, name in enumerate(self.task.target_names):
            out[name] = self.y[:, s]
            for label, f in forecasts.items():
                out[f"{name} {label}"] = np.concatenate([pad, np.asarray(f)])[:, s]
        return pd.DataFrame(out)
