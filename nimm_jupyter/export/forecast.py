"""Use a trained model on new data, as the exported cells offer it: ``forecast`` continues a
series from its last observed rows, ``predict_table`` predicts the targets of new table rows.
Both take and return pandas DataFrames in the data's own columns and units."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ExportError

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from ..tasks.base import Task

__all__ = ["forecast", "predict_table", "default_steps"]


def default_steps(task: "Task") -> int:
    """The horizon the model was scored on (what ``forecast`` does by default)."""
    horizon = (task.options or {}).get("horizon")
    if horizon:
        return int(horizon)
    return int(len(task.time) - task.context) if task.time is not None else 1


def _columns(df: Any, names: list[str], what: str) -> np.ndarray:
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise ExportError(f"{what} lacks the column(s) {', '.join(missing)}; it needs "
                          f"{', '.join(names)}")
    return df[names].to_numpy(dtype=np.float64)


def _future_times(history: Any, column: str, step: float, dated: bool, steps: int) -> Any:
    """Times of the forecast steps, continuing the history's time column (dates stay dates)."""
    import pandas as pd

    ahead = np.arange(1, steps + 1, dtype=np.float64) * step
    if column not in history.columns:
        return ahead
    last = history[column].iloc[-1]
    if dated:  # the task measured time in days since its first date
        return [pd.Timestamp(last) + pd.Timedelta(days=float(d)) for d in ahead]
    return float(last) + ahead


def _tensor_maker(model: Any) -> Any:
    """``array -> float32 tensor`` on the model's device (float32, as the harness trains)."""
    import torch

    device = next(iter(model.parameters()), torch.zeros(0)).device
    return lambda a: torch.tensor(np.asarray(a, dtype=np.float32), device=device)


def _is_trajectory(task: "Task") -> bool:
    return str(getattr(task.kind, "value", task.kind)) == "trajectory"


def forecast(model: "torch.nn.Module", task: "Task", history: "pd.DataFrame",
             steps: int | None = None, inputs: "pd.DataFrame | None" = None) -> "pd.DataFrame":
    """Forecast ``steps`` time steps (default: the horizon it was scored on) after the last
    row of ``history``, a DataFrame with the task's target columns whose last ``context``
    rows are what the model observes. A task with exogenous inputs also needs ``inputs``:
    their values over the context rows and the ``steps`` ahead (``context + steps`` rows),
    or just the ``steps`` ahead when ``history`` holds the inputs. Returns a DataFrame of the
    time column (continued on the data's grid) and the forecast targets."""
    import pandas as pd
    import torch

    if not _is_trajectory(task):
        raise ExportError(f"task {task.name!r} is a table, not a series; use predict_table")
    C = int(task.context)
    steps = default_steps(task) if steps is None else int(steps)
    if steps < 1:
        raise ExportError(f"steps must be >= 1, got {steps}")
    if len(history) < C:
        raise ExportError(f"history has {len(history)} rows; the model observes the last {C}")
    y = _columns(history, task.target_names, "history")[-C:]
    names_u = task.input_names
    if names_u:
        if inputs is None:
            raise ExportError(f"this model needs the inputs {', '.join(names_u)} over the "
                              f"{steps} steps ahead: pass inputs=DataFrame")
        future = _columns(inputs, names_u, "inputs")
        if len(future) == steps:
            future = np.concatenate([_columns(history, names_u, "history")[-C:], future])
        if len(future) != C + steps:
            raise ExportError(f"inputs has {len(inputs)} rows; give the {steps} steps ahead "
                              f"(or context + steps = {C + steps} rows)")
    else:
        future = np.zeros((C + steps, 0))
    grid = np.asarray(task.time if task.time is not None else np.arange(C + 1), dtype=np.float64)
    step = float(grid[1] - grid[0]) if len(grid) > 1 else 1.0
    f32 = _tensor_maker(model)
    model.eval()
    with torch.no_grad():
        out = model(f32(y)[None], f32(future)[None], f32(np.arange(C + steps) * step))
    pred = out.double().cpu().numpy()[0]
    opts = task.options or {}
    column = opts.get("time_column") or "time"
    frame = {column: _future_times(history, column, step, bool(opts.get("time_origin")), steps)}
    frame.update({name: pred[:, j] for j, name in enumerate(task.target_names)})
    return pd.DataFrame(frame)


def predict_table(model: "torch.nn.Module", task: "Task", df: "pd.DataFrame") -> "pd.DataFrame":
    """Predict the targets of the rows of ``df`` (which holds the task's feature columns);
    returns a DataFrame of the targets with ``df``'s index."""
    import pandas as pd
    import torch

    if _is_trajectory(task):
        raise ExportError(f"task {task.name!r} forecasts a series; use forecast")
    x = _columns(df, task.input_names, "the table")
    f32 = _tensor_maker(model)
    model.eval()
    with torch.no_grad():
        out = model(f32(x))
    pred = out.double().cpu().numpy()
    return pd.DataFrame({n: pred[:, j] for j, n in enumerate(task.target_names)},
                        index=df.index)
