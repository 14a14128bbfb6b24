"""The offline proposer ranks candidate terms on the prior's residual before proposing them."""
from __future__ import annotations

import re

import numpy as np
import pytest

from nimm_jupyter.proposers.base import NodeView, TrainSeries
from nimm_jupyter.proposers.context import context_for
from nimm_jupyter.proposers.offline import OfflineProposer
from nimm_jupyter.proposers.offline.dynamics import DynamicsGrammar, term_catalogue
from nimm_jupyter.proposers.offline.term_ranking import rank_terms, residual_derivative
from tests.test_dynamics_grammar import DYN_PRIOR
from tests.toy_tasks import make_toy_trajectory

STATES = ["x", "y"]


def _rk4_step(f, y, h, n=4):
    for _ in range(n):
        k1 = f(y)
        k2 = f(y + h / 2 / n * k1)
        k3 = f(y + h / 2 / n * k2)
        k4 = f(y + h / n * k3)
        y = y + h / n / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return y


def brusselator(y, missing=True, growth=0.0):
    """The brusselator; ``missing=False`` leaves out -x^2*y in dy/dt, ``growth`` adds
    +growth*y there."""
    x, w = y[..., 0], y[..., 1]
    dw = 1.7 * x - (x * x * w if missing else 0.0) + growth * w
    return np.stack([1.0 - 2.7 * x + x * x * w, dw], axis=-1)


def _series_and_prior_one_step(noise=0.0, seed=0, truth=brusselator,
                               prior=lambda s: brusselator(s, missing=False)):
    """Trajectories of ``truth`` and the one-step predictions of ``prior`` (by default the
    brusselator without -x^2*y in dy/dt), each step started from the observed state (what
    the sandbox returns)."""
    rng = np.random.default_rng(seed)
    dt, T, N = 0.1, 25, 8
    y = np.empty((N, T, 2))
    y[:, 0] = rng.uniform([0.5, 1.0], [1.5, 2.5], size=(N, 2))
    for k in range(T - 1):
        y[:, k + 1] = _rk4_step(truth, y[:, k], dt, n=10)
    y = y + rng.normal(0.0, noise, y.shape) * y.std(axis=(0, 1))
    series = TrainSeries(time=np.arange(T) * dt, states=y, inputs=np.zeros((N, T, 0)), context=1)
    return series, _rk4_step(prior, y[:, :-1], dt)


def test_the_missing_term_is_ranked_first_with_its_coefficient():
    series, one_step = _series_and_prior_one_step()
    ranked = rank_terms(series, one_step, STATES, [], term_catalogue(STATES))
    best = ranked[0]
    assert (best.state, best.term) == ("y", "x^2*y")
    assert best.coef == pytest.approx(-1.0, rel=0.05)
    assert best.with_refit > 0.95 and best.explained > 2 * ranked[1].explained
    # every catalogue term on every state is ranked, "none" excepted (damping may drop out
    # when its least-squares sign is wrong)
    assert len(ranked) <= 2 * (len(term_catalogue(STATES)) - 1)


def test_the_ranking_survives_observation_noise():
    series, one_step = _series_and_prior_one_step(noise=0.01, seed=1)
    best = rank_terms(series, one_step, STATES, [], term_catalogue(STATES))[0]
    assert (best.state, best.term) == ("y", "x^2*y")
    assert best.coef == pytest.approx(-1.0, rel=0.2)


def test_a_damping_with_the_wrong_sign_is_not_offered():
    # the data grows by +0.5*y in dy/dt, which the (otherwise exact) prior lacks:
    # damp(self) (-c*y, c > 0) cannot explain it
    series, one_step = _series_and_prior_one_step(
        truth=lambda s: brusselator(s, growth=0.5), prior=brusselator)
    ranked = rank_terms(series, one_step, STATES, [], term_catalogue(STATES))
    assert (ranked[0].state, ranked[0].term) == ("y", "y")
    assert ranked[0].coef == pytest.approx(0.5, rel=0.05)
    assert ("y", "damp(self)") not in {(t.state, t.term) for t in ranked}


def test_a_term_the_prior_has_explains_nothing():
    # the prior has 1.7*x in dy/dt: re-adding it would only duplicate a fitted constant
    series, one_step = _series_and_prior_one_step()
    ranked = {(t.state, t.term): t for t in rank_terms(series, one_step, STATES, [],
                                                       term_catalogue(STATES))}
    assert ranked[("y", "x")].explained < 1e-3


def test_unusable_predictions_give_no_ranking():
    series, one_step = _series_and_prior_one_step()
    assert rank_terms(series, one_step[:, :3], STATES, [], term_catalogue(STATES)) == []
    nan = np.full_like(one_step, np.nan)
    assert residual_derivative(series, nan) is None


# -- the proposer uses the ranking -------------------------------------------------------

def _ctx(with_prior_fit: bool):
    task = make_toy_trajectory(n_train=6, n_val=2, n_test=2, T=12)
    task.prior_code = DYN_PRIOR
    ctx = context_for(task)
    assert ctx.train_series is not None and ctx.train_series.states.shape[:2] == (6, 12)
    if with_prior_fit:  # the brusselator's series under the toy's names, the input at 0
        series, ctx.reference_one_step = _series_and_prior_one_step()
        ctx.train_series = TrainSeries(series.time, series.states,
                                       np.zeros((*series.states.shape[:2], 1)), 1)
    return ctx


def test_term_draft_takes_the_best_ranked_term_once_the_prior_is_scored():
    ctx = _ctx(with_prior_fit=True)
    p = OfflineProposer(seed=0)
    keys = [s.key for s in p.strategies(ctx, 3, [])]
    assert keys[0] == "dynamics:term"
    prop = p.draft(ctx, p.strategies(ctx, 3, [])[0])
    first, second = ctx.target_names
    assert prop.meta["genome"]["term"] == f"{first}^2*{second}"
    assert prop.meta["genome"]["term_state"] == second
    assert "ranked 1" in prop.change
    start = re.search(r"self\.term_coef = _Real\(([-0-9.e]+)\)", prop.code)
    assert float(start.group(1)) == pytest.approx(-1.0, rel=0.05)  # the least-squares fit


def test_before_the_prior_is_scored_the_term_branch_is_drafted_second():
    keys = [s.key for s in OfflineProposer(seed=0).strategies(_ctx(False), 3, [])]
    assert keys[1] == "dynamics:term" and keys[0] != "dynamics:term"


def test_term_refinements_walk_down_the_ranking():
    ctx = _ctx(with_prior_fit=True)
    grammar = DynamicsGrammar(ctx)
    ranking = grammar.ranking()
    p = OfflineProposer(seed=0)
    parent_genome = grammar.with_term(grammar.base_genome("term"), ranking[0])
    parent = NodeView(id=1, branch=1, operator="draft", change="", code="", status="ok",
                      metrics={"val": {"rmse_norm": 0.5}},
                      meta={"grammar": "dynamics", "genome": parent_genome})
    tried = []
    history = [parent]
    for k in range(40):  # the other mechanism slots' edits are refinements too: skip them
        prop = p.refine(ctx, parent, history)
        if prop.meta["edited_slot"] != "term":
            continue
        g = prop.meta["genome"]
        tried.append((g["term_state"], g["term"]))
        history.append(NodeView(id=2 + k, branch=1, operator="refine", change=prop.change,
                                code=prop.code, status="ok", metrics={}, meta=prop.meta))
        if len(tried) == 3:
            break
    assert tried == [(t.state, t.term) for t in ranking[1:4]]


# -- end to end: the search hands the scored prior's one-step predictions on ------------

def _toy_frame(n=10, T=12, dt=0.25, seed=0):
    """The toy system of DYN_PRIOR with the term that prior omits (-0.4*x1 in dx2/dt)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        s, u = rng.uniform([0.5, 0.5], [2.0, 1.5]), rng.uniform(0.0, 0.5)
        f = lambda v: np.stack([-0.3 * v[0] + 0.5 * v[1] + u,  # noqa: E731
                                -0.5 * v[1] - 0.4 * v[0]])
        for k in range(T):
            rows.append((i, k * dt, u, *s))
            s = _rk4_step(f, s, dt, n=10)
    return pd.DataFrame(rows, columns=["traj", "t", "u", "x1", "x2"])


@pytest.mark.timeout(300)
def test_a_seeded_search_ranks_the_term_draft_on_the_scored_prior(tmp_path):
    from nimm_jupyter.modeling.config import TrainConfig
    from nimm_jupyter.search.api import search
    from nimm_jupyter.search.prior_root import mechanism_fits, reference_fit
    from nimm_jupyter.tasks import task_from_dataframe

    task = task_from_dataframe(_toy_frame(), name="toy", time="t", targets=["x1", "x2"],
                               inputs=["u"], group="traj", split_by="group", context=1,
                               test_size=2, val_size=2, prior_code=DYN_PRIOR, source="simulated")
    result = search(task, proposer="offline", budget=3, branches=2, workers=1,
                    run_dir=tmp_path / "run",
                    train=TrainConfig(max_epochs=5, polish_iters=20)).wait()
    assert result.nodes[0].ok, result.nodes[0].message
    fits = mechanism_fits(tmp_path / "run", result.nodes)
    ref = reference_fit(result.nodes, fits)
    assert ref is fits[0]  # the prior's, once it is scored ok
    saved, sensitivity = ref.one_step, ref.sensitivity
    assert saved is not None and saved.shape == (len(task.train), 11, 2)
    # the prior's one constant moves its one-step predictions (the modulation ranking's input)
    assert set(sensitivity) == {"a", "b", "c"}
    for name, d in sensitivity.items():
        assert d.shape == saved.shape and np.abs(d).max() > 0, name
    # c acts on dx2/dt only, and through it on x1 one RK4 step later: x2 moves much more
    assert np.abs(sensitivity["c"][..., 1]).mean() > 5 * np.abs(sensitivity["c"][..., 0]).mean()
    term = [n for n in result.nodes if (n.proposer_meta.get("genome") or {}).get("attach") == "none"]
    assert term and "ranked 1" in term[0].change, [n.change for n in result.nodes]
    # the missing -0.4*x1 acts on dx2/dt
    assert term[0].proposer_meta["genome"]["term_state"] == "x2", term[0].change


def test_after_the_prior_failed_drafts_of_its_equations_start_clamped():
    ctx = _ctx(with_prior_fit=False)
    p = OfflineProposer(seed=0)
    strategies = {s.key: s for s in p.strategies(ctx, 6, [])}
    term, wrap = strategies["dynamics:term"], next(s for k, s in strategies.items()
                                                   if k.startswith("wrap:"))
    assert "clamp" not in p.draft(ctx, term).code  # the prior not scored yet
    ctx.prior_status = "contract_error"
    for s in (term, wrap):
        prop = p.draft(ctx, s)
        assert prop.meta["genome"]["stability"] == "clamp states" and ".clamp = (" in prop.code
