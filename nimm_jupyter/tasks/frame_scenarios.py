"""Held-out intervention scenarios of a DataFrame task: ``task_from_dataframe(...,
interventions={"name": df})``.

Each frame has the task's own columns, recorded (or simulated) under a condition the task's
data does not contain: another dosing plan, a policy change. It is never split, never trained
or selected on and never shown to a proposer; every ``ok`` node is scored on it
(:class:`~.base.Scenario`). A trajectory frame gives one sample per series: its first
``context + horizon`` points on the task's own time grid (the first ``context`` observed, the
rest forecast); a tabular frame gives one sample per row.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .base import Scenario, Split, TaskDataError
from .frame_checks import clean_numeric, pandas_module
from .frame_series import read_series

__all__ = ["scenarios_from_frames"]


def _frame(name: str, df: Any, columns: list[str]) -> Any:
    pd = pandas_module()
    if isinstance(df, Mapping):
        df = pd.DataFrame(df)
    if not isinstance(df, pd.DataFrame):
        raise TaskDataError(f"interventions[{name!r}] must be a pandas DataFrame, got "
                            f"{type(df).__name__}")
    missing = [c for c in dict.fromkeys(columns) if c not in df.columns]
    if missing:
        raise TaskDataError(f"interventions[{name!r}] lacks column(s) "
                            f"{', '.join(map(repr, missing))}: it needs the task's own columns")
    if len(df) == 0:
        raise TaskDataError(f"interventions[{name!r}] has no rows")
    return df


def scenarios_from_frames(frames: Mapping[str, Any], *, targets: list[str], inputs: list[str],
                          time: str | None = None, group: str | None = None,
                          time_ref: np.ndarray | None = None) -> dict[str, Scenario]:
    """The scenarios of ``frames`` (name -> DataFrame) for a task with these columns; a
    trajectory task passes ``time`` (and ``group``) and its ``time_ref`` grid, a tabular task
    its feature columns as ``inputs``. Raises :class:`TaskDataError` naming the scenario."""
    out: dict[str, Scenario] = {}
    for name, df in frames.items():
        name = str(name)
        cols = targets + inputs + [c for c in (time, group) if c]
        df = _frame(name, df, cols)
        if time is None:
            data = clean_numeric(df, inputs + targets)
            split = Split(inputs=data[inputs].to_numpy(np.float64),
                          targets=data[targets].to_numpy(np.float64))
            out[name] = Scenario(split, f"user-supplied: {len(df)} rows")
            continue
        assert time_ref is not None
        T, S = len(time_ref), len(targets)
        series, _unit, _data = read_series(df, time, group, targets + inputs)
        rows, labels = [], []
        for s in series:
            where = f"interventions[{name!r}]" + (f", group {s.label!r}" if group else "")
            if len(s) < T:
                raise TaskDataError(f"{where}: {len(s)} time points; each series needs the "
                                    f"task's context + horizon = {T}")
            rel = s.t[:T] - s.t[0]
            if not np.allclose(rel, time_ref, rtol=1e-6, atol=1e-9):
                raise TaskDataError(f"{where}: its time steps differ from the task's "
                                    f"(first {T} points); resample to the task's grid")
            rows.append(s.values[:T])
            labels.append(s.label)
        arr = np.stack(rows)
        out[name] = Scenario(
            Split(inputs=arr[..., S:], targets=arr[..., :S], groups=np.array(labels, dtype=object)),
            f"user-supplied: {len(rows)} series")
    return out
