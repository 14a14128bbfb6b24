"""Rank saturations of the prior's constants by how much of its residual each explains.

The dynamics grammar's saturation move makes one constant ``k`` of the prior saturate in one
non-negative variable ``v`` (a state or an input): ``k -> k / (1 + c * v)``, the
Michaelis–Menten / Holling type-II form that turns a mass-action rate into a saturating one
(a predation ``a·x·y`` into ``a·x·y / (1 + c·x)``). It is mechanistic (no network) and keeps
``k`` identifiable: its value at ``v = 0``. Which ``(k, v)``, is read off the fitted prior's
residual, as :mod:`.term_ranking` reads which term to add.

To first order in ``log k`` the saturation moves the prior's rate by
``D_k(z) * (-log(1 + c * v))``, where ``D_k`` is the rate's sensitivity to ``log k``
(``d ŷ / d log k`` of the one-step predictions, per unit time; the sandboxed job computed it,
:mod:`nimm_jupyter.modeling.sensitivity`, so no candidate code runs here): one column over
every state's derivative at once (a constant the prior uses in several equations saturates
in all of them, as the rendered model does). It is fitted to the residual by least squares
beside ``D_j`` for every constant ``j`` (the prior's constants refitted, to first order), on
the search's normalised scale (each state divided by its training spread), with a positive
coefficient (a saturation lowers the rate), and scores the share of the residual's sum of
squares it removes beyond that refit: the same scale as the term ranking's.

Limits: first order in the change of ``log k``; ``c`` fixed at ``1 / std(v)`` in the ranking
(as the term ranking fixes the saturation of ``v/(1+c·v)``; the rendered model fits it from
there); only variables that are never negative in the training data saturate.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..base import TrainSeries
from .term_ranking import _fit, _spread, residual_derivative

__all__ = ["RankedSaturation", "rank_saturations", "saturation_choice", "parse_saturation",
           "saturation_note", "nonnegative_variables"]

_CHOICE = re.compile(r"^(\w+)/\(1\+c\*(\w+)\)$")


@dataclass(frozen=True)
class RankedSaturation:
    constant: str  # the prior's constant that saturates
    variable: str  # in this non-negative state or input
    explained: float  # share of the normalised residual's sum of squares it removes beyond
    # the refit of every constant (the ranking), 0..1
    with_refit: float  # share it and that refit remove together

    @property
    def choice(self) -> str:
        return saturation_choice(self.constant, self.variable)


def saturation_choice(constant: str, variable: str) -> str:
    """The grammar's slot value of ``constant`` saturating in ``variable``."""
    return f"{constant}/(1+c*{variable})"


def parse_saturation(choice: str) -> tuple[str, str]:
    """``(constant, variable)`` of a slot value written by :func:`saturation_choice`."""
    m = _CHOICE.match(choice)
    if not m:
        raise ValueError(f"not a saturation: {choice!r}")
    return m.group(1), m.group(2)


def saturation_note(rank: int, s: RankedSaturation) -> str:
    """How a change text cites a ranked saturation."""
    return (f"ranked {rank} of the saturations on the fitted mechanism's residual: removes "
            f"{s.with_refit:.0%} of it with the constants refitted")


def nonnegative_variables(series: TrainSeries | None, states: list[str],
                          inputs: list[str]) -> list[str]:
    """The states and inputs never negative in the training data, and not constant there:
    the variables a constant may saturate in."""
    if series is None:
        return []
    out = []
    for names, block in ((states, series.states), (inputs, series.inputs)):
        a = np.asarray(block, dtype=np.float64)
        for j, name in enumerate(names):
            col = a[..., j][np.isfinite(a[..., j])] if a.size else np.zeros(0)
            if col.size and col.min() >= 0 and col.max() > col.min():
                out.append(name)
    return out


def rank_saturations(series: TrainSeries, one_step: np.ndarray,
                     sensitivity: dict[str, np.ndarray], states: list[str], inputs: list[str],
                     choices: tuple[str, ...]) -> list[RankedSaturation]:
    """The saturation ``choices`` (``"k/(1+c*v)"``) whose constant has a sensitivity, best
    explaining first (see the module docstring); empty when the residual cannot be formed."""
    pairs = [parse_saturation(c) for c in choices if c != "none"]
    named = list(dict.fromkeys(k for k, _ in pairs if k in sensitivity))
    res = residual_derivative(series, one_step, {k: sensitivity[k] for k in named})
    if res is None or not named:
        return []
    names = [*states, *inputs]
    spread = _spread(series.states)[None, :len(states)]
    r = (res.r / spread).ravel()
    total = float(r @ r)
    if not total > 0:
        return []
    d = {k: res.rates[k] / spread for k in named if k in res.rates}
    refit = np.stack([v.ravel() for v in d.values()], axis=1)
    base = _fit(refit, r)[1]
    out = []
    for k, v in pairs:
        if k not in d or v not in names:
            continue
        x = res.z[:, names.index(v)]
        sd = float(x.std())
        if not sd > 0 or x.min() < 0:
            continue
        col = (d[k] * -np.log1p(x / sd)[:, None]).ravel()
        if not np.isfinite(col).all() or not float(col @ col) > 0:
            continue
        sol, ss = _fit(np.concatenate([col[:, None], refit], axis=1), r)
        if sol[0] <= 0:
            continue  # it would have to raise the rate: not a saturation
        out.append(RankedSaturation(k, v, max(ss - base, 0.0) / total, ss / total))
    out.sort(key=lambda s: -s.explained)  # stable: the slot's order breaks ties
    return out
