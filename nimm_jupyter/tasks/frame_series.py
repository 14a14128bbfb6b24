"""A user's time series (one, or one per group) -> the samples of a trajectory task.

Three ways to hold data out, chosen by :func:`split_mode`:

* ``time``: the last ``test_last`` points of every series are the test window, the
  ``val_last`` before them validation, training sees only what comes before. Each sample is
  ``context`` observed + ``horizon`` forecast steps. The default for a single series.
* ``group``: whole series (groups) are held out at random (seeded).
* ``fraction``: a single series cut into windows whose forecast steps are split
  chronologically in the ratio ``split`` (a single series with only ``window``/``horizon``).

The sentence :func:`layout_text` writes (``options["layout"]``) is what front ends print at
the start, so the user sees which points are held out.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .base import Split, TaskDataError
from .frame_checks import clean_numeric, row_label, time_values
from .splits import chronological_windows, random_partition, size_split, windows_between

__all__ = ["SPLIT_BY", "Series", "read_series", "split_mode", "series_samples"]

SPLIT_BY = ("group", "time")
SPLITS = ("train", "val", "test")
_DEFAULT_TEST_SHARE = 0.2  # of the shortest series, when --test-last is not given
_MAX_DEFAULT_HOLDOUT = 24
_MAX_DEFAULT_CONTEXT = 12


class Series:
    """One series: its label, float times, values (targets then inputs), the time column's
    own values (for messages and plots) and the row labels of the DataFrame."""

    def __init__(self, label: Any, t: np.ndarray, values: np.ndarray, raw: np.ndarray,
                 rows: np.ndarray) -> None:
        self.label, self.t, self.values, self.raw, self.rows = label, t, values, raw, rows

    def __len__(self) -> int:
        return len(self.t)


def _positive(value: int | None, flag: str) -> None:
    if value is not None and (int(value) != value or value < 1):
        raise TaskDataError(f"{flag} must be a positive integer, got {value!r}")


def read_series(df: Any, time: str, group: str | None, cols: list[str]):
    """The series of ``df`` (one per group) after checking time order; (series, unit, data)."""
    t_all, t_unit = time_values(df, time)
    data = clean_numeric(df, cols)
    labels = df[group].to_numpy() if group is not None else np.zeros(len(df), dtype=int)
    values = data.to_numpy(np.float64)
    raw_all = df[time].to_numpy()
    out = []
    for label in dict.fromkeys(labels.tolist()):
        rows = np.flatnonzero(labels == label)
        t = t_all.to_numpy()[rows]
        where = f" in group {label!r}" if group is not None else ""
        steps = np.diff(t)
        if (steps == 0).any():
            i = int(np.argmax(steps == 0)) + 1
            raise TaskDataError(f"duplicated time {t[i]:g}{where} at row "
                                f"{row_label(df.index[rows[i]])!r} (column {time!r})")
        if (steps < 0).any():
            i = int(np.argmax(steps < 0)) + 1
            raise TaskDataError(
                f"time column {time!r} decreases{where} at row "
                f"{row_label(df.index[rows[i]])!r} ({t[i]:g} after {t[i - 1]:g}); sort the "
                f"DataFrame by {'group and ' if group is not None else ''}time")
        out.append(Series(label, t, values[rows], raw_all[rows], df.index[rows]))
    if group is not None and max(len(s) for s in out) == 1:
        raise TaskDataError(
            f"every value of --group {group} occurs in one row only, so each series is a "
            f"single time point: --group must name the column that stays the same along a "
            f"series (or leave --group out for one series)")
    return out, t_unit, data


def split_mode(group: str | None, split_by: str | None, test_last: int | None,
               val_last: int | None, windows_given: bool) -> str:
    """``time``, ``group`` or ``fraction`` (see the module doc); errors name the flags."""
    if split_by is not None and split_by not in SPLIT_BY:
        raise TaskDataError(f"--split-by must be one of {', '.join(SPLIT_BY)}, got {split_by!r}")
    by_time = test_last is not None or val_last is not None
    if split_by == "group":
        if group is None:
            raise TaskDataError("--split-by group needs --group COL (the column naming the "
                                "series of each row)")
        if by_time:
            raise TaskDataError("--test-last/--val-last hold out the end of every series "
                                "(--split-by time); with --split-by group whole series are "
                                "held out: use --test-size/--val-size")
        return "group"
    if split_by == "time" or by_time:
        return "time"
    if group is None:
        return "fraction" if windows_given else "time"
    return "group"


def _fmt_time(value: Any) -> str:
    if isinstance(value, (np.datetime64,)) or hasattr(value, "isoformat"):
        return str(np.datetime_as_string(np.datetime64(value, "D")))
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return str(value)


def _regular_grid(series: list[Series], time: str, group: str | None) -> float:
    """The common time step of all series, or TaskDataError at the first odd step."""
    first = series[0]
    step0 = float(first.t[1] - first.t[0]) if len(first) > 1 else 1.0
    for s in series:
        steps = np.diff(s.t)
        odd = ~np.isclose(steps, step0, rtol=1e-6, atol=1e-9)
        if odd.any():
            i = int(np.argmax(odd)) + 1
            where = f" in group {s.label!r}" if group is not None else ""
            raise TaskDataError(
                f"time column {time!r} is not equally spaced{where} at row "
                f"{row_label(s.rows[i])!r} (step {steps[i - 1]:g} vs {step0:g}); windows need "
                f"a regular grid: resample first")
    return step0


def _holdout(series: list[Series], context: int | None, horizon: int | None,
             test_last: int | None, val_last: int | None, group: str | None):
    """(context, horizon, test_last, val_last) with defaults that fit the shortest series."""
    shortest = min(series, key=len)
    n = len(shortest)
    share = max(1, min(_MAX_DEFAULT_HOLDOUT, int(round(_DEFAULT_TEST_SHARE * n))))
    N = test_last if test_last is not None else (horizon if horizon is not None else share)
    V = val_last if val_last is not None else N
    H = horizon if horizon is not None else N
    if H > N or H > V:
        raise TaskDataError(f"--horizon {H} is longer than the held-out windows (--test-last "
                            f"{N}, --val-last {V}): lower --horizon or hold out more points")
    n_train = n - N - V
    K = context if context is not None else max(1, min(_MAX_DEFAULT_CONTEXT, (n_train - H) // 2))
    if n_train < K + H:
        what = f"group {shortest.label!r}" if group is not None else "the series"
        raise TaskDataError(
            f"{what} has {n} time points: the test window (--test-last {N}) and validation "
            f"(--val-last {V}) leave {max(n_train, 0)} for training, fewer than --context {K} "
            f"+ --horizon {H}; lower these (or add data)")
    return K, H, N, V


def _collect(series: list[Series], starts_of, T: int, S: int, single: bool):
    """Splits of the windows ``starts_of(series) -> {split: starts}`` picks, and the absolute
    start time of each sample (for plots on the data's own time axis)."""
    parts: dict[str, list] = {k: [] for k in SPLITS}
    labels: dict[str, list] = {k: [] for k in SPLITS}
    t0: dict[str, list[float]] = {k: [] for k in SPLITS}
    first: dict[str, list[int]] = {k: [] for k in SPLITS}
    for s in series:
        for key, st in starts_of(s).items():
            for i in st:
                parts[key].append(s.values[i:i + T])
                labels[key].append(int(i) if single else s.label)
                t0[key].append(float(s.t[i]))
                first[key].append(int(i))
    splits = []
    for key in SPLITS:
        if not parts[key]:
            raise TaskDataError(f"no sample fits in the {key} period: hold out more points "
                                f"(--test-last/--val-last) or lower --context/--horizon")
        arr = np.stack(parts[key])
        groups = np.array(labels[key], dtype=np.int64 if single else object)
        splits.append(Split(inputs=arr[..., S:], targets=arr[..., :S], groups=groups,
                            window_start=np.array(first[key], dtype=np.int64)))
    return splits, t0


def series_samples(series: list[Series], *, mode: str, time: str, group: str | None, S: int,
                   context: int | None, horizon: int | None, window: int | None,
                   test_last: int | None, val_last: int | None, val_size: float | None,
                   test_size: float | None, split: Sequence[float], seed: int):
    """(splits, time grid, context, options) of the series under ``mode``."""
    _positive(context, "--context")
    _positive(horizon, "--horizon")
    _positive(window, "window")
    _positive(test_last, "--test-last")
    _positive(val_last, "--val-last")
    if window is not None:
        context = window  # the older name of the context of a windowed layout
    if mode != "group" and (val_size is not None or test_size is not None):
        raise TaskDataError("--test-size/--val-size hold out rows or whole series at random; "
                            "for time-ordered data use --test-last/--val-last")
    single = group is None
    opts: dict[str, Any] = {"split_by": mode}
    if mode == "time":
        K, H, N, V = _holdout(series, context, horizon, test_last, val_last, group)
        _regular_grid(series, time, group)
        T = K + H
        splits, t0 = _collect(series, lambda s: windows_between(len(s), K, H, len(s) - N - V,
                                                                len(s) - N), T, S, single)
        opts.update(test_last=N, val_last=V, layout=_time_layout(series, time, group, K, H, N, V,
                                                                 len(splits[0])))
    elif mode == "fraction":
        s0 = series[0]
        K = context if context is not None else max(2, min(12, len(s0) // 6))
        H = horizon if horizon is not None else max(1, K // 3)
        T = K + H
        if len(s0) < T:
            raise TaskDataError(f"the series has {len(s0)} rows, fewer than --context {K} + "
                                f"--horizon {H} = {T}")
        starts = chronological_windows(len(s0), K, H, split)
        _regular_grid(series, time, group)
        splits, t0 = _collect(series, lambda s: starts, T, S, single)
        opts["layout"] = (f"chronological windows of {K} context + {H} forecast steps; "
                          f"train/val/test {'/'.join(str(len(x)) for x in splits)} windows in "
                          f"time order (split {tuple(split)})")
    else:
        return _by_group(series, time, group, S, context, horizon, window, val_size,
                         test_size, split, seed)
    time_ref = series[0].t[:T] - series[0].t[0]
    opts.update(context=K, horizon=H, window=K, t_start=t0)
    return splits, time_ref, K, opts


def _time_layout(series: list[Series], time: str, group: str | None, K: int, H: int, N: int,
                 V: int, n_train_windows: int) -> str:
    s = series[0]
    n = len(s)
    test = f"{_fmt_time(s.raw[n - N])}..{_fmt_time(s.raw[-1])}" if N > 1 else _fmt_time(s.raw[-1])
    of = (f"of {n} {time} values ({test})" if group is None else
          f"of every series of --group {group} ({len(series)} series, shortest "
          f"{min(len(x) for x in series)} points; first: {test})")
    return (f"test: last {N} {of}, forecast {H} step{'s' if H > 1 else ''} from {time} "
            f"{_fmt_time(s.raw[n - N - 1])} given {K} step{'s' if K > 1 else ''} of context; "
            f"validation: the {V} before; training: everything earlier ({n_train_windows} "
            f"window{'s' if n_train_windows > 1 else ''})")


def _by_group(series: list[Series], time: str, group: str | None, S: int,
              context: int | None, horizon: int | None, window: int | None,
              val_size: float | None, test_size: float | None, split: Sequence[float],
              seed: int):
    """Whole series held out at random: full trajectories, or windows of each series."""
    split = size_split(len(series), val_size, test_size, split)
    windowed = window is not None or horizon is not None
    if windowed:
        shortest = min(len(s) for s in series)
        K = context if context is not None else max(2, min(12, shortest // 6))
        H = horizon if horizon is not None else max(1, K // 3)
        T = K + H
        usable = [s for s in series if len(s) >= T]
        if not usable:
            raise TaskDataError(f"no group has at least --context {K} + --horizon {H} = {T} "
                                f"rows; lower them")
        _regular_grid(usable, time, group)
        pieces = [(s.label, s.values[i:i + T], float(s.t[i]), i)
                  for s in usable for i in range(len(s) - T + 1)]
    else:
        T = len(series[0])
        K = context if context is not None else 1
        if not 1 <= K < T:
            raise TaskDataError(f"context={K} must be between 1 and the trajectory length - 1 "
                                f"({T - 1}); lower --context")
        ref = series[0].t - series[0].t[0]
        for s in series:
            if len(s) != T:
                raise TaskDataError(
                    f"group {s.label!r} has {len(s)} rows but group {series[0].label!r} has "
                    f"{T}; trajectories must have equal length (or pass --context/--horizon "
                    f"to cut them into windows, or --split-by time)")
            rel = s.t - s.t[0]
            if not np.allclose(rel, ref, rtol=1e-6, atol=1e-9):
                k = int(np.argmax(~np.isclose(rel, ref, rtol=1e-6, atol=1e-9)))
                raise TaskDataError(
                    f"group {s.label!r} is sampled at different relative times than group "
                    f"{series[0].label!r} (step {k}: {rel[k]:g} vs {ref[k]:g}); resample to "
                    f"a common grid")
        pieces = [(s.label, s.values, float(s.t[0]), None) for s in series]
        usable = series
    labels = np.array([p[0] for p in pieces], dtype=object)
    arr = np.stack([p[1] for p in pieces])
    starts = np.array([p[2] for p in pieces])
    first = np.array([p[3] or 0 for p in pieces], dtype=np.int64)  # window start step
    uniq = np.array(list(dict.fromkeys(labels.tolist())), dtype=object)
    parts = random_partition(uniq, split, seed, f"trajectories (groups in {group!r})")
    splits, t0 = [], {}
    for key, p in zip(SPLITS, parts):
        m = np.isin(labels, p)
        splits.append(Split(inputs=arr[m][..., S:], targets=arr[m][..., :S], groups=labels[m],
                            window_start=first[m] if windowed else None))
        t0[key] = [float(x) for x in starts[m]]
    time_ref = usable[0].t[:T] - usable[0].t[0]
    n_series = [len(p) for p in parts]
    layout = (f"test: {n_series[2]} of {len(uniq)} series (--group {group}) held out whole, "
              f"validation {n_series[1]}, training {n_series[0]}; "
              + (f"windows of {K} context + {T - K} forecast steps" if windowed else
                 f"each forecast {T - K} steps from {K} step{'s' if K > 1 else ''} of context"))
    opts = dict(split_by="group", split=list(split), context=K, horizon=T - K,
                window=K if windowed else None, t_start=t0, layout=layout)
    return splits, time_ref, K, opts
