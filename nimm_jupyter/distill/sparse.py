"""The sparse fit of a network's input-output table: numbers in, a closed-form law out.

It runs in the driver on the table the probe job sampled (pure numbers; no candidate code).
The library holds, for inputs ``x0..x{n-1}``, a constant, each input, its square, each
pairwise product, ``log|x|``, ``exp(-x)`` and the saturating ``x/(1+|x|)`` (the term names and
their meaning live in :data:`nimm_jupyter.blocks.LAW_TERMS`, which the distilled model
evaluates too). Each network output is fitted on its own by sequentially thresholded least
squares (pysindy's ``STLSQ``, columns standardised so one threshold fits every term) over a
grid of thresholds; the law kept is the sparsest whose error is within ``tolerance`` (a share
of the output's standard deviation) of the best one on the grid.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ..blocks import law_features

__all__ = ["Law", "library_terms", "fit_law", "laws_to_meta", "laws_from_meta", "THRESHOLDS"]

# smallest kept contribution of a term, in units of the output's standard deviation
THRESHOLDS = tuple(float(t) for t in np.geomspace(1e-3, 1.0, 16))
_RIDGE = 1e-6  # STLSQ's ridge penalty: keeps nearly collinear terms (x, x/(1+|x|)) solvable


@dataclass
class Law:
    """One network's law: ``laws[k]`` maps term name -> coefficient for output ``k``;
    ``errors[k]`` is its RMSE on the table divided by the output's standard deviation."""

    n_in: int
    laws: list[dict[str, float]]
    errors: list[float] = field(default_factory=list)
    rows: int = 0

    @property
    def n_terms(self) -> int:
        return sum(len(law) for law in self.laws)


def library_terms(n_in: int) -> list[str]:
    """Every term of the library for ``n_in`` inputs, in a fixed order."""
    terms = ["1"]
    terms += [f"x{i}" for i in range(n_in)]
    terms += [f"x{i}^2" for i in range(n_in)]
    terms += [f"x{i}*x{j}" for i in range(n_in) for j in range(i + 1, n_in)]
    terms += [f"log|x{i}|" for i in range(n_in)]
    terms += [f"exp(-x{i})" for i in range(n_in)]
    terms += [f"x{i}/(1+|x{i}|)" for i in range(n_in)]
    return terms


def _usable(theta: np.ndarray, terms: list[str]) -> list[int]:
    """Columns worth fitting: finite, not constant (the constant term aside), and not a
    duplicate of an earlier column (an input that is constant on the table, log of a
    positive input equal to another, ...)."""
    keep: list[int] = []
    for j, term in enumerate(terms):
        col = theta[:, j]
        if not np.isfinite(col).all():
            continue
        if term != "1" and np.std(col) < 1e-10 * max(1.0, float(np.abs(col).max())):
            continue
        if any(np.allclose(col, theta[:, k], rtol=1e-9, atol=1e-12) for k in keep):
            continue
        keep.append(j)
    return keep


def _stlsq(theta: np.ndarray, y: np.ndarray, threshold: float) -> np.ndarray:
    """STLSQ on standardised columns (each term, and ``y``, scaled to unit standard
    deviation; the constant stays 1), so ``threshold`` is the smallest contribution a term
    may make in units of the output's spread; coefficients returned on the raw scale."""
    from pysindy.optimizers import STLSQ

    col = theta.std(axis=0)
    col[col < 1e-12] = 1.0  # the constant term
    ys = float(np.std(y))
    opt = STLSQ(threshold=threshold, alpha=_RIDGE, max_iter=50)
    with warnings.catch_warnings():  # a threshold that removes every term is an answer here
        warnings.simplefilter("ignore")
        opt.fit(theta / col, (y / ys).reshape(-1, 1))
    return np.asarray(opt.coef_, dtype=np.float64).reshape(-1) * ys / col


def _fit_output(theta: np.ndarray, y: np.ndarray, terms: list[str],
                tolerance: float) -> tuple[dict[str, float], float]:
    scale = float(np.std(y))
    if scale < 1e-12 * max(1.0, float(np.abs(y).max())):  # a constant output (or unused)
        return {"1": float(np.mean(y))}, 0.0
    candidates: list[tuple[int, float, np.ndarray]] = []
    for threshold in THRESHOLDS:
        coef = _stlsq(theta, y, threshold)
        support = np.flatnonzero(coef)
        if len(support) == 0:
            continue
        # refit the support by plain least squares: the law's coefficients, unshrunk
        sol, *_ = np.linalg.lstsq(theta[:, support], y, rcond=None)
        coef = np.zeros_like(coef)
        coef[support] = sol
        err = float(np.sqrt(np.mean((theta @ coef - y) ** 2)) / scale)
        if math.isfinite(err):
            candidates.append((len(support), err, coef))
    if not candidates:
        return {"1": float(np.mean(y))}, 1.0
    best = min(err for _, err, _ in candidates)
    k, err, coef = min((c for c in candidates if c[1] <= best + tolerance),
                       key=lambda c: (c[0], c[1]))
    return {terms[j]: float(coef[j]) for j in np.flatnonzero(coef)}, err


def fit_law(x: np.ndarray, y: np.ndarray, tolerance: float = 0.05) -> Law:
    """The sparse law of a network sampled as inputs ``x`` ``(N, n_in)`` and outputs ``y``
    ``(N, n_out)``; ``tolerance`` is how much worse than the best fit on the threshold grid
    (in units of each output's standard deviation) a sparser law may be."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(x) < 2:
        raise ValueError(f"need tables (N, n_in) and (N, n_out) with N >= 2, got {x.shape}, {y.shape}")
    all_terms = library_terms(x.shape[1])
    theta_all = law_features(torch.as_tensor(x), all_terms).numpy()
    keep = _usable(theta_all, all_terms)
    theta, terms = theta_all[:, keep], [all_terms[j] for j in keep]
    laws, errors = [], []
    for k in range(y.shape[1]):
        law, err = _fit_output(theta, y[:, k], terms, tolerance)
        laws.append(law)
        errors.append(err)
    return Law(n_in=x.shape[1], laws=laws, errors=errors, rows=len(x))


def laws_to_meta(laws: dict[str, Law]) -> dict[str, dict]:
    """``laws`` as plain JSON values (a node's ``proposer_meta["laws"]``)."""
    return {path: {"n_in": law.n_in, "laws": law.laws, "rel_rmse": law.errors, "rows": law.rows}
            for path, law in laws.items()}


def laws_from_meta(d: dict) -> dict[str, Law]:
    """The inverse of :func:`laws_to_meta` (journals are read back through it)."""
    return {str(path): Law(n_in=int(v["n_in"]), laws=[{str(t): float(c) for t, c in out.items()}
                                                      for out in v["laws"]],
                           errors=[float(e) for e in v.get("rel_rmse", [])], rows=int(v.get("rows", 0)))
            for path, v in (d or {}).items()}
