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
from .frame_checks import (clean_numeric, column_list, describe_columns, pandas_module,
                           row_label, task_text)
from .frame_series import read_series, series_samples, split_mode
from .frame_scenarios import scenarios_from_frames
from .splits import check_split, random_partition, size_split

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


# -- main entry point -------------------------------------------------------------------------
def task_from_dataframe(
    df: Any, *, name: str = "user_task", kind: str | TaskKind | None = None,
    time: str | None = None, targets: str | Sequence[str], inputs: Sequence[str] = (),
    group: str | None = None, features: Sequence[str] | None = None,
    description: str = "", prior_code: str | None = None, prior_text: str = "",
    prior_omits: str = "", units: Mapping[str, str] | None = None,
    context: int | None = None, horizon: int | None = None, test_last: int | None = None,
    val_last: int | None = None, split_by: str | None = None, test_size: float | None = None,
    val_size: float | None = None, split: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0,
    source: str | DataSource = DataSource.REAL, provenance: str = "",
    window: int | None = None, family: str = "generic",
    interventions: Mapping[str, Any] | None = None,
) -> Task:
    """Build a :class:`Task` from a pandas DataFrame.

    * **trajectory** (``time`` given): each sample is ``context`` observed + ``horizon``
      forecast steps. ``split_by="time"`` (the default for one series, or whenever
      ``test_last``/``val_last`` is given): the last ``test_last`` points of every series are
      the test window, the ``val_last`` before them validation, and training sees only what
      comes before (defaults fit the shortest series: about a fifth held out, the horizon
      the whole test window). ``split_by="group"`` (the default with ``group``): whole
      series are held out at random (seeded; ``test_size``/``val_size``), as full
      trajectories, or cut into windows when ``horizon`` is given. A single series with
      only ``window``/``horizon`` (``window`` is the older name of ``context``) is cut into
      windows split chronologically in the ratio ``split``. ``targets`` are forecast;
      ``inputs`` are known exogenous columns. ``task.options["layout"]`` says in one
      sentence what is held out.
    * **tabular** (no ``time``): ``features`` (or ``inputs``; default: every other numeric
      column) predict ``targets``; rows (or whole groups) are split at random;
      ``test_size``/``val_size`` are fractions below 1 or counts.

    ``source`` defaults to ``"real"``; say ``"simulated"``/``"synthetic"`` otherwise. Without
    ``prior_code`` the task gets a generic baseline (persistence/linear ODE, or linear
    regression) and ``prior_omits`` says so. ``prior_text`` (your mechanism in words) is
    appended to the description. ``units`` maps column -> unit.

    ``interventions`` maps a scenario name to a DataFrame with the same columns, recorded
    under a condition the data above does not contain (another treatment, a policy change):
    never trained or selected on, never shown to a proposer; every ok node is scored on it
    (see :mod:`.frame_scenarios` for how its rows become samples).

    Raises :class:`TaskDataError` naming the column/row for missing columns, non-numeric
    values, NaN/inf, non-increasing or duplicated times in a group, and too little data.
    """
    pd = pandas_module()
    if not isinstance(df, pd.DataFrame):
        if isinstance(df, Mapping):
            df = pd.DataFrame(df)
        else:
            raise TaskDataError(f"expected a pandas DataFrame, got {type(df).__name__}")
    units = dict(units or {})
    target_cols = column_list(targets, "targets")
    if not target_cols:
        raise TaskDataError("targets is empty: name at least one target column")
    input_cols = column_list(inputs, "inputs")
    feature_cols = column_list(features, "features") if features is not None else None
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
        row = row_label(df.index[int(np.argmax(df[group].isna().to_numpy()))])
        raise TaskDataError(f"group column {group!r} is missing at row {row!r}")

    if kind is TaskKind.TABULAR:
        if time is None and any(v is not None for v in (context, horizon, test_last, val_last,
                                                         split_by, window)):
            raise TaskDataError("--context/--horizon/--test-last/--val-last/--split-by are for "
                                "time series: give --time COL, or use --test-size/--val-size")
        if feature_cols is None:
            feature_cols = input_cols or [c for c in df.columns
                                          if c not in target_cols and c != group]
        fields = _tabular(df, targets=target_cols, features=feature_cols, group=group,
                          units=units, split=split, seed=seed, val_size=val_size,
                          test_size=test_size)
        variables, generic, what = feature_cols, GENERIC_TABULAR_PRIOR, "linear regression"
    else:
        fields = _trajectory(df, time=time, targets=target_cols, inputs=input_cols,
                             group=group, units=units, context=context, horizon=horizon,
                             window=window, test_last=test_last, val_last=val_last,
                             split_by=split_by, val_size=val_size, test_size=test_size,
                             split=split, seed=seed)
        variables, generic, what = input_cols, GENERIC_TRAJECTORY_PRIOR, \
            "persistence / linear ODE"
    facts, first = fields.pop("facts"), fields.pop("first").format(name=name)
    if interventions:
        fields["scenarios"] = scenarios_from_frames(
            interventions, targets=target_cols, inputs=list(variables),
            time=time, group=group, time_ref=fields.get("time"))
    return Task(
        name=name, kind=kind, description=task_text(description, prior_text, facts, first),
        source=source, provenance=provenance or "user-supplied DataFrame",
        inputs=[Variable(c, units.get(c, "")) for c in variables],
        targets=[Variable(c, units.get(c, "")) for c in target_cols],
        prior_code=prior_code or generic,
        prior_omits=prior_omits or ("" if prior_code else _GENERIC_OMITS.format(what=what)),
        family=family, **fields)


def _tabular(df, *, targets, features, group, units, split, seed, val_size,
             test_size) -> dict[str, Any]:
    """The Task fields of a tabular task (splits, facts for the proposer, options)."""
    if not features:
        raise TaskDataError("no feature columns: pass features=[...] for a tabular task")
    data = clean_numeric(df, features + targets)
    X = data[features].to_numpy(np.float64)
    Y = data[targets].to_numpy(np.float64)
    if group is not None:
        labels = df[group].to_numpy()
        uniq = np.array(list(dict.fromkeys(labels.tolist())), dtype=object)
        split = size_split(len(uniq), val_size, test_size, split)
        parts = random_partition(uniq, split, seed, f"groups in {group!r}")
        idx = [np.flatnonzero(np.isin(labels, p)) for p in parts]
        groups = labels
        unit = f"groups of --group {group}"
    else:
        split = size_split(len(df), val_size, test_size, split)
        idx = random_partition(np.arange(len(df)), split, seed, "rows")
        groups = None
        unit = "rows"
    splits = [Split(inputs=X[i], targets=Y[i], groups=None if groups is None else groups[i])
              for i in idx]
    counts = [len(np.unique(groups[i])) if groups is not None else len(i) for i in idx]
    layout = (f"test: {counts[2]} of {sum(counts)} {unit} at random (seed {seed}), validation "
              f"{counts[1]}, training {counts[0]}")
    facts = (f"Tabular regression: {len(df)} rows, features -> targets.\nTargets:\n"
             f"{describe_columns(data, targets, units)}\nFeatures:\n"
             f"{describe_columns(data, features, units)}")
    return dict(train=splits[0], val=splits[1], test=splits[2], facts=facts,
                first=(f"User data '{{name}}': tabular regression of {', '.join(targets)} from "
                       f"{len(features)} features."),
                options=dict(split=list(split), seed=seed, group=group, n_rows=len(df),
                             layout=layout))


def _trajectory(df, *, time, targets, inputs, group, units, context, horizon, window,
                test_last, val_last, split_by, val_size, test_size, split,
                seed) -> dict[str, Any]:
    """The Task fields of a trajectory task (see :mod:`.frame_series` for the layouts)."""
    series, t_unit, data = read_series(df, time, group, targets + inputs)
    mode = split_mode(group, split_by, test_last, val_last,
                      window is not None or horizon is not None)
    splits, time_ref, K, opts = series_samples(
        series, mode=mode, time=time, group=group, S=len(targets), context=context,
        horizon=horizon, window=window, test_last=test_last, val_last=val_last,
        val_size=val_size, test_size=test_size, split=split, seed=seed)
    t_label = f" ({t_unit})" if t_unit else (f" ({units[time]})" if units.get(time) else "")
    raw = df[time]
    first = raw.min()
    origin = None if t_unit != "days" else (  # the date the task's day count starts from
        str(first.date()) if first == first.normalize() else str(first))
    facts = (f"Trajectory forecasting: {opts['layout']}; time column {time!r}{t_label}.\n"
             f"Targets (forecast):\n{describe_columns(data, targets, units)}"
             + (f"\nInputs (known over the horizon):\n{describe_columns(data, inputs, units)}"
                if inputs else "\nInputs: none."))
    options = dict(split=list(split), seed=seed, group=group, time_column=time,
                   time_unit=t_unit or units.get(time, ""), time_origin=origin)
    options.update(opts)
    return dict(train=splits[0], val=splits[1], test=splits[2], facts=facts,
                first="User data '{name}': forecast " + ", ".join(targets) + " over time.",
                time=np.asarray(time_ref, dtype=np.float64), context=int(K), options=options)
