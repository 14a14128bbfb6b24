"""How a task's samples are split: chronological windows for series, random partitions of
rows or groups for everything else. Shared by DataFrame tasks and the built-in series tasks."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import Split, TaskDataError

__all__ = ["chronological_windows", "windows_between", "check_split", "split_counts",
           "random_partition", "size_split", "holdout_indices"]


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
    starts = windows_between(n_steps, window, horizon, cut1, cut2)
    empty = [k for k, v in starts.items() if len(v) == 0]
    if empty:
        raise TaskDataError(
            f"too few time steps ({n_steps}) for window={window} + horizon={horizon} with a "
            f"chronological split {tuple(split)}: no window's forecast fits entirely in the "
            f"{' or '.join(empty)} period; use a longer series or a smaller window/horizon")
    return starts


def windows_between(n_steps: int, context: int, horizon: int, cut1: int,
                    cut2: int) -> dict[str, np.ndarray]:
    """Start indices of the windows (``context`` + ``horizon`` steps) whose forecast steps all
    lie before ``cut1`` (train), in ``[cut1, cut2)`` (val) or from ``cut2`` on (test).

    A window's context may reach into an earlier period (it is observed, not scored); windows
    whose forecasts straddle a cut are dropped, so no step is scored in two splits.
    """
    s = np.arange(max(n_steps - context - horizon + 1, 0))
    first, last = s + context, s + context + horizon - 1
    return {
        "train": s[last < cut1],
        "val": s[(first >= cut1) & (last < cut2)],
        "test": s[first >= cut2],
    }


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



def size_split(n: int, val_size: float | None, test_size: float | None,
               split: Sequence[float]) -> tuple[float, float, float]:
    """``split`` with the validation/test shares replaced by ``val_size``/``test_size``: a
    fraction below 1, or a count of the ``n`` rows (groups) from 1 up."""
    def share(size: float | None, flag: str, default: float) -> float:
        if size is None:
            return default
        if not np.isfinite(size) or size <= 0 or (size >= 1 and size != int(size)):
            raise TaskDataError(f"--{flag} must be a fraction in (0, 1) or a whole count, "
                                f"got {size:g}")
        return size if size < 1 else size / n

    total = float(sum(split))
    val = share(val_size, "val-size", split[1] / total)
    test = share(test_size, "test-size", split[2] / total)
    if val + test >= 1:
        raise TaskDataError(f"--val-size and --test-size leave nothing to train on "
                            f"(validation {val:.3g} + test {test:.3g} of {n})")
    return (1.0 - val - test, val, test)


# -- the hold-out a job early-stops on ------------------------------------------------------
HOLDOUT_SEED = 0  # fixed, so every candidate (and every search seed) stops on the same samples


def holdout_indices(split: Split, fraction: float, *, windows: bool = False,
                    horizon: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """Sample indices ``(fit, hold)`` of a training ``split`` cut for early stopping, and how.

    The process that trains a candidate holds no validation or test targets (issue 15), so it
    stops on a hold-out carved from training. ``fraction`` of the units is held out (at least
    one), where a unit is what the split's ``groups`` name:

    * ``windows`` (a windowed series, whose integer ``groups`` are the windows' start steps):
      the latest starts, chronologically, and windows whose forecast steps (the last
      ``horizon`` of each) would overlap the hold-out's are dropped from the fit;
    * otherwise a seeded random choice of groups (patients, alloy families) or of samples.

    With fewer than two units nothing can be held out: ``hold`` is then the whole split, the
    fit stops on its own training error, and the text says so.
    """
    n = len(split)
    groups = split.groups
    every = np.arange(n)
    if windows and groups is not None and np.issubdtype(np.asarray(groups).dtype, np.integer):
        starts = np.asarray(groups, dtype=np.int64)
        uniq = np.unique(starts)
        if len(uniq) >= 2:
            n_hold = max(1, int(round(fraction * len(uniq))))
            first = uniq[len(uniq) - n_hold]
            hold = every[starts >= first]
            # a fit window forecasts steps start+C..start+C+horizon-1 (C = context, the same
            # for every window): it must end before the hold-out's first forecast step
            fit = every[starts + horizon <= first]
            if len(fit):
                return fit, hold, (f"the latest {n_hold} of {len(uniq)} training windows "
                                   f"(start step {int(first)} on)")
    else:
        units = np.asarray(groups) if groups is not None else every
        uniq = np.array(list(dict.fromkeys(units.tolist())), dtype=object)
        if len(uniq) >= 2:
            n_hold = min(len(uniq) - 1, max(1, int(round(fraction * len(uniq)))))
            chosen = uniq[np.random.default_rng(HOLDOUT_SEED).permutation(len(uniq))[:n_hold]]
            mask = np.isin(units.astype(object), chosen)
            what = "groups" if groups is not None else "samples"
            return every[~mask], every[mask], f"{n_hold} of {len(uniq)} training {what} at random"
    return every, every, ("no hold-out (fewer than two training units): early stopping on the "
                          "training error itself")
