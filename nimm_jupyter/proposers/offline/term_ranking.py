"""Rank the dynamics grammar's candidate terms by how much of the prior's residual each explains.

The proposer never runs candidate code. It has the observed training trajectories
(``ProposalContext.train_series``) and a fitted mechanism's teacher-forced one-step
predictions on them, as its sandboxed job returned them (``ProposalContext.reference_one_step``:
the user's prior, or when that failed the best model of its equations that ran, e.g. clamped;
"the prior" below).
From those two, per observed step ``y_k -> y_{k+1}`` over an interval ``h``:

* the residual ``r = (y_{k+1} - ŷ_{k+1}) / h``, a finite-difference estimate of what the
  prior's derivative lacks, at the step's observed midpoint;
* the prior's own rate ``(ŷ_{k+1} - y_k) / h``, its derivative along its own step. Least
  squares over subsets of the catalogue (and a constant) finds the few terms that reproduce it:
  the terms the prior already has on that state (the fewest, up to ``MAX_PRIOR_TERMS``,
  that reproduce it).

The prior's constants were fitted without the missing term and partly compensate for it (a
logistic prey's growth rate fitted at half its value makes up for the missing ``-x²`` on
average); a refit with the term undoes that. So each candidate term on state ``s`` is fitted
to ``r_s`` by least squares next to the prior's own terms on ``s`` (standing in for its
refitted constants), and scores the share of the residual's sum of squares it removes beyond
them, on the search's normalised scale (each state divided by its training spread) so that
terms on different states compare. A term the prior already has removes nothing. Its
coefficient in that fit (sign-constrained for the damping and drag terms, whose coefficient
is positive) starts the term's fit. A term equal to a better-ranked one on the same state
(``damp(x)`` is ``-x``) is dropped.

Limits: one term at a time (two terms that each explain part of the residual are not fitted
jointly); the saturation constant of ``x/(1+c·x)`` is fixed at its starting value ``1/std(x)``;
a prior term outside the catalogue is only approximated by the terms that reproduce it best.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from ..base import TrainSeries

MIN_STEPS = 4  # observed steps needed before a residual is trusted
MAX_PRIOR_TERMS = 4  # catalogue terms that may stand for the prior's own on one state
MAX_SUBSETS = 20_000  # subsets of one size tried exhaustively; beyond, a greedy extension
# the share of the prior's rate its terms may leave unexplained: its rate is an RK4 step's
# average, the terms are evaluated at the step's midpoint
PRIOR_FIT_TOL = 1e-4
SAME = 1 - 1e-9  # |cosine| above which two term columns are the same term


@dataclass(frozen=True)
class RankedTerm:
    state: str  # whose derivative gets the term
    term: str  # the catalogue entry (see dynamics.term_catalogue)
    coef: float  # least-squares coefficient (the rendered term's starting value)
    explained: float  # share of the normalised residual's sum of squares it removes beyond
    # the prior's own terms on its state (the ranking), 0..1
    with_refit: float  # share it and those terms remove together (the prior refitted with it)


@dataclass(frozen=True)
class Residual:
    """Per observed step (rows with a missing value dropped), for ``S`` states, ``U`` inputs."""

    r: np.ndarray  # (M, S) what the prior's derivative lacks
    z: np.ndarray  # (M, S+U) the observed step's midpoint, and the inputs held over it
    prior_rate: np.ndarray  # (M, S) the prior's derivative along its own step
    prior_z: np.ndarray  # (M, S+U) the prior's own step's midpoint, and the inputs
    # per name, (M, S): an array of the one-step predictions' shape per unit time (e.g. a
    # constant's sensitivity d ŷ/d log k / h: how the prior's rate moves with it)
    rates: dict[str, np.ndarray] = field(default_factory=dict)


def rank_note(rank: int, t: RankedTerm) -> str:
    """How a change text cites a ranked term."""
    return (f"ranked {rank} on the fitted mechanism's residual: removes {t.with_refit:.0%} "
            "of it with the constants refitted")


def residual_derivative(series: TrainSeries, one_step: np.ndarray,
                        per_step: dict[str, np.ndarray] | None = None) -> Residual | None:
    """The residual of ``one_step`` against ``series``, with each ``per_step`` array (of
    ``one_step``'s shape; one of another shape is left out) divided by the step's interval
    as ``Residual.rates``; None when the shapes do not match or fewer than ``MIN_STEPS``
    complete steps remain."""
    y, C = np.asarray(series.states, dtype=np.float64), int(series.context)
    p = np.asarray(one_step, dtype=np.float64)
    if y.ndim != 3 or p.shape != (y.shape[0], y.shape[1] - C, y.shape[2]) or C < 1:
        return None
    h = np.diff(np.asarray(series.time, dtype=np.float64))[None, C - 1:, None]
    before, after = y[:, C - 1:-1], y[:, C:]
    u = np.asarray(series.inputs, dtype=np.float64)[:, C - 1:-1]
    parts = [(after - p) / h, np.concatenate([(before + after) / 2, u], axis=2),
             (p - before) / h, np.concatenate([(before + p) / 2, u], axis=2)]
    extra = {k: np.asarray(a, dtype=np.float64) / h for k, a in (per_step or {}).items()
             if np.shape(a) == p.shape}
    m = p.shape[0] * p.shape[1]  # explicit: a task without inputs has U = 0 columns
    parts = [a.reshape(m, a.shape[-1]) for a in parts]
    extra = {k: a.reshape(m, a.shape[-1]) for k, a in extra.items()}
    keep = np.all([np.isfinite(a).all(1) for a in [*parts, *extra.values()]], axis=0)
    if keep.sum() < MIN_STEPS:
        return None
    return Residual(*(a[keep] for a in parts), rates={k: a[keep] for k, a in extra.items()})


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


def rank_terms(series: TrainSeries, one_step: np.ndarray, states: list[str], inputs: list[str],
               catalogue: tuple[str, ...]) -> list[RankedTerm]:
    """Every (state, term) of ``catalogue`` on every state, best explaining first (see the
    module docstring); empty when the residual cannot be formed."""
    res = residual_derivative(series, one_step)
    if res is None:
        return []
    names = [*states, *inputs]
    # the variables' training spread: the states' is the normalised scale the search scores on
    spread = np.concatenate([_spread(series.states), _spread(series.inputs)])
    total = float(((res.r / spread[None, :len(states)]) ** 2).sum())
    if not total > 0:
        return []
    terms = [t for t in catalogue if t != "none"]
    ranked: list[tuple[RankedTerm, np.ndarray]] = []
    for i, s in enumerate(states):
        cols = [term_values(t, s, names, res.z, spread) for t in terms]
        ones = np.ones(len(res.z))
        own = _prior_terms(res.prior_rate[:, i], [ones] + [
            term_values(t, s, names, res.prior_z, spread) for t in terms])
        # the prior's own terms (index 0 is the constant), at the observed midpoints
        nuisance = np.stack([ones, *cols], axis=1)[:, own]
        base = _fit(nuisance, res.r[:, i])[1]
        for term, phi in zip(terms, cols):
            if not np.isfinite(phi).all() or not float(phi @ phi) > 0:
                continue
            sol, ss = _fit(np.concatenate([phi[:, None], nuisance], axis=1), res.r[:, i])
            if term in ("damp(self)", "drag(self)") and sol[0] <= 0:
                continue  # a damping with the wrong sign is not this term
            norm = spread[i] ** 2 * total
            ranked.append((RankedTerm(s, term, float(sol[0]), max(ss - base, 0.0) / norm,
                                      ss / norm), phi))
    ranked.sort(key=lambda tp: -tp[0].explained)  # stable: catalogue order breaks ties
    out: list[RankedTerm] = []
    kept: list[tuple[str, np.ndarray]] = []
    for t, phi in ranked:
        unit = phi / np.linalg.norm(phi)
        if any(s == t.state and abs(float(unit @ k)) > SAME for s, k in kept):
            continue  # the same term under another name, already ranked
        kept.append((t.state, unit))
        out.append(t)
    return out


def _prior_terms(rate: np.ndarray, cols: list[np.ndarray]) -> list[int]:
    """Indices of the fewest ``cols`` (at most ``MAX_PRIOR_TERMS``) that reproduce the
    prior's ``rate`` to ``PRIOR_FIT_TOL`` by least squares, else the best ``MAX_PRIOR_TERMS``.
    Every subset of a size is tried while there are at most ``MAX_SUBSETS``; beyond that the
    best smaller subset is extended one column at a time."""
    a = np.stack(cols, axis=1)
    usable = np.isfinite(a).all(0) & ((a * a).sum(0) > 0)
    a = np.where(usable[None, :], a, 0.0)
    gram, proj, total = a.T @ a, a.T @ rate, float(rate @ rate)
    if not total > 0:
        return []
    idx = [k for k in range(a.shape[1]) if usable[k]]

    def explained(subset: tuple[int, ...]) -> float:
        g = gram[np.ix_(subset, subset)]
        try:
            x = np.linalg.solve(g, proj[list(subset)])
        except np.linalg.LinAlgError:
            return -1.0
        return float(proj[list(subset)] @ x)

    best: tuple[int, ...] = ()
    for size in range(1, min(MAX_PRIOR_TERMS, len(idx)) + 1):
        if math.comb(len(idx), size) <= MAX_SUBSETS:
            candidates = itertools.combinations(idx, size)
        else:
            candidates = (tuple(sorted((*best, k))) for k in idx if k not in best)
        best = max(candidates, key=explained)
        if total - explained(best) <= PRIOR_FIT_TOL * total:
            break
    return list(best)


def _fit(a: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares solution of ``a @ x = r`` and the sum of squares of its fit."""
    if a.shape[1] == 0:
        return np.zeros(0), 0.0
    sol = np.linalg.lstsq(a, r, rcond=None)[0]
    fit = a @ sol
    return sol, float(fit @ fit)


def _spread(block: np.ndarray) -> np.ndarray:
    a = np.asarray(block, dtype=np.float64)
    a = a.reshape(a.shape[0] * a.shape[1], a.shape[-1])
    if a.shape[1] == 0 or a.shape[0] == 0:
        return np.ones(a.shape[1])
    with np.errstate(invalid="ignore"):
        s = np.nanstd(a, axis=0)
    return np.where(np.isfinite(s) & (s > 0), s, 1.0)
