"""The distill operator's driver-side parts: the sparse fit, the formula, the rewrite, the
closed-form module and the nimmgen policy's choice (fast: no jobs, no training)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nimm_jupyter.blocks import SparseLaw, law_features, mlp, network_parameters, replace_networks
from nimm_jupyter.distill import Law, distilled_source, fit_law, formula_latex, formula_text, library_terms
from nimm_jupyter.modeling.contract import check_candidate
from nimm_jupyter.modeling.result import EvalResult, SplitScores, Status
from nimm_jupyter.search.node import Node, NodeState
from nimm_jupyter.search.policies import NimmGenPolicy, mechanistic_reference
from nimm_jupyter.search.tree import Tree


def test_sparse_fit_recovers_a_gompertz_rate_and_a_product_law():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 3.0, size=(1500, 2))
    y = np.stack([0.7 - 1.3 * np.log(x[:, 0]) + 1e-3 * rng.normal(size=1500),
                  2.0 * x[:, 0] * x[:, 1] - 0.5 * x[:, 1]], axis=1)
    law = fit_law(x, y)
    assert set(law.laws[0]) == {"1", "log|x0|"}
    assert law.laws[0]["log|x0|"] == pytest.approx(-1.3, rel=1e-2)
    assert law.laws[0]["1"] == pytest.approx(0.7, abs=1e-2)
    assert set(law.laws[1]) == {"x1", "x0*x1"}
    assert law.laws[1]["x0*x1"] == pytest.approx(2.0, rel=1e-6)
    assert law.errors[1] < 1e-6 and law.errors[0] < 0.01


def test_sparse_fit_keeps_a_constant_output_constant_and_rejects_bad_tables():
    x = np.linspace(-1, 1, 50)[:, None]
    law = fit_law(x, np.full((50, 1), 0.25))
    assert law.laws == [{"1": pytest.approx(0.25)}]
    with pytest.raises(ValueError):
        fit_law(x[:, 0], np.zeros(50))


def test_library_and_sparse_law_evaluate_the_same_terms():
    terms = library_terms(2)
    assert terms[:3] == ["1", "x0", "x1"] and "x0*x1" in terms and "log|x1|" in terms
    x = torch.rand(7, 2, dtype=torch.float64) + 0.1
    coef = {t: 0.1 * (i + 1) for i, t in enumerate(terms)}
    module = SparseLaw(2, [coef]).double()
    want = law_features(x, terms) @ torch.tensor(list(coef.values()), dtype=torch.float64)
    assert torch.allclose(module(x)[:, 0], want)
    assert module(x.reshape(7, 1, 2)).shape == (7, 1, 1)
    with pytest.raises(ValueError):
        SparseLaw(1, [{"x3": 1.0}])


def test_formula_text_and_latex():
    laws = {"net": Law(n_in=1, laws=[{"1": 0.5, "log|x0|": -2.0}])}
    assert formula_text(laws) == "net(x) = 0.5 - 2.0*log(Abs(x0))"
    assert formula_latex(laws) == r"\mathrm{net}(x) = 0.5 - 2.0 \log{\left(\left|{x_{0}}\right| \right)}"


HYBRID = '''import torch
from torch import nn
from nimm_jupyter.blocks import Real, mlp


class Model(nn.Module):
    """A linear law plus a network."""

    def __init__(self, spec):
        super().__init__()
        self.c = Real(0.0)
        self.net = mlp(spec.n_inputs, 1, hidden=8)

    def forward(self, x):
        return self.c() + self.net(x)
'''


def test_distilled_source_is_a_valid_candidate_without_network(tab):
    law = Law(n_in=tab.spec().n_inputs, laws=[{"1": 0.1, "x0^2": 1.5}])
    source = distilled_source(HYBRID, {"net": law}, parent_id=4)
    assert source.startswith(HYBRID.rstrip())  # the parent unchanged, the law appended
    assert "net(x) = 1.5*x0**2 + 0.1" in source  # the equation in the docstring
    report = check_candidate(source, tab)
    assert report.ok, report.message
    model = report.model_class(tab.spec())
    assert network_parameters(model) == 0 and isinstance(model.net, SparseLaw)
    x = torch.rand(5, tab.spec().n_inputs)
    assert torch.allclose(model(x), model.c() + 0.1 + 1.5 * x[:, :1] ** 2)


def test_replace_networks_needs_an_mlp():
    m = torch.nn.Module()
    m.net, m.lin = mlp(2, 1), torch.nn.Linear(2, 1)
    assert network_parameters(m) > 0
    with pytest.raises(ValueError):
        replace_networks(m, {"lin": SparseLaw(2, [{"1": 0.0}])})
    replace_networks(m, {"net": SparseLaw(2, [{"1": 0.0}])})
    assert network_parameters(m) == 0


# -- the policy ------------------------------------------------------------------------------
def _node(tree: Tree, parent: int | None, branch: int, score: float, networks: int,
          operator: str = "draft") -> Node:
    r = EvalResult(status=Status.OK, val=SplitScores(rmse=score, rmse_norm=score),
                   n_network_parameters=networks, n_parameters=networks + 2)
    n = Node(id=tree.next_node_id(), parent=parent, branch=branch, operator=operator,
             code=f"# {score}", state=NodeState.DONE, result=r)
    tree.add_node(n)
    return n


def _tree() -> tuple[Tree, dict[str, Node]]:
    tree = Tree()
    mech, neural = tree.add_branch(None), tree.add_branch(None)
    nodes = {"mech": _node(tree, None, mech.id, 0.5, 0)}
    nodes["weak"] = _node(tree, None, neural.id, 0.8, 65)  # worse than the mechanism
    nodes["good"] = _node(tree, nodes["weak"].id, neural.id, 0.1, 65, "refine")
    nodes["better"] = _node(tree, nodes["good"].id, neural.id, 0.05, 65, "refine")
    tree.strategies_exhausted = True
    return tree, nodes


def test_mechanistic_reference_is_the_nearest_network_free_model():
    tree, nodes = _tree()
    assert mechanistic_reference(tree, nodes["good"]) is nodes["mech"]
    child = _node(tree, nodes["mech"].id, nodes["mech"].branch, 0.3, 65, "refine")
    assert mechanistic_reference(tree, child) is nodes["mech"]


def test_nimmgen_distils_its_best_hybrid_near_the_end_of_the_budget_once():
    tree, nodes = _tree()
    policy = NimmGenPolicy(branches=2, patience=100)
    assert policy.distill_target(tree, remaining=5) is None  # budget left for the search
    action = policy.next_action(tree, remaining=2)
    assert (action.kind, action.parent) == ("distill", nodes["better"].id)
    _node(tree, nodes["better"].id, nodes["better"].branch, 0.06, 0, "distill")
    assert policy.distill_target(tree, 1) is nodes["good"]  # the next-best hybrid
    _node(tree, nodes["good"].id, nodes["good"].branch, 0.2, 0, "distill")
    assert policy.distill_target(tree, 1) is None  # the weak one does not beat the mechanism
    assert NimmGenPolicy(branches=2, distill_at=0).distill_target(_tree()[0], 1) is None
