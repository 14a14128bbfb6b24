"""Checks and conversions of a user's DataFrame columns, shared by the tabular and the series
layouts of :func:`~nimm_jupyter.tasks.task_from_dataframe`. Every problem raises one
:class:`TaskDataError` naming the column and row (index label) at fault."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .base import TaskDataError

__all__ = ["pandas_module", "row_label", "numeric_column", "check_finite", "time_values",
           "column_list", "describe_columns", "clean_numeric", "task_text"]


def pandas_module():
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - pandas is in the test extras
        raise ImportError("task_from_dataframe needs pandas: pip install pandas") from exc
    return pd


def row_label(label: Any) -> Any:
    """An index label as a plain Python value, so messages read ``row 5``, not ``np.int64(5)``."""
    return label.item() if isinstance(label, np.generic) else label


def numeric_column(df, col: str):
    """The column as float64, or TaskDataError naming a non-numeric example value."""
    pd = pandas_module()
    s = df[col]
    if pd.api.types.is_bool_dtype(s):
        return s.astype(np.float64)
    if not pd.api.types.is_numeric_dtype(s):
        conv = pd.to_numeric(s, errors="coerce")
        bad = conv.isna() & s.notna()
        if bad.any():
            row = row_label(bad.idxmax())
            raise TaskDataError(f"column {col!r} is not numeric: row {row!r} holds "
                                f"{s.loc[row]!r}")
        s = conv
    return s.astype(np.float64)


def check_finite(values, col: str) -> None:
    arr = values.to_numpy()
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.argmax(bad))
        what = "NaN" if np.isnan(arr[i]) else "inf"
        raise TaskDataError(f"column {col!r} has {what} at row {row_label(values.index[i])!r}; "
                            f"drop or fill missing values first")


def time_values(df, col: str):
    """Time as float (datetimes become days since the first time), checked finite."""
    pd = pandas_module()
    s = df[col]
    if pd.api.types.is_datetime64_any_dtype(s):
        if s.isna().any():
            raise TaskDataError(f"column {col!r} has a missing time (NaT) at row "
                                f"{row_label(s.index[int(np.argmax(s.isna().to_numpy()))])!r}")
        days = (s - s.min()) / pd.Timedelta(days=1)
        return days.astype(np.float64), "days"
    vals = numeric_column(df, col)
    check_finite(vals, col)
    return vals, ""


def column_list(x: str | Sequence[str] | None, what: str) -> list[str]:
    if x is None:
        return []
    if isinstance(x, str):
        return [x]
    out = list(x)
    for c in out:
        if not isinstance(c, str):
            raise TaskDataError(f"{what} must be column names (strings), got {c!r}")
    twice = [c for i, c in enumerate(out) if c in out[:i]]
    if twice:
        # a repeated target would make every candidate fail with a shape error later
        raise TaskDataError(f"{what} names {twice[0]!r} twice; list each column once "
                            f"(--{what} {','.join(dict.fromkeys(out))})")
    return out


def describe_columns(df, cols: list[str], units: Mapping[str, str]) -> str:
    lines = []
    for c in cols:
        v = df[c].to_numpy(dtype=np.float64)
        unit = f" [{units[c]}]" if units.get(c) else ""
        lines.append(f"  {c}{unit}: range {v.min():.4g} .. {v.max():.4g}, mean {v.mean():.4g}")
    return "\n".join(lines)


def clean_numeric(df, cols: list[str]):
    pd = pandas_module()
    out = {}
    for c in cols:
        vals = numeric_column(df, c)
        check_finite(vals, c)
        out[c] = vals
    return pd.DataFrame(out, index=df.index)


def task_text(description: str, prior_text: str, facts: str, default_first: str) -> str:
    parts = [description.strip() or default_first]
    if prior_text.strip():
        parts.append("Mechanism (from the user): " + prior_text.strip())
    parts.append(facts)
    return "\n".join(parts)
