"""How a task's samples are split: chronological windows for series, random partitions of
rows or groups for everything else. Shared by DataFrame tasks and the built-in series tasks."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import TaskDataError

__all__ = ["chronological_windows", "check_split", "split_counts", "random_partition"]


# -- chronological windows ------------------------------------------------------------------
def chronological_windows(n_steps: int, window: int, horizon: int,
                          split: Sequence[float] = (0.6, 0.2, 0.2)) -> dict[str, np.ndarray]:
    """Window start indices for a chronological train/val/test split on forecast steps.

    Forecast steps ``window .. n_steps-1`` are cut into consecutive periods in the ratio
    ``split``; a window (``window`` context + ``horizon`` forecast steps starting at ``s``)
    belongs to the split whose period holds all its forecast steps. Windows whose
    forecasts straddle a boundary are dropped, so no forecast step is scored in two splits.
    """
    check_split(split)
    if window < 1 or horizon < 1:
        raise TaskDataError(f"window and horizon must be >= 1, got window={window}, "
                            f"horizon={horizon}")
    n_forecast = n_steps - window
    cut1 = window + int(round(split[0] / sum(split) * n_forecast))
    cut2 = window + int(round((split[0] + split[1]) / sum(split) * n_forecast))
    s = np.arange(max(n_steps - window - horizon + 1, 0))
    first, last = s + window, s + window + horizon - 1
    starts = {
        "train": s[last < cut1],
        "val": s[(first >= cut1) & (last < cut2)],
        "test": s[first >= cut2],
    }
    empty = [k for k, v in starts.items() if len(v) == 0]
    if empty:
        raise TaskDataError(
            f"too few time steps ({n_steps}) for window={window} + horizon={horizon} with a "
            f"chronological split {tuple(split)}: no window's forecast fits entirely in the "
            f"{' or '.join(empty)} period; use a longer series or a smaller window/horizon")
    return starts


def check_split(split: Sequence[float]) -> None:
    """Raise :class:`TaskDataError` unless ``split`` is three positive finite fractions."""
    if len(split) != 3 or any((not np.isfinite(x)) or x <= 0 for x in split):
        raise TaskDataError(f"split must be three positive fractions (train, val, test), "
                            f"got {tuple(split)}")


def split_counts(n: int, split: Sequence[float], what: str) -> tuple[int, int, int]:
    """Sizes (train, val, test) of ``n`` ``what`` in the ratio ``split``; each at least 1."""
    if n < 3:
        raise TaskDataError(f"too few {what} ({n}) for a train/val/test split; need at least 3")
    total = float(sum(split))
    n_val = max(1, int(round(n * split[1] / total)))
    n_test = max(1, int(round(n * split[2] / total)))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise TaskDataError(f"too few {what} ({n}) for the split {tuple(split)}; add data")
    return n_train, n_val, n_test


def random_partition(keys: np.ndarray, split: Sequence[float], seed: int,
                      what: str) -> list[np.ndarray]:
    """``keys`` shuffled with ``seed`` and cut into [train, val, test] by :func:`split_counts`."""
    n_train, n_val, _ = split_counts(len(keys), split, what)
    order = np.random.default_rng(seed).permutation(len(keys))
    return [keys[order[:n_train]], keys[order[n_train:n_train + n_val]],
            keys[order[n_train + n_val:]]]
