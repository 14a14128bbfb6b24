"""The benchmark's statistics on made-up numbers with known answers: mean ± standard error,
Student's t p-values against closed forms, the paired t-test and the verdicts built on it."""
import math

import pytest

from nimm_jupyter.bench.aggregate import _checks, _stats
from nimm_jupyter.bench.stats import ALPHA, cell, paired_t_test, t_two_sided_p


def test_cell_mean_std_se_worst_skip_non_finite():
    c = cell([1.0, 2.0, 3.0, 4.0, math.nan, math.inf])
    assert (c.mean, c.worst, c.n) == (2.5, 4.0, 4)
    assert c.std == pytest.approx(math.sqrt(5 / 3))  # sum of squares 5, n-1 = 3
    assert c.se == pytest.approx(math.sqrt(5 / 3) / 2)
    one = cell([7.0])
    assert (one.mean, one.std, one.se, one.n) == (7.0, 0.0, 0.0, 1)
    empty = cell([math.nan])
    assert empty.n == 0 and math.isnan(empty.mean) and math.isnan(empty.se)


@pytest.mark.parametrize("t", [0.0, 0.5, 1.0, 2.5, -3.0, 12.0])
def test_t_p_value_matches_closed_forms(t):
    # df = 1 is the Cauchy distribution; df = 2 has P(|T| >= t) = 1 - t / sqrt(t^2 + 2).
    assert t_two_sided_p(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(abs(t)), abs=1e-12)
    assert t_two_sided_p(t, 2) == pytest.approx(1 - abs(t) / math.sqrt(t * t + 2), abs=1e-12)


def test_t_p_value_tends_to_the_normal_and_rejects_bad_df():
    assert t_two_sided_p(1.959963985, 10**7) == pytest.approx(0.05, abs=1e-6)
    assert t_two_sided_p(3.0, 5) < t_two_sided_p(3.0, 3) < t_two_sided_p(2.0, 3)
    with pytest.raises(ValueError):
        t_two_sided_p(1.0, 0)


def test_paired_t_test_known_answer():
    a = {0: 3.0, 1: 8.0, 2: 1.0, 3: 5.0}
    b = {0: 5.0, 1: 10.1, 2: 2.9, 3: 99.0, 4: 1.0}  # seed 4: no pair; seed 3: a is NaN below
    a[3] = math.nan
    r = paired_t_test(a, b)  # differences -2, -2.1, -1.9: mean -2, sd 0.1, df 2
    assert r.n == 3 and r.mean_diff == pytest.approx(-2.0)
    assert r.se_diff == pytest.approx(0.1 / math.sqrt(3))
    t = -2.0 / (0.1 / math.sqrt(3))
    assert r.t == pytest.approx(t)
    assert r.p == pytest.approx(1 - abs(t) / math.sqrt(t * t + 2))
    assert r.p < ALPHA and r.a_beats_b is True
    assert "n=3" in r.describe() and "paired t p=" in r.describe()


def test_paired_t_test_edge_cases():
    weak = paired_t_test({0: 1.0, 1: 2.0, 2: 3.0}, {0: 2.0, 1: 4.0, 2: 6.0})  # d = -1,-2,-3
    assert weak.p == pytest.approx(1 - 2 * math.sqrt(3) / math.sqrt(14))  # 0.074
    assert weak.a_beats_b is False  # lower on every seed, but three seeds do not show it
    same = paired_t_test({0: 1.0, 1: 2.0}, {0: 2.0, 1: 3.0})  # d = -1, -1: no spread
    assert same.p == 0.0 and same.a_beats_b is True
    tie = paired_t_test({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})
    assert tie.p == 1.0 and tie.a_beats_b is False
    worse = paired_t_test({0: 3.0, 1: 4.1, 2: 5.0}, {0: 1.0, 1: 2.0, 2: 3.0})
    assert worse.p < ALPHA and worse.a_beats_b is False  # significantly worse is not beating
    single = paired_t_test({0: 1.0}, {0: 2.0, 1: 3.0})
    assert single.n == 1 and single.a_beats_b is None and "too few" in single.describe()


def _cell(by_seed):
    return {**_stats(list(by_seed.values())), "by_seed": by_seed}


def test_verdicts_are_paired_not_a_comparison_of_means():
    # NIMMGen's mean is lower than the prior's (2.67 vs 2.70) but the per-seed differences
    # (-0.1, +1, -1) do not hold up: no "beats".
    prior = _cell({0: 1.1, 1: 4.0, 2: 3.0})
    noisy = _cell({0: 1.0, 1: 5.0, 2: 2.0})
    c = _checks({"nimmgen": noisy}, {"prior": prior})
    assert noisy["mean"] < prior["mean"] and c["nimmgen_beats_prior"] is False
    assert c["paired_tests"]["nimmgen_vs_prior"]["n"] == 3
    assert c["nimmgen_beats_neural"] is None  # no neural reference
    # A small but consistent gain beats the prior although seed-to-seed spread is large.
    prior = _cell({0: 1.0, 1: 10.0, 2: 5.0})
    steady = _cell({0: 0.9, 1: 9.88, 2: 4.91})
    sampling = _cell({0: 1.0, 1: 10.0, 2: 5.0})
    greedy = _cell({0: 2.0, 1: 9.0, 2: 5.5})
    c = _checks({"nimmgen": steady, "greedy": greedy, "sampling": sampling}, {"prior": prior})
    assert c["nimmgen_beats_prior"] is True
    assert c["beats_sampling"] == {"nimmgen": True, "greedy": False}
    assert "greedy_vs_sampling" in c["paired_tests"]
    assert "sampling_vs_sampling" not in c["paired_tests"]
