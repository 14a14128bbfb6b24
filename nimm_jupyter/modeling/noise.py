"""How far a score can be trusted: the bootstrap standard error of a normalised RMSE.

A validation split of a handful of trajectories (or a few dozen rows) gives scores whose
differences are often within noise; a proposer and a user comparing nodes need to know by how
much. The unit of resampling is the split's first axis: a trajectory, a window of a series,
or a row. Windows of one series overlap, so for a single windowed series the figure
understates the noise (said in the docs). The resampling uses a fixed seed, so a node's score
and its standard error are reproducible.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["BOOTSTRAP_DRAWS", "bootstrap_rmse_se"]

BOOTSTRAP_DRAWS = 200  # resamples; the SE's own relative error is about 1/sqrt(2*200) = 5%


def bootstrap_rmse_se(sq: np.ndarray, counts: np.ndarray, draws: int = BOOTSTRAP_DRAWS,
                      seed: int = 0) -> float | None:
    """Standard error of ``sqrt(sum(sq) / sum(counts))`` when the units are resampled.

    ``sq[i]`` is unit ``i``'s sum of squared (normalised) errors over its scored entries and
    ``counts[i]`` how many entries it has. None when fewer than two units have entries (no
    spread can be estimated).
    """
    sq = np.asarray(sq, dtype=np.float64).ravel()
    counts = np.asarray(counts, dtype=np.float64).ravel()
    keep = counts > 0
    sq, counts = sq[keep], counts[keep]
    n = len(sq)
    if n < 2 or not np.all(np.isfinite(sq)):
        return None
    rng = np.random.default_rng(seed)
    # multinomial weights: how often each unit is drawn in each resample
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=draws).astype(np.float64)
    rmse = np.sqrt((weights @ sq) / np.maximum(weights @ counts, 1.0))
    se = float(np.std(rmse, ddof=1))
    return se if math.isfinite(se) else None
