"""The benchmark's statistics: mean ± standard error of a cell, and the paired test behind
every "beats" verdict.

Why paired: two policies run on the same seeds (and splits) share each seed's data draw and
training noise, so the per-seed differences are far less noisy than the two means; a verdict
that compares unpaired means can flip with one unlucky seed. The test is a two-sided paired
t-test on the per-unit differences, computed with :mod:`math` only (Student's t CDF through
the regularised incomplete beta function), so it needs no SciPy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Hashable, Mapping

#: Significance level of every "beats" verdict (two-sided paired t-test).
ALPHA = 0.05


@dataclass(frozen=True)
class Cell:
    """Mean, sample std, standard error (std/√n; 0 for one value) and worst case of the
    finite values of one benchmark cell."""

    mean: float
    std: float
    se: float
    worst: float
    n: int


def cell(values: list[float]) -> Cell:
    """The :class:`Cell` of ``values``; NaN and inf are left out (a run without a model)."""
    v = [float(x) for x in values if math.isfinite(x)]
    if not v:
        return Cell(math.nan, math.nan, math.nan, math.nan, 0)
    mean = math.fsum(v) / len(v)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return Cell(mean, std, std / math.sqrt(len(v)), max(v), len(v))


@dataclass(frozen=True)
class PairedTest:
    """A two-sided paired t-test of ``a - b`` over the units (seeds, splits) both have.

    ``mean_diff`` < 0 means ``a`` has the lower RMSE. ``p`` is NaN when there are fewer than
    two pairs; with identical differences (zero spread) it is 0 for a non-zero mean and 1
    for a zero one.
    """

    n: int
    mean_diff: float
    se_diff: float
    t: float
    p: float

    @property
    def a_beats_b(self) -> bool | None:
        """True when ``a``'s RMSE is lower and the test holds at :data:`ALPHA`; None when
        there are too few pairs to test."""
        if not math.isfinite(self.p):
            return None
        return bool(self.mean_diff < 0 and self.p < ALPHA)

    def describe(self) -> str:
        """E.g. ``Δ -0.12 ± 0.03, paired t p=0.012, n=5``."""
        if self.n < 2:
            return f"n={self.n} pair(s): too few to test"
        return (f"Δ {self.mean_diff:.4g} ± {self.se_diff:.3g}, paired t p={self.p:.3g}, "
                f"n={self.n}")


def paired_t_test(a: Mapping[Hashable, float], b: Mapping[Hashable, float]) -> PairedTest:
    """Paired t-test of ``a[k] - b[k]`` over the keys where both values are finite."""
    d = [a[k] - b[k] for k in a if k in b and math.isfinite(a[k]) and math.isfinite(b[k])]
    n = len(d)
    if n < 2:
        mean = d[0] if d else math.nan
        return PairedTest(n, mean, math.nan, math.nan, math.nan)
    c = cell(d)
    if c.se == 0.0:
        return PairedTest(n, c.mean, 0.0, math.copysign(math.inf, c.mean) if c.mean else 0.0,
                          0.0 if c.mean else 1.0)
    t = c.mean / c.se
    return PairedTest(n, c.mean, c.se, t, t_two_sided_p(t, n - 1))


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| ≥ |t|) for Student's t with ``df`` degrees of freedom: I_{df/(df+t²)}(df/2, ½)."""
    if df < 1:
        raise ValueError("df must be >= 1")
    return _reg_inc_beta(df / 2.0, 0.5, df / (df + t * t))


def _reg_inc_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b) by Lentz's continued fraction
    (Numerical Recipes §6.4), using the symmetry I_x(a,b) = 1 - I_{1-x}(b,a) where the
    fraction converges slowly."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h
