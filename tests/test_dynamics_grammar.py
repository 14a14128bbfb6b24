"""The offline proposer edits a prior written in dynamics form inside its equations."""
from __future__ import annotations

import random

import pytest

from nimm_jupyter.modeling import check_candidate
from nimm_jupyter.modeling.config import TrainConfig
from nimm_jupyter.modeling.harness import evaluate
from nimm_jupyter.proposers.context import context_for
from nimm_jupyter.proposers.offline import OfflineProposer
from nimm_jupyter.proposers.offline.dynamics import DynamicsGrammar, is_dynamics_prior
from tests.toy_tasks import make_toy_trajectory

# the toy system's prior in dynamics form; like the toy prior it omits -d*x1 in dx2/dt
DYN_PRIOR = '''import torch
from nimm_jupyter.blocks import Dynamics, Positive


class Model(Dynamics):
    """Linear decay with coupling x2 -> x1 and an input on x1."""

    substeps = 4

    def __init__(self, spec):
        super().__init__(spec)
        self.a = Positive(0.3)
        self.b = Positive(0.5)
        self.c = Positive(0.5)

    def rhs(self, t, y, u):
        dx1 = -self.a() * y[:, 0] + self.b() * y[:, 1] + u[:, 0]
        dx2 = -self.c() * y[:, 1]
        return torch.stack([dx1, dx2], dim=1)
'''


def _task(**kw):
    task = make_toy_trajectory(**kw)
    task.prior_code = DYN_PRIOR
    return task


def test_dynamics_prior_is_recognised_and_roots_branches():
    task = _task(n_train=4, n_val=2, n_test=2, T=8)
    assert is_dynamics_prior(DYN_PRIOR)
    assert not is_dynamics_prior(make_toy_trajectory(n_train=2, n_val=2, n_test=2).prior_code)
    ctx = context_for(task)
    keys = [s.key for s in OfflineProposer(seed=0).strategies(ctx, 6, [])]
    assert {"dynamics:term", "dynamics:residual", "dynamics:closure"} <= set(keys)
    assert any(k.startswith("wrap:") for k in keys)  # output-level attachments stay available


def test_prior_in_dynamics_form_passes_the_contract_and_rolls_out():
    task = _task(n_train=4, n_val=2, n_test=2, T=8)
    rep = check_candidate(DYN_PRIOR, task)
    assert rep.ok, rep.message


def test_every_draft_and_atomic_edit_renders_a_valid_candidate():
    task = _task(n_train=4, n_val=2, n_test=2, T=8)
    grammar = DynamicsGrammar(context_for(task))
    rng = random.Random(0)
    for s in grammar.strategy_list:
        genome = grammar.base_genome(s.key)
        edits = grammar.mutations(genome)
        assert edits, s.key
        for slot, choice in [(None, None), *rng.sample(edits, min(8, len(edits)))]:
            g = genome if slot is None else {**genome, slot: choice}
            code = grammar.render(g)
            rep = check_candidate(code, task)
            assert rep.ok, (g, rep.message, code)
            assert "class Model(Prior)" in code and "super().rhs(t, y, u)" in code


def test_terms_cover_the_catalogue_and_closure_has_one_input():
    task = _task(n_train=4, n_val=2, n_test=2, T=8)
    grammar = DynamicsGrammar(context_for(task))
    terms = grammar.slot("term").choices
    for needed in ("x1", "x1*x2", "x1/(1+c*x1)", "x1^2*x2", "damp(self)", "drag(self)", "u"):
        assert needed in terms
    closure = grammar.base_genome("closure")
    inputs = [s for s in grammar.active_slots(closure) if s.name == "nn_inputs"][0]
    assert "all" not in inputs.choices
    # a term-only genome refines only the mechanism
    assert {s.kind for s in grammar.active_slots(grammar.base_genome("term"))} == {"mechanism"}


def test_added_term_recovers_the_missing_coupling_and_the_prior_constants():
    """The term ``x1`` in dx2/dt is exactly the omitted ``-d*x1``: fitted, it gives -d and
    the prior's own constants come back near their true values."""
    task = _task(n_train=8, n_val=4, n_test=4, T=8)
    grammar = DynamicsGrammar(context_for(task))
    genome = {**grammar.base_genome("term"), "term_state": "x2", "term": "x1"}
    res = evaluate(task, grammar.render(genome), TrainConfig(max_epochs=10, polish_iters=60))
    assert res.ok, res.message
    assert res.parameters["term_coef"] == pytest.approx(-0.8, rel=0.03), res.parameters
    for name, value in {"a": 0.5, "b": 1.0, "c": 0.3}.items():
        assert res.parameters[name] == pytest.approx(value, rel=0.03), res.parameters


# blows up in finite time: dx/dt = r * x^2 from x ~ 1 reaches inf before t = 1 / r
UNSTABLE = DYN_PRIOR.replace("dx1 = -self.a() * y[:, 0] + self.b() * y[:, 1] + u[:, 0]",
                             "dx1 = 40.0 * self.a() * y[:, 0] ** 2 + u[:, 0]")


def test_contract_check_says_where_an_unstable_prior_blows_up():
    task = _task(n_train=4, n_val=2, n_test=2, T=8)
    task.train.targets[:, :, 0] = abs(task.train.targets[:, :, 0]) + 1.0
    rep = check_candidate(UNSTABLE, task)
    assert not rep.ok
    assert "x1 becomes" in rep.message and "at step" in rep.message, rep.message
    assert "substeps" in rep.message and "clamp" in rep.message


def test_debug_edits_the_mechanism_safeguards_then_drops_the_addition():
    task = _task(n_train=4, n_val=2, n_test=2, T=8)
    task.train.targets[:, :, 0] = abs(task.train.targets[:, :, 0]) + 1.0
    task.prior_code = UNSTABLE
    grammar = DynamicsGrammar(context_for(task))
    genome = {**grammar.base_genome("residual"), "nn_scale": "1.0"}
    seen = []
    while True:
        picked = grammar.safer(genome)
        if picked is None:
            break
        genome, what = picked
        seen.append((genome["stability"], genome["attach"], what))
    assert seen[0][0] == "clamp states"
    assert seen[0][1] == "residual" and seen[-1][1] == "none"
    clamped = {**grammar.base_genome("term"), "stability": "clamp states"}
    code = grammar.render(clamped)
    assert "self.clamp = " in code
    rep = check_candidate(code, task)
    assert rep.ok, rep.message  # the clamp keeps the unstable prior finite
    assert all(s.name != "stability" for s in grammar.active_slots(clamped))


def test_the_prior_node_can_be_refined_and_debugged_by_the_dynamics_grammar():
    from nimm_jupyter.proposers.base import NodeView

    task = _task(n_train=4, n_val=2, n_test=2, T=8)
    ctx = context_for(task)
    root = NodeView(id=0, branch=0, operator="draft", change="the prior as given",
                    code=DYN_PRIOR, status="ok", metrics={"val": {"rmse_norm": 1.0}},
                    meta={"prior": True})
    child = OfflineProposer(seed=0).refine(ctx, root, [])
    assert child.code and child.meta["grammar"] == "dynamics", child.error
    assert child.meta["genome"]["term"] != "none" or child.meta["genome"]["term_state"] != "x2"
    fixed = OfflineProposer(seed=0).debug(ctx, root)
    assert fixed.code and "clamp" in fixed.change


def test_an_output_level_model_of_an_unstable_dynamics_prior_is_debugged_by_a_clamp():
    from nimm_jupyter.proposers.offline.wrap import WrapGrammar

    task = _task(n_train=4, n_val=2, n_test=2, T=8)
    task.train.targets[:, :, 0] = abs(task.train.targets[:, :, 0]) + 1.0
    task.prior_code = UNSTABLE
    ctx = context_for(task)
    grammar = WrapGrammar(ctx)
    genome = grammar.base_genome("residual")
    assert not check_candidate(grammar.render(genome), task).ok
    safe, what = grammar.safer(genome)
    assert "clamp" in what and safe["attach"] == "residual"
    rep = check_candidate(grammar.render(safe), task)
    assert rep.ok, rep.message
    # the prior failed and a clamped fit of its equations ran (its residual ranks the terms):
    # the unclamped prior inside a wrap model still blows up, so the clamp comes first
    ctx.reference_one_step = ctx.train_series.states[:, ctx.train_series.context:]
    ctx.prior_status = "contract_error"
    assert "clamp" in WrapGrammar(ctx).safer(genome)[1]
    # once the prior itself scored ok, a failed wrap model is the network's
    ctx.prior_status = "ok"
    assert "clamp" not in WrapGrammar(ctx).safer(genome)[1]


def test_prior_constants_are_the_scalar_params_the_equations_call():
    from nimm_jupyter.proposers.offline.dynamics import prior_constants

    assert prior_constants(DYN_PRIOR) == ("a", "b", "c")
    extra = DYN_PRIOR.replace("        self.c = Positive(0.5)\n",
                              "        self.c = Positive(0.5)\n"
                              "        self.w = Positive(1.0, shape=(2,))\n"
                              "        self.unused = Positive(3.0)\n")
    assert prior_constants(extra) == ("a", "b", "c")  # a vector and an uncalled one are not


def _prior_node():
    from nimm_jupyter.proposers.base import NodeView

    return NodeView(id=0, branch=0, operator="draft", change="the prior as given",
                    code=DYN_PRIOR, status="ok", metrics={"val": {"rmse_norm": 1.0}},
                    meta={"prior": True})


def test_a_constant_of_the_prior_can_be_made_a_network_of_the_states():
    import torch

    task = _task(n_train=4, n_val=2, n_test=2, T=8)
    ctx = context_for(task)
    grammar = DynamicsGrammar(ctx)
    root = {**grammar.base_genome("term"), "term": "none"}
    assert {("modulate", c) for c in "abc"} <= set(grammar.mutations(root))
    # proposed as a refinement of the prior (node 0), an atomic edit of the modulation slot
    children = [OfflineProposer(seed=s).refine(ctx, _prior_node(), []) for s in range(40)]
    mods = [c for c in children if c.meta.get("edited_slot") == "modulate"]
    assert mods, [c.change for c in children]
    child = mods[0]
    assert child.change.startswith("constant made a network of the states: none -> ")
    k = child.meta["genome"]["modulate"]
    assert child.meta["genome"]["term"] == "none" and child.meta["genome"]["attach"] == "none"
    assert not child.meta.get("mechanistic")  # a network: its residual ranks no terms
    rep = check_candidate(child.code, task)
    assert rep.ok, rep.message
    # the child starts as the prior and the constant keeps its name as a fitted parameter
    ns: dict = {}
    exec(compile(child.code, "<child>", "exec"), ns)  # noqa: S102 (our own grammar's code)
    prior_ns: dict = {}
    exec(compile(DYN_PRIOR, "<prior>", "exec"), prior_ns)  # noqa: S102
    spec = task.spec()
    model, prior = ns["Model"](spec), prior_ns["Model"](spec)
    prior.load_state_dict({n: v for n, v in model.state_dict().items()
                           if n in prior.state_dict()})
    tr = task.train
    args = (torch.as_tensor(tr.targets[:, :1], dtype=torch.float32),
            torch.as_tensor(tr.inputs, dtype=torch.float32), spec.time.float())
    with torch.no_grad():
        assert torch.allclose(model(*args), prior(*args), atol=1e-6)
        names = [n for n, m in model.named_modules() if m.__class__.__name__ == "Positive"]
        assert names == ["a", "b", "c"]
        # once the network is not zero, the constant varies with the state, within 1 +- s
        torch.nn.init.normal_(model.mod_net[-1].weight, std=5.0)
        y = torch.randn(16, 2)
        u = torch.randn(16, task.spec().n_inputs)
        model.rhs(spec.time[0], y, u)
        factor = getattr(model, k)() / model._modules[k]()
        assert factor.shape == (16,) and float(factor.std()) > 0
        assert float((factor - 1).abs().max()) <= float(child.meta["genome"]["mod_scale"]) + 1e-6
        assert not torch.allclose(model(*args), prior(*args), atol=1e-4)


def test_modulation_strategy_and_debug():
    task = _task(n_train=4, n_val=2, n_test=2, T=8)
    ctx = context_for(task)
    keys = [s.key for s in OfflineProposer(seed=0).strategies(ctx, 10, [])]
    assert "dynamics:modulate" in keys
    grammar = DynamicsGrammar(ctx)
    genome = grammar.base_genome("modulate")
    assert genome["modulate"] == "a" and genome["attach"] == "none"
    assert "mod_scale" in {s.name for s in grammar.active_slots(genome)}
    assert "mod_scale" not in {s.name for s in grammar.active_slots({**genome, "modulate": "none"})}
    assert check_candidate(grammar.render(genome), task).ok
    # with a network in the equations as well, both read the same normalised state
    both = {**grammar.base_genome("residual"), "modulate": "c"}
    code = grammar.render(both)
    assert code.count('register_buffer("z_mean"') == 1
    assert check_candidate(code, task).ok
    safe = {**genome, "stability": "clamp states"}
    dropped, what = grammar.safer(safe)
    assert dropped["modulate"] == "none" and "modulation of a" in what


def test_a_genome_journaled_before_the_modulation_slots_gets_real_edits():
    grammar = DynamicsGrammar(context_for(_task(n_train=4, n_val=2, n_test=2, T=8)))
    old = {k: v for k, v in grammar.base_genome("term").items()
           if k not in ("modulate", "mod_scale")}
    edits = grammar.mutations(old)
    assert ("modulate", "a") in edits and ("modulate", "none") not in edits
    assert all(slot != "mod_scale" for slot, _ in edits)
    assert check_candidate(grammar.render(old), _task(n_train=4, n_val=2, n_test=2, T=8)).ok
