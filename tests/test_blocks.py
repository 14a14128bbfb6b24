"""The helpers in nimm_jupyter.blocks work with the signatures their docstrings document."""
from __future__ import annotations

import inspect
import math

import pytest
import torch

from nimm_jupyter import blocks


def _decay(t, y, u):
    return -y


def test_ode_rollout_step_size_keyword_is_used():
    t = torch.tensor([0.0, 1.0, 2.0])
    y0 = torch.ones(1, 1)
    coarse = blocks.ode_rollout(_decay, y0, t, method="euler")
    fine = blocks.ode_rollout(_decay, y0, t, method="euler", step_size=0.01)
    exact = math.exp(-2.0)
    assert coarse.shape == fine.shape == (1, 3, 1)
    assert float(coarse[0, -1, 0]) == pytest.approx(0.0, abs=1e-6)  # one Euler step of 1.0
    assert float(fine[0, -1, 0]) == pytest.approx(exact, rel=0.02)


def test_ode_rollout_options_and_adaptive_methods():
    t = torch.linspace(0, 1, 5)
    y0 = torch.ones(2, 1)
    via_options = blocks.ode_rollout(_decay, y0, t, method="euler", options={"step_size": 0.01})
    via_keyword = blocks.ode_rollout(_decay, y0, t, method="euler", step_size=0.01)
    assert torch.allclose(via_options, via_keyword)
    adaptive = blocks.ode_rollout(_decay, y0, t, method="dopri5", rtol=1e-6, atol=1e-8)
    assert float(adaptive[0, -1, 0]) == pytest.approx(math.exp(-1.0), rel=1e-4)
    with pytest.raises(ValueError, match="fixed-step"):
        blocks.ode_rollout(_decay, y0, t, method="dopri5", step_size=0.1)


def test_ode_rollout_step_limit_and_inputs():
    t = torch.linspace(0, 1, 4)
    u = torch.tensor([[[1.0], [2.0], [3.0], [4.0]]])
    seen = []

    def f(tt, y, ut):
        seen.append(float(ut[0, 0]))
        return ut.expand_as(y)

    blocks.ode_rollout(f, torch.zeros(1, 1), t, u=u, method="euler")
    assert seen == [1.0, 2.0, 3.0]  # piecewise constant: the input at each interval's start
    with pytest.raises(blocks.SolverStepLimit):
        blocks.ode_rollout(_decay, torch.ones(1, 1), t, method="rk4", max_steps=3)


def test_euler_rollout_documented_signature():
    y0 = torch.ones(3, 2)
    u = torch.zeros(3, 4, 1)
    out = blocks.euler_rollout(lambda y, u_k, k: torch.full_like(y, 10.0), y0, u, n_steps=4,
                               dt=0.5, clamp=(0.0, 6.0))
    assert out.shape == (3, 4, 2)
    assert out[0, :, 0].tolist() == [6.0, 6.0, 6.0, 6.0]
    free = blocks.euler_rollout(lambda y, u_k, k: -y, y0, None, n_steps=2, dt=0.5)
    assert free[0, :, 0].tolist() == [0.5, 0.25]


def test_params_mlp_normalise_safe_log():
    assert float(blocks.Positive(2.0)()) == pytest.approx(2.0)
    assert float(blocks.Real(-3.0)()) == pytest.approx(-3.0)
    b = blocks.Bounded(0.5, low=0.0, high=2.0)
    assert float(b()) == pytest.approx(0.5)
    assert blocks.Positive(1.5, shape=(3,))().shape == (3,)
    with pytest.raises(ValueError):
        blocks.Positive(0.0)
    with pytest.raises(ValueError):
        blocks.Bounded(3.0, low=0.0, high=2.0)
    net = blocks.mlp(3, 2, hidden=8, depth=3, activation="silu", zero_last=True)
    assert torch.count_nonzero(net(torch.randn(4, 3))) == 0
    assert torch.count_nonzero(blocks.mlp(3, 2, zero_last=False)(torch.randn(4, 3))) > 0
    with pytest.raises(ValueError, match="unknown activation"):
        blocks.mlp(1, 1, activation="nope")
    x = torch.tensor([[2.0, 4.0]])
    z = blocks.normalise(x, torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]))
    assert z.tolist() == [[1.0, 1.0]]
    assert float(blocks.safe_log(torch.tensor(0.0), eps=1e-4)) == pytest.approx(math.log(1e-4))


def test_param_memo_reuses_value_within_a_pass():
    p = blocks.Positive(2.0)
    with blocks.param_memo():
        first = p()
        assert p() is first
    assert p() is not first


class _Spec:
    target_names = ["x", "v"]
    input_names = ["f"]


class _Decay(blocks.Dynamics):
    def __init__(self, spec):
        super().__init__(spec)
        self.k = blocks.Positive(1.0)

    def rhs(self, t, y, u):
        return -self.k() * y + u[:, :1]


def test_dynamics_rolls_out_rhs_from_the_last_context_step():
    m = _Decay(_Spec())
    assert m.state_names == ["x", "v"] and m.input_names == ["f"]
    t = torch.tensor([0.0, 0.5, 1.0, 2.0])  # uneven sampling is allowed
    y_context = torch.tensor([[[9.0, 9.0], [1.0, 2.0]]])  # C = 2: starts from step 1
    u = torch.zeros(1, 4, 1)
    out = m(y_context, u, t)
    assert out.shape == (1, 2, 2)
    exact = torch.tensor([[1.0, 2.0]]) * torch.exp(-torch.tensor([[0.5], [1.5]]))
    assert torch.allclose(out[0].detach(), exact, rtol=3e-2)  # one RK4 step of 1.0: 2 %
    m.substeps = 4
    assert torch.allclose(m(y_context, u, t)[0].detach(), exact, rtol=1e-4)
    m.clamp = (0.5, 1.5)
    assert float(m(y_context, u, t).max()) <= 1.5
    driven = m(y_context, torch.ones(1, 4, 1), t)  # the input is held over each interval
    assert float(driven[0, -1, 0]) > float(out[0, -1, 0])


def test_dynamics_without_rhs_says_so():
    with pytest.raises(NotImplementedError, match="rhs"):
        blocks.Dynamics(_Spec())(torch.zeros(1, 1, 2), torch.zeros(1, 2, 0), torch.arange(2.0))


def test_network_and_law_helpers():
    net = blocks.mlp(3, 2, hidden=4)
    assert isinstance(net, blocks.MLP) and isinstance(net, torch.nn.Sequential)
    model = torch.nn.Module()
    model.net = net
    assert blocks.network_parameters(model) == (3 * 4 + 4) + (4 * 2 + 2)
    x = torch.tensor([[2.0, -1.0, 0.5]])
    feats = blocks.law_features(x, ["1", "x0*x2", "log|x1|", "x1/(1+|x1|)"])
    assert torch.allclose(feats, torch.tensor([[1.0, 1.0, 0.0, -0.5]]))
    law = blocks.SparseLaw(3, [{"x0": 2.0}, {"1": -1.0, "x2^2": 4.0}])
    blocks.replace_networks(model, {"net": law})
    assert blocks.network_parameters(model) == 0
    assert torch.allclose(model.net(x), torch.tensor([[4.0, 0.0]]))


def test_every_public_helper_is_covered():
    """A new helper in blocks.__all__ needs a signature test here."""
    covered = {"Param", "Positive", "Bounded", "Real", "mlp", "euler_rollout", "ode_rollout",
               "normalise", "SolverStepLimit", "safe_log", "param_memo", "Dynamics",
               "MLP", "network_parameters", "law_features", "SparseLaw", "replace_networks"}
    missing = set(blocks.__all__) - covered
    assert not missing, f"blocks helpers without a signature test: {sorted(missing)}"
    for name in blocks.__all__:
        assert inspect.getdoc(getattr(blocks, name)), f"blocks.{name} has no docstring"
