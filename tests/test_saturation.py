"""A prior's constant may saturate in a variable (k -> k/(1+c*v)): the job's constant
sensitivities, the driver's checks of them, their ranking, and the grammar's move."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nimm_jupyter.execution.job import driver_scores
from nimm_jupyter.execution.protocol import ProtocolViolation, clean_predictions, encode_array
from nimm_jupyter.modeling.contract import check_candidate
from nimm_jupyter.modeling.result import EvalResult, Status
from nimm_jupyter.modeling.scoring import forward_one_step, prediction_shape, split_data
from nimm_jupyter.modeling.sensitivity import (MAX_CONSTANTS, one_step_sensitivity,
                                               sensitivity_key)
from nimm_jupyter.proposers.base import NodeView, TrainSeries
from nimm_jupyter.proposers.context import context_for
from nimm_jupyter.proposers.offline import OfflineProposer
from nimm_jupyter.proposers.offline.constant_ranking import (nonnegative_variables,
                                                             rank_saturations)
from nimm_jupyter.proposers.offline.dynamics import DynamicsGrammar
from nimm_jupyter.proposers.offline.grammar import key_of
from nimm_jupyter.tasks.base import DataSource, Split, Task, TaskKind, Variable
from tests.toy_tasks import make_toy_trajectory

torch.set_num_threads(1)

# logistic prey and its predator, predation by mass action: the data's predation saturates
PREY_PRIOR = '''import torch
from nimm_jupyter.blocks import Dynamics, Positive


class Model(Dynamics):
    def __init__(self, spec):
        super().__init__(spec)
        self.r = Positive(1.0)
        self.K = Positive(5.0)
        self.a = Positive(0.8)
        self.b = Positive(0.3)
        self.d = Positive(0.6)

    def rhs(self, t, y, u):
        x, w = y[:, 0], y[:, 1]
        dx = self.r() * x * (1 - x / self.K()) - self.a() * x * w
        dw = self.b() * x * w - self.d() * w
        return torch.stack([dx, dw], dim=1)
'''


def _holling(y, h=0.6):
    x, w = y[..., 0], y[..., 1]
    return np.stack([x * (1 - x / 5.0) - 0.8 * x * w / (1 + h * x), 0.3 * x * w - 0.6 * w], -1)


def _prey_task(N=8, T=25, dt=0.3, seed=0, shift=0.0):
    """Trajectories of the saturating system (RK4, fine steps); ``shift`` moves the
    predator's values (a negative shift makes it a variable that can be negative)."""
    rng = np.random.default_rng(seed)
    y = np.empty((N, T, 2))
    y[:, 0] = rng.uniform([1.0, 0.5], [4.0, 2.0], size=(N, 2))
    for k in range(T - 1):
        s = y[:, k]
        for _ in range(10):
            k1 = _holling(s)
            k2 = _holling(s + dt / 20 * k1)
            k3 = _holling(s + dt / 20 * k2)
            k4 = _holling(s + dt / 10 * k3)
            s = s + dt / 60 * (k1 + 2 * k2 + 2 * k3 + k4)
        y[:, k + 1] = s
    y[..., 1] += shift
    split = lambda a: Split(inputs=np.zeros((len(a), T, 0)), targets=a)  # noqa: E731
    return Task(name="prey", kind=TaskKind.TRAJECTORY, description="prey and predator",
                source=DataSource.SYNTHETIC, provenance="tests/test_saturation.py", inputs=[],
                targets=[Variable("x"), Variable("y")], train=split(y[:6]), val=split(y[6:7]),
                test=split(y[7:]), prior_code=PREY_PRIOR, prior_omits="the saturation",
                time=np.arange(T) * dt, context=1)


def _model(code, task):
    ns: dict = {}
    exec(compile(code, "<model>", "exec"), ns)  # noqa: S102 - our own fixed test code
    return ns["Model"](task.spec())


def _fitted_prior(task):
    """The prior fitted to the training split's one-step predictions (L-BFGS on the
    normalised squared error: its constants compensate for what it lacks, as a fitted
    prior's do), its one-step predictions there and their sensitivities."""
    model = _model(PREY_PRIOR, task).double()
    data = split_data(task, "train", torch.device("cpu"), torch.float64)
    y = torch.as_tensor(task.train.targets[:, 1:])
    scale = y.reshape(-1, 2).std(0)
    opt = torch.optim.LBFGS(model.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def loss():
        opt.zero_grad()
        out = (((forward_one_step(model, data) - y) / scale) ** 2).mean()
        out.backward()
        return out

    opt.step(loss)
    return forward_one_step(model, data).detach().numpy(), one_step_sensitivity(model, data)


# -- the sensitivities ----------------------------------------------------------------------

def test_sensitivity_is_the_derivative_of_the_one_step_prediction_in_log_k():
    task = _prey_task()
    model = _model(PREY_PRIOR, task).double()
    data = split_data(task, "train", torch.device("cpu"), torch.float64)
    sens = one_step_sensitivity(model, data)
    assert list(sens) == ["r", "K", "a", "b", "d"]
    weights = torch.randn(*prediction_shape(task, "train"), dtype=torch.float64)
    (forward_one_step(model, data) * weights).sum().backward()
    for name, d in sens.items():  # Positive stores log k: d/d(raw) is d/d(log k)
        grad = float(getattr(model, name).raw.grad)
        assert float((torch.as_tensor(d) * weights).sum()) == pytest.approx(grad, rel=1e-4), name
    # d acts on the predator's derivative: the prey's one-step prediction moves only
    # through the step's coupling (RK4's later stages)
    assert np.abs(sens["d"][..., 1]).mean() > 3 * np.abs(sens["d"][..., 0]).mean()
    # and the model's weights are as they were
    assert model.a.value().item() == pytest.approx(0.8)


def test_the_driver_keeps_sensitivities_only_by_plain_names_and_shapes():
    ok = {"train": encode_array(np.zeros((2, 3, 2))),
          sensitivity_key("a"): encode_array(np.ones((2, 3, 2)))}
    assert set(clean_predictions(ok)) == {"train", sensitivity_key("a")}
    for bad in ({"train_one_step_dlog:../../x": ok["train"]},
                {sensitivity_key(f"k{i}"): ok["train"] for i in range(MAX_CONSTANTS + 1)}):
        with pytest.raises(ProtocolViolation):
            clean_predictions(bad)
    traj = make_toy_trajectory(n_train=4, n_val=2, n_test=2, T=8)
    preds = {s: np.zeros(prediction_shape(traj, s)) for s in ("train", "val", "test")}
    good = driver_scores(traj, EvalResult(status=Status.OK),
                         {**preds, sensitivity_key("a"): np.zeros(prediction_shape(traj, "train"))})
    assert good.ok
    with pytest.raises(ProtocolViolation, match="dlog:a of shape"):
        driver_scores(traj, EvalResult(status=Status.OK),
                      {**preds, sensitivity_key("a"): np.zeros((1, 1, 1))})


# -- the ranking ----------------------------------------------------------------------------

def _series(task):
    tr = task.train
    return TrainSeries(time=task.time, states=tr.targets, inputs=tr.inputs, context=1)


def test_the_missing_saturation_of_the_predation_constant_is_ranked_first():
    task = _prey_task()
    one_step, sens = _fitted_prior(task)
    choices = tuple(f"{k}/(1+c*{v})" for k in "rKabd" for v in "xy")
    ranked = rank_saturations(_series(task), one_step, sens, ["x", "y"], [], choices)
    assert (ranked[0].constant, ranked[0].variable) == ("a", "x")
    assert ranked[0].with_refit > 0.8 and ranked[0].explained > 2 * ranked[1].explained
    # without the sensitivities there is nothing to rank
    assert rank_saturations(_series(task), one_step, {}, ["x", "y"], [], choices) == []


def test_only_variables_never_negative_may_saturate():
    task = _prey_task(shift=-1.0)  # the predator's values now go below 0
    assert nonnegative_variables(_series(task), ["x", "y"], []) == ["x"]
    grammar = DynamicsGrammar(context_for(task))
    assert grammar.slot("saturate").choices == ("none", "r/(1+c*x)", "K/(1+c*x)", "a/(1+c*x)",
                                                "b/(1+c*x)", "d/(1+c*x)")


# -- the grammar and the proposer -----------------------------------------------------------

def _node(node_id, genome):
    """An ok node of the dynamics grammar, as a proposer sees it."""
    return NodeView(id=node_id, branch=1, operator="draft", change="", code="", status="ok",
                    metrics={"val": {"rmse_norm": 0.5}},
                    meta={"grammar": "dynamics", "genome": genome})


def _scored_ctx(task):
    ctx = context_for(task)
    ctx.reference_one_step, ctx.reference_sensitivity = _fitted_prior(task)
    ctx.prior_status = "ok"
    return ctx


def test_the_term_draft_takes_the_saturation_when_it_explains_more_than_any_term():
    task = _prey_task()
    ctx = _scored_ctx(task)
    grammar = DynamicsGrammar(ctx)
    assert grammar.saturation_ranking()[0].explained > grammar.ranking()[0].explained
    p = OfflineProposer(seed=0)
    term = next(s for s in p.strategies(ctx, 6, []) if s.key == "dynamics:term")
    prop = p.draft(ctx, term)
    g = prop.meta["genome"]
    assert g["saturate"] == "a/(1+c*x)" and g["term"] == "none" and g["attach"] == "none"
    assert "ranked 1 of the saturations" in prop.change
    assert prop.meta.get("mechanistic")  # no network: its fit may rank terms in turn
    assert check_candidate(prop.code, task).ok
    # rendered, it is the saturating law: a x y / (1 + c x), with a the rate at x = 0
    model = _model(prop.code, task)
    y = torch.tensor([[2.0, 1.0], [0.0, 1.0]])
    with torch.no_grad():
        c = float(model.sat_c())
        dx = model.rhs(torch.tensor(0.0), y, torch.zeros(2, 0))[:, 0]
    want = 1.0 * 2 * (1 - 2 / 5.0) - 0.8 * 2 * 1 / (1 + c * 2)
    assert float(dx[0]) == pytest.approx(want, rel=1e-5)
    assert [n for n, _ in model.named_parameters()] == ["r.raw", "K.raw", "a.raw", "b.raw",
                                                        "d.raw", "sat_c.raw"]


def test_saturation_refinements_walk_down_its_ranking_and_debug_drops_it():
    task = _prey_task()
    ctx = _scored_ctx(task)
    grammar = DynamicsGrammar(ctx)
    ranking = grammar.saturation_ranking()
    genome = {**grammar.base_genome("term"), "term": "none", "saturate": ranking[0].choice}
    child, change = grammar.ranked_saturation_move(genome, {key_of(genome)}, ranking)
    assert child["saturate"] == ranking[1].choice and "ranked 2 of the saturations" in change
    # a refinement that picks the slot takes that ranked choice, not a random one
    parent = _node(1, genome)
    picked = [p.meta["genome"]["saturate"] for p in
              (OfflineProposer(seed=s).refine(ctx, parent, [parent]) for s in range(30))
              if p.meta.get("edited_slot") == "saturate"]
    assert picked and set(picked) == {ranking[1].choice}
    safe, what = grammar.safer({**genome, "stability": "clamp states"})
    assert safe["saturate"] == "none" and "drop the saturation a/(1+c*x)" in what


def test_a_saturated_and_modulated_constant_composes_and_renders_valid_code():
    task = _prey_task()
    grammar = DynamicsGrammar(context_for(task))
    genome = {**grammar.base_genome("term"), "term": "none", "saturate": "a/(1+c*x)",
              "modulate": "a"}
    code = grammar.render(genome)
    assert check_candidate(code, task).ok
    model = _model(code, task)
    y = torch.tensor([[2.0, 1.0]])
    with torch.no_grad():
        torch.nn.init.normal_(model.mod_net[-1].weight, std=5.0)
        model.rhs(torch.tensor(0.0), y, torch.zeros(1, 0))
        sat = float(model._modules["a"]()) / (1 + float(model.sat_c()) * 2.0)
        factor = float(model.a()) / sat
    assert factor != pytest.approx(1.0) and abs(factor - 1) <= 0.5 + 1e-6


def test_an_edit_is_ranked_on_the_residual_of_the_model_without_that_choice():
    from nimm_jupyter.proposers.base import MechanismFit

    task = _prey_task()
    ctx = _scored_ctx(task)
    grammar = DynamicsGrammar(ctx)
    saturated = {**grammar.prior_genome(), "saturate": "a/(1+c*x)"}
    node = _node(2, saturated)
    fit = MechanismFit(np.zeros_like(ctx.reference_one_step), {})
    fits = {2: fit}
    # a term added to the saturated model: on that model's residual (node 2's fit)
    assert grammar.edit_reference(saturated, "term", node, [], fits) is fit
    assert grammar.edit_reference({**saturated, "term_state": "y"}, "term_state", node, [],
                                  fits) is fit
    # replacing its saturation, or replacing a term of the prior: on the prior's (None)
    assert grammar.edit_reference(saturated, "saturate", node, [], fits) is None
    with_term = {**grammar.prior_genome(), "term": "y"}
    assert grammar.edit_reference(with_term, "term", node, [], fits) is None
    # a model without a fit (not scored, or with a network) falls back to its mechanism's
    # (node 2's, for a term added to its modulated child), else to the prior's
    modulated = {**saturated, "modulate": "a"}
    child = _node(4, modulated)
    assert grammar.edit_reference(modulated, "term", child, [node], fits) is fit
    assert grammar.edit_reference(saturated, "term", node, [], {}) is None
    # and the refinement uses it: the ranked term cites node 2's residual, not the prior's
    prior_best = grammar.ranking()[0]
    fit2 = MechanismFit(ctx.reference_one_step * 0.5 + task.train.targets[:, 1:] * 0.5, {})
    other = grammar.ranking(fit2)[0]
    assert (other.state, other.term, round(other.with_refit, 2)) != \
        (prior_best.state, prior_best.term, round(prior_best.with_refit, 2))
    ctx.fits = {2: fit2}
    props = [OfflineProposer(seed=s).refine(ctx, node, [node]) for s in range(30)]
    terms = [p for p in props if p.meta.get("edited_slot") == "term"]
    assert terms and all(p.meta["genome"]["term"] == other.term for p in terms)
    assert all(f"removes {other.with_refit:.0%}" in p.change for p in terms)


def test_when_nothing_ranked_is_worth_a_node_the_refinement_edits_another_slot(monkeypatch):
    import nimm_jupyter.proposers.offline.dynamics as dynamics

    task = _prey_task()
    ctx = _scored_ctx(task)
    grammar = DynamicsGrammar(ctx)
    genome = {**grammar.prior_genome(), "saturate": "a/(1+c*x)"}
    node = _node(2, genome)
    slots = lambda: {p.meta.get("edited_slot") for p in  # noqa: E731
                     (OfflineProposer(seed=s).refine(ctx, node, [node]) for s in range(30))}
    assert slots() & set(dynamics.RANKED_SLOTS)
    # no ranked term or saturation removes 99 % of what is left: none is proposed
    monkeypatch.setattr(dynamics, "MIN_SHARE", 0.99)
    assert grammar.ranked_edit(genome, "term", {key_of(genome)}, node, [], {}) == \
        dynamics.EXHAUSTED
    edited = slots()
    assert edited and not edited & set(dynamics.RANKED_SLOTS), edited


def test_constants_of_a_prior_that_scales_the_whole_state_are_not_made_per_sample():
    from nimm_jupyter.proposers.offline.dynamics import per_sample_constants, prior_constants

    # the demo's flu prior: (r + b*tau) * y on the (B, 1) state; a (B,) constant would make
    # it (B, B), so neither a modulation nor a saturation is offered
    whole = PREY_PRIOR.replace('''        x, w = y[:, 0], y[:, 1]
        dx = self.r() * x * (1 - x / self.K()) - self.a() * x * w
        dw = self.b() * x * w - self.d() * w
        return torch.stack([dx, dw], dim=1)''', '''        return (self.r() - self.a() + self.K() * self.b() * self.d()) * y''')
    assert prior_constants(whole) == ("r", "K", "a", "b", "d")
    assert per_sample_constants(whole) == ()
    assert per_sample_constants(PREY_PRIOR) == ("r", "K", "a", "b", "d")
    assert per_sample_constants(PREY_PRIOR.replace("y[:, 0], y[:, 1]", "s.unbind(1)")
                                .replace("def rhs(self, t, y, u)", "def rhs(self, t, s, u)")) \
        == ("r", "K", "a", "b", "d")
    task = _prey_task()
    task.prior_code = whole
    grammar = DynamicsGrammar(context_for(task))
    assert grammar.slot("saturate").choices == ("none",)
    assert grammar.slot("modulate").choices == ("none",)
    assert "modulate" not in {s.key for s in grammar.strategy_list}
