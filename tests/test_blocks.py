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
    seen.clear()
    blocks.ode_rollout(f, torch.zeros(1, 1), t, u=u, method="rk4")
    assert seen == [1.0] * 4 + [2.0] * 4 + [3.0] * 4  # every RK4 stage of an interval
    with pytest.raises(blocks.SolverStepLimit):
        blocks.ode_rollout(_decay, torch.ones(1, 1), t, method="rk4", max_steps=3)


def test_ode_rollout_step_cap_counts_substeps_and_adaptive_evaluations():
    t = torch.linspace(0, 1, 4)
    y0 = torch.ones(1, 1)
    # 3 intervals of 1/3 at step 0.01: 34 RK4 steps each, 408 evaluations
    assert blocks.ode_rollout(_decay, y0, t, step_size=0.01, max_steps=408).shape == (1, 4, 1)
    with pytest.raises(blocks.SolverStepLimit, match="408"):
        blocks.ode_rollout(_decay, y0, t, step_size=0.01, max_steps=407)

    def stiff(tt, y, u):
        return -1e4 * (y - torch.cos(tt))

    with pytest.raises(blocks.SolverStepLimit):  # torchdiffeq's adaptive path, counted live
        blocks.ode_rollout(stiff, y0, t, method="dopri5", max_steps=50)


_A = torch.tensor([[0.0, 1.0], [-2.0, -0.3]], dtype=torch.float64)


def _linear(t, y, u):
    return y @ _A.T


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
def test_plain_torch_steps_agree_with_torchdiffeq_on_a_linear_ode(method):
    from torchdiffeq import odeint

    y0 = torch.tensor([[1.0, 0.0], [-0.5, 2.0], [0.3, -1.0]], dtype=torch.float64)
    t = torch.linspace(0, 6, 31, dtype=torch.float64)
    ours = blocks.ode_rollout(_linear, y0, t, method=method)
    ref = odeint(lambda tt, y: _linear(tt, y, None), y0, t, method=method,
                 options={"step_size": 0.2}).transpose(0, 1)
    assert ours.shape == (3, 31, 2)
    assert torch.allclose(ours, ref, atol=1e-12, rtol=0)
    # and both converge to the exact solution as the step shrinks
    exact = torch.stack([torch.matrix_exp(_A * float(tt)) @ y0.T for tt in t]).permute(2, 0, 1)
    fine = blocks.ode_rollout(_linear, y0, t, method=method, step_size=0.01)
    assert (fine - exact).abs().max() < (ours - exact).abs().max()


def test_plain_torch_steps_see_the_stage_times_on_uneven_sampling():
    t = torch.tensor([0.0, 0.1, 0.35, 1.0], dtype=torch.float64)  # split into 1, 5, 13 steps
    y0 = torch.zeros(2, 1, dtype=torch.float64)
    clock = blocks.ode_rollout(lambda tt, y, u: (tt * tt).expand_as(y), y0, t, step_size=0.05)
    assert torch.allclose(clock[0, :, 0], t ** 3 / 3, atol=1e-12)  # RK4 is exact on t^2
    assert blocks.ode_rollout(_decay, y0, t[:1]).shape == (2, 1, 1)  # no interval: y0 only


def test_plain_torch_rk4_close_to_torchdiffeq_on_a_nonlinear_ode():
    from torchdiffeq import odeint

    def pendulum(t, y, u):  # classic RK4 and torchdiffeq's 3/8 rule differ at O(h^5)
        return torch.stack([y[:, 1], -torch.sin(y[:, 0]) - 0.2 * y[:, 1]], dim=1)

    y0 = torch.tensor([[1.0, 0.0], [2.5, -0.5]], dtype=torch.float64)
    t = torch.linspace(0, 10, 51, dtype=torch.float64)
    ours = blocks.ode_rollout(pendulum, y0, t)
    ref = odeint(lambda tt, y: pendulum(tt, y, None), y0, t, method="rk4",
                 options={"step_size": 0.2}).transpose(0, 1)
    assert torch.allclose(ours, ref, atol=1e-4, rtol=0)


def test_other_solver_keywords_go_to_torchdiffeq():
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    y0 = torch.ones(2, 1, dtype=torch.float64)
    via_odeint = blocks.ode_rollout(_decay, y0, t, method="rk4",
                                    options={"step_size": 0.05, "interp": "linear"})
    assert float(via_odeint[0, -1, 0]) == pytest.approx(math.exp(-1.0), rel=1e-6)
    with pytest.warns(UserWarning, match="no_such_option"):  # reaches odeint, which warns
        blocks.ode_rollout(_decay, y0, t, method="rk4", options={"no_such_option": 1})


def test_ode_rollout_trains_under_vmap_like_the_harness():
    from torch.func import grad, vmap

    t = torch.linspace(0, 2, 11)
    y0 = torch.ones(3, 1)

    def final(k):
        return blocks.ode_rollout(lambda tt, y, u: -k * y, y0, t)[:, -1, 0].sum()

    ks = torch.tensor([0.5, 1.0, 2.0])
    assert torch.allclose(vmap(final)(ks), 3 * torch.exp(-2 * ks), rtol=1e-2)
    assert torch.allclose(vmap(grad(final))(ks), -6 * torch.exp(-2 * ks), rtol=1e-2)


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
    assert blocks.Positive(2.0)().item() == pytest.approx(2.0)  # .item(): no requires_grad warning
    assert blocks.Real(-3.0)().item() == pytest.approx(-3.0)
    b = blocks.Bounded(0.5, low=0.0, high=2.0)
    assert b().item() == pytest.approx(0.5)
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
    assert m(y_context, u, t).max().item() <= 1.5
    driven = m(y_context, torch.ones(1, 4, 1), t)  # the input is held over each interval
    assert driven[0, -1, 0].item() > out[0, -1, 0].item()


def test_dynamics_integrates_like_ode_rollout_with_the_same_steps():
    m = _Decay(_Spec())
    m.substeps = 3
    t = torch.tensor([0.0, 0.3, 0.6, 0.9, 1.2])
    y_context = torch.tensor([[[1.0, 2.0]], [[-1.0, 0.5]]])
    u = torch.rand(2, 5, 1)
    with torch.no_grad():
        ours = m(y_context, u, t)
        ref = blocks.ode_rollout(m.rhs, y_context[:, -1], t, u=u, step_size=0.1)
    assert torch.allclose(ours, ref[:, 1:], atol=1e-6)


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
