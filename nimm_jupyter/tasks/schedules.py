"""Changing a trajectory's input schedule: what a what-if asks ("no chemo after day 20",
"twice the dose", "the same doses a week later"). Pure numbers on a task's input columns;
used by the sandboxed what-if of a search (:mod:`nimm_jupyter.search.whatif`) and by the
exported models' ``what_if`` (:mod:`nimm_jupyter.export.whatif`)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["ScheduleError", "changed_schedule"]


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
