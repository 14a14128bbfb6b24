"""Rank the dynamics grammar's candidate terms by how much of the prior's residual each explains.

The proposer never runs candidate code. It has the observed training trajectories
(``ProposalContext.train_series``) and the fitted prior's teacher-forced one-step predictions
on them, as the prior's sandboxed job returned them (``ProposalContext.prior_one_step``). Over
one sample interval ``h`` the prior, started from the observed ``y_k``, misses
``y_{k+1} - ŷ_{k+1} ≈ h · g(ȳ_k)``, where ``g`` is what its derivative lacks and ``ȳ_k`` the
midpoint of the observed step. So ``r = (y_{k+1} - ŷ_{k+1}) / h`` is a finite-difference
estimate of the missing derivative, and each candidate term ``φ`` on state ``s`` is fitted to
``r_s`` by least squares with one coefficient (sign-constrained for the damping and drag
terms, whose coefficient is positive). A term's score is the share of the residual's sum of
squares it removes, on the search's normalised scale (each state divided by its training
spread), so terms on different states compare. The coefficient also starts the term's fit.

Limits: one term at a time (two terms that each explain part of the residual are not fitted
jointly); the saturation constant of ``x/(1+c·x)`` is fixed at its starting value ``1/std(x)``;
the prior's constants were fitted without the term, so a term the fit partly compensated for
scores lower than it would with the constants refitted.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..base import TrainSeries

# a state must be observed in this many steps before its residual is trusted
MIN_STEPS = 4


@dataclass(frozen=True)
class RankedTerm:
    state: str  # whose derivative gets the term
    term: str  # the catalogue entry (see dynamics.term_catalogue)
    coef: float  # least-squares coefficient (the rendered term's starting value)
    explained: float  # share of the normalised residual sum of squares it removes, 0..1


def residual_derivative(series: TrainSeries, one_step: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(r, mid, u)``: the missing derivative per observed step ``(M, S)``, the midpoints it
    is evaluated at ``(M, S)`` and the inputs held over the step ``(M, U)``; rows with a
    missing value dropped. None when the shapes do not match or too few steps remain."""
    y, C = np.asarray(series.states, dtype=np.float64), int(series.context)
    p = np.asarray(one_step, dtype=np.float64)
    if y.ndim != 3 or p.shape != (y.shape[0], y.shape[1] - C, y.shape[2]) or C < 1:
        return None
    h = np.diff(np.asarray(series.time, dtype=np.float64))[C - 1:]  # (T-C,)
    before, after = y[:, C - 1:-1], y[:, C:]
    r = (after - p) / h[None, :, None]
    mid = (before + after) / 2
    u = np.asarray(series.inputs, dtype=np.float64)[:, C - 1:-1]
    m = r.shape[0] * r.shape[1]  # explicit: a task without inputs has U = 0 columns
    r, mid, u = (a.reshape(m, a.shape[-1]) for a in (r, mid, u))
    keep = np.isfinite(r).all(1) & np.isfinite(mid).all(1) & np.isfinite(u).all(1)
    if keep.sum() < MIN_STEPS:
        return None
    return r[keep], mid[keep], u[keep]


def term_values(term: str, own: str, names: list[str], z: np.ndarray,
                spread: np.ndarray) -> np.ndarray:
    """The term's value without its coefficient, as the dynamics grammar renders it, at the
    variables ``z`` ``(M, V)`` (states then inputs, in ``names`` order)."""
    col = {n: z[:, i] for i, n in enumerate(names)}
    if term == "damp(self)":  # rendered as -c * x with c > 0
        return -col[own]
    if term == "drag(self)":  # -c * x * |x|
        return -col[own] * np.abs(col[own])
    if "/(1+c*" in term:
        v = term.split("/", 1)[0]
        return col[v] / (1.0 + col[v] / spread[names.index(v)])
    if "^2*" in term:
        a, b = term.split("^2*")
        return col[a] ** 2 * col[b]
    if "*" in term:
        a, b = term.split("*")
        return col[a] * col[b]
    return col[term]


def _spread(block: np.ndarray) -> np.ndarray:
    a = np.asarray(block, dtype=np.float64)
    a = a.reshape(a.shape[0] * a.shape[1], a.shape[-1])
    if a.shape[1] == 0 or a.shape[0] == 0:
        return np.ones(a.shape[1])
    with np.errstate(invalid="ignore"):
        s = np.nanstd(a, axis=0)
    return np.where(np.isfinite(s) & (s > 0), s, 1.0)


def rank_terms(series: TrainSeries, one_step: np.ndarray, states: list[str], inputs: list[str],
               catalogue: tuple[str, ...]) -> list[RankedTerm]:
    """Every (state, term) of ``catalogue`` on every state, best explaining first; empty
    when the residual cannot be formed (see :func:`residual_derivative`)."""
    got = residual_derivative(series, one_step)
    if got is None:
        return []
    r, mid, u = got
    z = np.concatenate([mid, u], axis=1)
    names = [*states, *inputs]
    # the variables' training spread: the states' is the normalised scale the search scores on
    spread = np.concatenate([_spread(series.states), _spread(series.inputs)])
    rn = r / spread[None, :len(states)]
    total = float((rn ** 2).sum())
    if not total > 0:
        return []
    out = []
    for term in catalogue:
        if term == "none":
            continue
        for i, s in enumerate(states):
            phi = term_values(term, s, names, z, spread)
            ok = np.isfinite(phi)
            denom = float((phi[ok] ** 2).sum())
            if not denom > 0:
                continue
            coef = float((phi[ok] * r[ok, i]).sum()) / denom
            if term in ("damp(self)", "drag(self)") and coef <= 0:
                continue  # a damping with the wrong sign is not this term
            explained = coef ** 2 * denom / spread[i] ** 2 / total
            out.append(RankedTerm(s, term, coef, explained))
    out.sort(key=lambda t: (-t.explained, t.state, t.term))
    return out
