"""A user's pandas DataFrame -> :class:`~nimm_jupyter.tasks.Task`.

``task_from_dataframe(df, time="t", targets=[...], group="patient")`` builds a trajectory task
(one trajectory per group; or, without a group, one long series cut chronologically into
windows); without ``time`` it builds a tabular regression task. Every problem with the data
raises one :class:`TaskDataError` naming the column and row (index label) at fault.

pandas is imported lazily: the rest of the package does not need it.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .base import DataSource, Split, Task, TaskDataError, TaskKind, Variable
from .splits import check_split, chronological_windows, random_partition

__all__ = ["TaskDataError", "task_from_dataframe", "GENERIC_TRAJECTORY_PRIOR",
           "GENERIC_TABULAR_PRIOR"]


# -- generic, honest baselines used when the user gives no prior ----------------------------
GENERIC_TRAJECTORY_PRIOR = '''\
import torch
from torch import nn
from nimm_jupyter.blocks import Real


class Model(nn.Module):
    """Generic baseline, not a mechanism: linear ODE on the normalised state,
    dz/dt = A z + B u + c, started at the last observed value. A, B and c start at zero,
    so before training it is the persistence forecast (the last value held constant)."""

    def __init__(self, spec):
        super().__init__()
        S, U = spec.n_targets, spec.n_inputs
        self.register_buffer("y_mean", spec.target_mean)
        self.register_buffer("y_scale", spec.target_scale)
        self.register_buffer("u_mean", spec.input_mean)
        self.register_buffer("u_scale", spec.input_scale)
        self.A = Real(0.0, shape=(S, S))  # linear coupling, 1/time unit
        self.B = Real(0.0, shape=(S, max(U, 1)))  # input effect
        self.c = Real(0.0, shape=(S,))  # drift

    def forward(self, y_context, u, t):
        C = y_context.shape[1]
        z = (y_context[:, -1] - self.y_mean) / self.y_scale
        if u.shape[-1]:
            un = (u - self.u_mean) / self.u_scale
        else:
            un = u.new_zeros(u.shape[0], u.shape[1], 1)
        out = []
        for k in range(C - 1, t.shape[0] - 1):
            dt = t[k + 1] - t[k]
            dz = z @ self.A().T + un[:, k] @ self.B().T + self.c()
            z = (z + dt * dz).clamp(-50.0, 50.0)
            out.append(z)
        return torch.stack(out, dim=1) * self.y_scale + self.y_mean
'''

GENERIC_TABULAR_PRIOR = '''\
import torch
from torch import nn
from nimm_jupyter.blocks import Real


class Model(nn.Module):
    """Generic baseline, not a mechanism: linear regression on normalised features.
    Weights start at zero, so before training it predicts the training mean."""

    def __init__(self, spec):
        super().__init__()
        self.register_buffer("x_mean", spec.input_mean)
        self.register_buffer("x_scale", spec.input_scale)
        self.register_buffer("y_mean", spec.target_mean)
        self.register_buffer("y_scale", spec.target_scale)
        self.W = Real(0.0, shape=(spec.n_targets, max(spec.n_inputs, 1)))
        self.b = Real(0.0, shape=(spec.n_targets,))

    def forward(self, x):
        if x.shape[-1]:
            z = (x - self.x_mean) / self.x_scale
        else:
            z = x.new_zeros(x.shape[0], 1)
        return (z @ self.W().T + self.b()) * self.y_scale + self.y_mean
'''

_GENERIC_OMITS = ("This is a generic baseline ({what}), not a mechanistic model: describe the "
                  "mechanism you believe in (prior_text) or pass your own prior_code so the "
                  "search can start from it.")


# -- validation helpers ----------------------------------------------------------------------
def _pd():
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - pandas is in the test extras
        raise ImportError("task_from_dataframe needs pandas: pip install pandas") from exc
    return pd


def _row(label: Any) -> Any:
    """An index label as a plain Python value, so messages read ``row 5``, not ``np.int64(5)``."""
    return label.item() if isinstance(label, np.generic) else label


def _numeric(df, col: str):
    """The column as float64, or TaskDataError naming a non-numeric example value."""
    pd = _pd()
    s = df[col]
    if pd.api.types.is_bool_dtype(s):
        return s.astype(np.float64)
    if not pd.api.types.is_numeric_dtype(s):
        conv = pd.to_numeric(s, errors="coerce")
        bad = conv.isna() & s.notna()
        if bad.any():
            row = _row(bad.idxmax())
            raise TaskDataError(f"column {col!r} is not numeric: row {row!r} holds "
                                f"{s.loc[row]!r}")
        s = conv
    return s.astype(np.float64)


def _finite(values, col: str) -> None:
    arr = values.to_numpy()
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.argmax(bad))
        what = "NaN" if np.isnan(arr[i]) else "inf"
        raise TaskDataError(f"column {col!r} has {what} at row {_row(values.index[i])!r}; "
                            f"drop or fill missing values first")


def _time_values(df, col: str):
    """Time as float (datetimes become days since the first time), checked finite."""
    pd = _pd()
    s = df[col]
    if pd.api.types.is_datetime64_any_dtype(s):
        if s.isna().any():
            raise TaskDataError(f"column {col!r} has a missing time (NaT) at row "
                                f"{_row(s.index[int(np.argmax(s.isna().to_numpy()))])!r}")
        days = (s - s.min()) / pd.Timedelta(days=1)
        return days.astype(np.float64), "days"
    vals = _numeric(df, col)
    _finite(vals, col)
    return vals, ""


def _as_list(x: str | Sequence[str] | None, what: str) -> list[str]:
    if x is None:
        return []
    if isinstance(x, str):
        return [x]
    out = list(x)
    for c in out:
        if not isinstance(c, str):
            raise TaskDataError(f"{what} must be column names (strings), got {c!r}")
    return out


def _describe_columns(df, cols: list[str], units: Mapping[str, str]) -> str:
    lines = []
    for c in cols:
        v = df[c].to_numpy(dtype=np.float64)
        unit = f" [{units[c]}]" if units.get(c) else ""
        lines.append(f"  {c}{unit}: range {v.min():.4g} .. {v.max():.4g}, mean {v.mean():.4g}")
    return "\n".join(lines)


# -- main entry point -------------------------------------------------------------------------
def task_from_dataframe(
    df: Any, *, name: str = "user_task", kind: str | TaskKind | None = None,
    time: str | None = None, targets: str | Sequence[str], inputs: Sequence[str] = (),
    group: str | None = None, features: Sequence[str] | None = None,
    description: str = "", prior_code: str | None = None, prior_text: str = "",
    prior_omits: str = "", units: Mapping[str, str] | None = None, context: int = 1,
    split: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0,
    source: str | DataSource = DataSource.REAL, provenance: str = "",
    window: int | None = None, horizon: int | None = None, family: str = "generic",
) -> Task:
    """Build a :class:`Task` from a pandas DataFrame.

    * **trajectory** (``time`` given): with ``group``, one trajectory per group (all groups
      sampled at the same relative times; groups are split at random, seeded); with
      ``window``/``horizon``, each series is cut into windows of ``window + horizon`` rows
      (``context = window``); with neither a group nor windows, the single series is cut
      chronologically into windows (defaults chosen from its length) and split on the
      forecast steps. ``targets`` are forecast; ``inputs`` are known exogenous columns.
    * **tabular** (no ``time``): ``features`` (or ``inputs``; default: every other numeric
      column) predict ``targets``; rows (or whole groups) are split at random.

    ``source`` defaults to ``"real"``; say ``"simulated"``/``"synthetic"`` otherwise. Without
    ``prior_code`` the task gets a generic baseline (persistence/linear ODE, or linear
    regression) and ``prior_omits`` says so. ``prior_text`` (your mechanism in words) is
    appended to the description. ``units`` maps column -> unit.

    Raises :class:`TaskDataError` naming the column/row for missing columns, non-numeric
    values, NaN/inf, non-increasing or duplicated times in a group, and too little data.
    """
    pd = _pd()
    if not isinstance(df, pd.DataFrame):
        if isinstance(df, Mapping):
            df = pd.DataFrame(df)
        else:
            raise TaskDataError(f"expected a pandas DataFrame, got {type(df).__name__}")
    units = dict(units or {})
    target_cols = _as_list(targets, "targets")
    if not target_cols:
        raise TaskDataError("targets is empty: name at least one target column")
    input_cols = _as_list(inputs, "inputs")
    feature_cols = _as_list(features, "features") if features is not None else None
    if kind is None:
        kind = TaskKind.TRAJECTORY if time is not None else TaskKind.TABULAR
    try:
        kind = TaskKind(kind)
    except ValueError:
        raise TaskDataError(f"kind must be 'trajectory' or 'tabular', got {kind!r}") from None
    try:
        source = DataSource(source)
    except ValueError:
        raise TaskDataError(f"source must be one of real, simulated, synthetic; "
                            f"got {source!r}") from None
    check_split(split)
    if kind is TaskKind.TRAJECTORY and time is None:
        raise TaskDataError("a trajectory task needs time=<column with the sample times>")
    if kind is TaskKind.TABULAR and time is not None:
        raise TaskDataError(f"time={time!r} is only for trajectory tasks; for a tabular task "
                            f"list it in features instead")

    wanted = target_cols + input_cols + (feature_cols or []) + [c for c in (time, group) if c]
    missing = [c for c in dict.fromkeys(wanted) if c not in df.columns]
    if missing:
        raise TaskDataError(
            f"column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} not in "
            f"the DataFrame; available: {', '.join(map(str, df.columns))}")
    overlap = set(target_cols) & set(input_cols + (feature_cols or []))
    if overlap:
        raise TaskDataError(f"column(s) {sorted(overlap)} are both targets and inputs/features")
    if len(df) == 0:
        raise TaskDataError("the DataFrame has no rows")
    if group is not None and df[group].isna().any():
        row = _row(df.index[int(np.argmax(df[group].isna().to_numpy()))])
        raise TaskDataError(f"group column {group!r} is missing at row {row!r}")

    if kind is TaskKind.TABULAR:
        if feature_cols is None:
            feature_cols = input_cols or [c for c in df.columns
                                          if c not in target_cols and c != group]
        return _tabular(df, name=name, targets=target_cols, features=feature_cols, group=group,
                        description=description, prior_code=prior_code, prior_text=prior_text,
                        prior_omits=prior_omits, units=units, split=split, seed=seed,
                        source=source, provenance=provenance, family=family)
    return _trajectory(df, name=name, time=time, targets=target_cols, inputs=input_cols,
                       group=group, description=description, prior_code=prior_code,
                       prior_text=prior_text, prior_omits=prior_omits, units=units,
                       context=context, split=split, seed=seed, source=source,
                       provenance=provenance, window=window, horizon=horizon, family=family)


def _clean_numeric(df, cols: list[str]):
    pd = _pd()
    out = {}
    for c in cols:
        vals = _numeric(df, c)
        _finite(vals, c)
        out[c] = vals
    return pd.DataFrame(out, index=df.index)


def _text(description: str, prior_text: str, facts: str, default_first: str) -> str:
    parts = [description.strip() or default_first]
    if prior_text.strip():
        parts.append("Mechanism (from the user): " + prior_text.strip())
    parts.append(facts)
    return "\n".join(parts)


def _tabular(df, *, name, targets, features, group, description, prior_code, prior_text,
             prior_omits, units, split, seed, source, provenance, family) -> Task:
    if not features:
        raise TaskDataError("no feature columns: pass features=[...] for a tabular task")
    data = _clean_numeric(df, features + targets)
    X = data[features].to_numpy(np.float64)
    Y = data[targets].to_numpy(np.float64)
    if group is not None:
        labels = df[group].to_numpy()
        uniq = np.array(list(dict.fromkeys(labels.tolist())), dtype=object)
        parts = random_partition(uniq, split, seed, f"groups in {group!r}")
        idx = [np.flatnonzero(np.isin(labels, p)) for p in parts]
        groups = labels
    else:
        parts = random_partition(np.arange(len(df)), split, seed, "rows")
        idx = parts
        groups = None
    splits = [Split(inputs=X[i], targets=Y[i], groups=None if groups is None else groups[i])
              for i in idx]
    facts = (f"Tabular regression: {len(df)} rows, features -> targets.\nTargets:\n"
             f"{_describe_columns(data, targets, units)}\nFeatures:\n"
             f"{_describe_columns(data, features, units)}")
    first = (f"User data '{name}': tabular regression of {', '.join(targets)} from "
             f"{len(features)} features.")
    return Task(
        name=name, kind=TaskKind.TABULAR,
        description=_text(description, prior_text, facts, first), source=source,
        provenance=provenance or "user-supplied DataFrame",
        inputs=[Variable(c, units.get(c, "")) for c in features],
        targets=[Variable(c, units.get(c, "")) for c in targets],
        train=splits[0], val=splits[1], test=splits[2],
        prior_code=prior_code or GENERIC_TABULAR_PRIOR,
        prior_omits=prior_omits or ("" if prior_code else
                                    _GENERIC_OMITS.format(what="linear regression")),
        family=family,
        options=dict(split=list(split), seed=seed, group=group, n_rows=len(df)),
    )


def _series(df, time: str, group: str | None, cols: list[str]):
    """Per-group (label, times, values) after checking time order; times as float."""
    t_all, t_unit = _time_values(df, time)
    data = _clean_numeric(df, cols)
    labels = df[group].to_numpy() if group is not None else np.zeros(len(df), dtype=int)
    out = []
    for label in dict.fromkeys(labels.tolist()):
        rows = np.flatnonzero(labels == label)
        t = t_all.to_numpy()[rows]
        where = f" in group {label!r}" if group is not None else ""
        steps = np.diff(t)
        if (steps == 0).any():
            i = int(np.argmax(steps == 0)) + 1
            raise TaskDataError(f"duplicated time {t[i]:g}{where} at row "
                                f"{_row(df.index[rows[i]])!r} (column {time!r})")
        if (steps < 0).any():
            i = int(np.argmax(steps < 0)) + 1
            raise TaskDataError(
                f"time column {time!r} decreases{where} at row {_row(df.index[rows[i]])!r} "
                f"({t[i]:g} after {t[i - 1]:g}); sort the DataFrame by "
                f"{'group and ' if group is not None else ''}time")
        out.append((label, t, data.to_numpy(np.float64)[rows]))
    return out, t_unit, data


def _trajectory(df, *, name, time, targets, inputs, group, description, prior_code,
                prior_text, prior_omits, units, context, split, seed, source, provenance,
                window, horizon, family) -> Task:
    cols = targets + inputs
    series, t_unit, data = _series(df, time, group, cols)
    S = len(targets)
    windowed = window is not None or horizon is not None or group is None
    if windowed:
        if window is None:
            shortest = min(len(t) for _, t, _ in series)
            window = context if context > 1 else max(2, min(12, shortest // 6))
        if horizon is None:
            horizon = max(1, window // 3)
        context = window
        T = window + horizon
    else:
        T = len(series[0][1])
        if not 1 <= context < T:
            raise TaskDataError(f"context={context} must be between 1 and the trajectory "
                                f"length - 1 ({T - 1})")

    ys, gs, starts_by_split = [], [], None
    labels_all = df[group].to_numpy() if group is not None else None

    def rows_of(label):
        return np.flatnonzero(labels_all == label)

    time_ref = None
    if windowed and group is None:
        label, t, v = series[0]
        if len(t) < T:
            raise TaskDataError(f"the series has {len(t)} rows, fewer than window + horizon "
                                f"= {T}")
        starts_by_split = chronological_windows(len(t), window, horizon, split)
        steps = np.diff(t)
        irregular = ~np.isclose(steps, steps[0], rtol=1e-6, atol=1e-9)
        if irregular.any():
            i = int(np.argmax(irregular)) + 1
            raise TaskDataError(
                f"time column {time!r} is not equally spaced at row {_row(df.index[i])!r} "
                f"(step {steps[i - 1]:g} vs {steps[0]:g}); windows need a regular grid: "
                f"resample first")
        time_ref = t[:T] - t[0]
        splits = []
        for key in ("train", "val", "test"):
            st = starts_by_split[key]
            take = st[:, None] + np.arange(T)[None, :]
            splits.append(Split(inputs=v[take][..., S:], targets=v[take][..., :S],
                                groups=st.copy()))
    else:
        for label, t, v in series:
            if windowed:
                if len(t) < T:
                    continue  # too short for one window; counted below
                for s in range(len(t) - T + 1):
                    rel = t[s:s + T] - t[s]
                    if time_ref is None:
                        time_ref = rel
                    elif not np.allclose(rel, time_ref, rtol=1e-6, atol=1e-9):
                        raise TaskDataError(
                            f"group {label!r} is not sampled on the same regular grid as "
                            f"the first window (row {_row(df.index[rows_of(label)[s]])!r}); "
                            f"windows need equally spaced times: resample first")
                    ys.append(v[s:s + T])
                    gs.append(label)
            else:
                if len(t) != T:
                    raise TaskDataError(
                        f"group {label!r} has {len(t)} rows but group {series[0][0]!r} has "
                        f"{T}; trajectories must have equal length (or pass window=/horizon= "
                        f"to cut them into windows)")
                rel = t - t[0]
                if time_ref is None:
                    time_ref = rel
                elif not np.allclose(rel, time_ref, rtol=1e-6, atol=1e-9):
                    k = int(np.argmax(~np.isclose(rel, time_ref, rtol=1e-6, atol=1e-9)))
                    raise TaskDataError(
                        f"group {label!r} is sampled at different relative times than group "
                        f"{series[0][0]!r} (step {k}: {rel[k]:g} vs {time_ref[k]:g}); "
                        f"resample to a common grid")
                ys.append(v)
                gs.append(label)
        if not ys:
            raise TaskDataError(f"no group has at least window + horizon = {T} rows")
        arr = np.stack(ys)
        gs_arr = np.array(gs, dtype=object)
        uniq = np.array(list(dict.fromkeys(gs)), dtype=object)
        parts = random_partition(uniq, split, seed, f"trajectories (groups in {group!r})")
        splits = []
        for p in parts:
            m = np.isin(gs_arr, p)
            splits.append(Split(inputs=arr[m][..., S:], targets=arr[m][..., :S],
                                groups=gs_arr[m]))
    if windowed:
        for sp, key in zip(splits, ("train", "val", "test")):
            if len(sp) == 0:  # pragma: no cover - guarded by chronological_windows/_split
                raise TaskDataError(f"no samples for the {key} split")
    t_label = f" ({t_unit})" if t_unit else (f" ({units[time]})" if units.get(time) else "")
    layout = (f"{len(series)} group(s) cut into windows of {window} context + {horizon} forecast "
              f"steps" if windowed else
              f"{sum(len(s) for s in splits)} trajectories of {T} steps, context {context}")
    facts = (f"Trajectory forecasting: {layout}; time column {time!r}{t_label}.\n"
             f"Targets (forecast):\n{_describe_columns(data, targets, units)}"
             + (f"\nInputs (known over the horizon):\n{_describe_columns(data, inputs, units)}"
                if inputs else "\nInputs: none."))
    first = f"User data '{name}': forecast {', '.join(targets)} over time."
    return Task(
        name=name, kind=TaskKind.TRAJECTORY,
        description=_text(description, prior_text, facts, first), source=source,
        provenance=provenance or "user-supplied DataFrame",
        inputs=[Variable(c, units.get(c, "")) for c in inputs],
        targets=[Variable(c, units.get(c, "")) for c in targets],
        train=splits[0], val=splits[1], test=splits[2],
        prior_code=prior_code or GENERIC_TRAJECTORY_PRIOR,
        prior_omits=prior_omits or ("" if prior_code else _GENERIC_OMITS.format(
            what="persistence / linear ODE")),
        family=family, time=np.asarray(time_ref, dtype=np.float64), context=int(context),
        options=dict(split=list(split), seed=seed, group=group, window=window,
                     horizon=horizon, time_column=time, time_unit=t_unit or units.get(time, "")),
    )
