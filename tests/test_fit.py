"""The fitting engine on small problems with known answers (Adam, then the L-BFGS polish).

Each problem is built so that its answer is known exactly: a linear ODE simulated with the
same fine Euler steps the candidate takes, a logistic growth curve in closed form, and a
linear regression whose least-squares coefficients numpy computes.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from toy_tasks import (
    TAB_PRIOR, TRAJ_HYBRID, holdout_rmse_norm, make_toy_tabular, make_toy_trajectory,
)

from nimm_jupyter.modeling import EvalResult, evaluate
from nimm_jupyter.modeling.config import TrainConfig
from nimm_jupyter.modeling.harness import fit_and_predict
from nimm_jupyter.modeling.result import StopReason
from nimm_jupyter.tasks import DataSource, Split, Task, TaskKind, Variable
from nimm_jupyter.tasks.splits import holdout_indices

pytestmark = pytest.mark.timeout(120)


def candidate(blocks: str, body: str) -> str:
    """A candidate source: the usual imports, ``class Model(nn.Module):`` and ``body``."""
    return ("import torch\nfrom torch import nn\n"
            f"from nimm_jupyter.blocks import {blocks}\n\n\nclass Model(nn.Module):\n" + body)


# The toy ODE's own structure (tests/toy_tasks.py simulates it with 20 Euler sub-steps per
# sample), from generic starting values: a=0.5, b=1.0, c=0.3, d=0.8 are to be recovered.
LINEAR_ODE = candidate("Positive, euler_rollout", '''    def __init__(self, spec):
        super().__init__()
        self.a, self.b = Positive(0.2), Positive(0.4)
        self.c, self.d = Positive(0.1), Positive(0.3)

    def forward(self, y_context, u, t):
        dt = float(t[1] - t[0])
        a, b, c, d = self.a(), self.b(), self.c(), self.d()

        def step(y, u_k, k):
            x = y
            for _ in range(20):
                dx1 = -a * x[:, :1] + b * x[:, 1:] + u_k[:, :1]
                dx2 = -c * x[:, 1:] - d * x[:, :1]
                x = x + dt / 20 * torch.cat([dx1, dx2], dim=1)
            return (x - y) / dt

        C = y_context.shape[1]
        return euler_rollout(step, y_context[:, -1], u[:, C - 1:], n_steps=t.shape[0] - C, dt=dt)
''')

LOGISTIC = candidate("Positive", '''    """Closed-form logistic growth N(t) = K / (1 + (K / N0 - 1) exp(-r (t - t0)))."""

    def __init__(self, spec):
        super().__init__()
        self.r = Positive(0.2)
        self.K = Positive(20.0)

    def forward(self, y_context, u, t):
        C = y_context.shape[1]
        n0, K = y_context[:, -1], self.K()
        dt = (t[C:] - t[C - 1]).reshape(1, -1, 1)
        return K / (1 + (K / n0.unsqueeze(1) - 1) * torch.exp(-self.r() * dt))
''')

LINEAR_RAW_SCALE = candidate("Real", '''    """A linear law whose intercept lives at a raw scale of ~150."""

    def __init__(self, spec):
        super().__init__()
        self.c = Real(100.0)
        self.w = Real([1.0, 1.0])

    def forward(self, x):
        return (self.c() + x @ self.w()).unsqueeze(1)
''')


def _task(name: str, kind: TaskKind, splits: dict[str, Split], n_in: int, n_out: int,
          **kw) -> Task:
    return Task(name=name, kind=kind, description="a test problem with a known answer",
                source=DataSource.SYNTHETIC, provenance="tests/test_fit.py",
                inputs=[Variable(f"x{i}") for i in range(n_in)],
                targets=[Variable(f"y{i}") for i in range(n_out)],
                train=splits["train"], val=splits["val"], test=splits["test"],
                prior_code="", prior_omits="", hybrid_code="", **kw)


def logistic_task(r: float = 0.8, K: float = 50.0, T: int = 15) -> Task:
    rng = np.random.default_rng(0)
    t = np.arange(T) * 0.5
    splits = {}
    for name, n in (("train", 24), ("val", 12), ("test", 12)):
        n0 = rng.uniform(1.0, 10.0, size=(n, 1))
        y = K / (1 + (K / n0 - 1) * np.exp(-r * t[None, :]))
        splits[name] = Split(inputs=np.zeros((n, T, 0)), targets=y[..., None])
    return _task("logistic", TaskKind.TRAJECTORY, splits, 0, 1, time=t, context=1)


def regression_task(seed: int = 0) -> tuple[Task, np.ndarray]:
    """y = 150 + 3 x0 - 2 x1 + noise; returns the task and the least-squares fit of the
    training samples the harness fits on (all but its early-stopping hold-out)."""
    rng = np.random.default_rng(seed)
    splits = {}
    for name, n in (("train", 80), ("val", 40), ("test", 40)):
        x = rng.uniform(-2.0, 2.0, size=(n, 2))
        y = 150 + x @ np.array([3.0, -2.0]) + rng.normal(0.0, 0.5, size=n)
        splits[name] = Split(inputs=x, targets=y[:, None])
    fit, _hold, _how = holdout_indices(splits["train"], TrainConfig().holdout)  # what it fits
    x = splits["train"].inputs[fit]
    design = np.column_stack([np.ones(len(x)), x])
    coef = np.linalg.lstsq(design, splits["train"].targets[fit, 0], rcond=None)[0]
    return _task("linreg", TaskKind.TABULAR, splits, 2, 1), coef


def test_linear_ode_recovers_its_rates():
    task = make_toy_trajectory(n_train=8, n_val=4, n_test=4, T=8)
    res = evaluate(task, LINEAR_ODE, TrainConfig(max_epochs=10, polish_iters=60))
    assert res.ok, res.message
    truth = {"a": 0.5, "b": 1.0, "c": 0.3, "d": 0.8}
    for name, value in truth.items():
        assert res.parameters[name] == pytest.approx(value, rel=1e-2), res.parameters
    assert res.stop_reason is not None and not res.untrained
    assert math.isfinite(res.grad_norm)


def test_logistic_growth_recovers_rate_and_capacity():
    res = evaluate(logistic_task(), LOGISTIC, TrainConfig(max_epochs=30))
    assert res.ok, res.message
    assert res.parameters["r"] == pytest.approx(0.8, rel=1e-3)
    assert res.parameters["K"] == pytest.approx(50.0, rel=1e-3)
    assert res.test.rmse < 1e-2
    assert any(n.startswith("L-BFGS polish") for n in res.notes)


def test_linear_regression_matches_least_squares_at_raw_scale():
    task, coef = regression_task()
    res = evaluate(task, LINEAR_RAW_SCALE, TrainConfig(max_epochs=30))
    assert res.ok, res.message
    fitted = [res.parameters["c"], res.parameters["w[0]"], res.parameters["w[1]"]]
    assert fitted == pytest.approx(coef.tolist(), rel=2e-2)


def test_float64_fit_is_tighter():
    task, coef = regression_task()
    res = evaluate(task, LINEAR_RAW_SCALE, TrainConfig(max_epochs=30, dtype="float64"))
    assert res.ok, res.message
    fitted = [res.parameters["c"], res.parameters["w[0]"], res.parameters["w[1]"]]
    assert fitted == pytest.approx(coef.tolist(), rel=1e-6)


def test_untrained_flag_when_the_holdout_only_gets_worse():
    # The fitted samples say y = +x, the early-stopping hold-out says y = -x: every step
    # towards the fit hurts the hold-out, so the best weights are the starting ones and the
    # result must say so.
    rng = np.random.default_rng(1)
    splits = {}
    for name, sign in (("train", 1.0), ("val", -1.0), ("test", -1.0)):
        x = rng.uniform(-1.0, 1.0, size=(32, 2))
        splits[name] = Split(inputs=x, targets=sign * x[:, :1])
    _fit, hold, _how = holdout_indices(splits["train"], TrainConfig().holdout)
    splits["train"].targets[hold] *= -1.0
    task = _task("contrary", TaskKind.TABULAR, splits, 2, 1)
    res = evaluate(task, TAB_PRIOR, TrainConfig(max_epochs=20))
    assert res.ok and res.untrained
    assert any(n.startswith("untrained") for n in res.notes)
    assert res.for_proposer()["untrained"] is True
    back = EvalResult.from_dict(res.to_dict())
    assert back.untrained and back.stop_reason is res.stop_reason


def test_trained_model_is_not_flagged():
    task, _ = regression_task()
    res = evaluate(task, LINEAR_RAW_SCALE, TrainConfig(max_epochs=10))
    assert res.ok and not res.untrained


def test_restarts_skipped_for_deterministic_models():
    tab = make_toy_tabular(n_train=32, n_val=16, n_test=16)
    res = evaluate(tab, TAB_PRIOR, TrainConfig(max_epochs=10, restarts=3))
    assert res.ok and res.restarts == 3
    assert any("restarts: 3 asked, 1 trained" in n for n in res.notes)
    assert not any("copies trained" in n for n in res.notes)
    traj = make_toy_trajectory(n_train=8, n_val=4, n_test=4, T=8)
    random_init = evaluate(traj, TRAJ_HYBRID, TrainConfig(max_epochs=5, restarts=2, polish_iters=0))
    assert random_init.ok and any("2 copies trained" in n for n in random_init.notes)


def test_stop_reasons():
    task, _ = regression_task()
    capped = evaluate(task, LINEAR_RAW_SCALE, TrainConfig(max_epochs=5, polish_iters=0))
    assert capped.stop_reason is StopReason.EPOCH_CAP
    polished = evaluate(task, LINEAR_RAW_SCALE, TrainConfig(max_epochs=5))
    assert polished.stop_reason is StopReason.CONVERGED
    assert polished.val.rmse <= capped.val.rmse


def test_validate_every_k_epochs():
    task, _ = regression_task()
    res = evaluate(task, LINEAR_RAW_SCALE, TrainConfig(max_epochs=20, val_every=5, polish_iters=0))
    assert [c["epoch"] for c in res.loss_curve] == [5, 10, 15, 20]


def test_describe_names_the_schedule():
    text = TrainConfig(max_epochs=77).describe()
    assert "Adam" in text and "L-BFGS" in text and "77 epochs" in text and "logarithm" in text
    assert "L-BFGS" not in TrainConfig(polish_iters=0).describe()


def test_param_memo_computes_each_value_once_with_correct_gradients():
    import torch

    from nimm_jupyter.blocks import Positive, param_memo

    p = Positive(2.0)
    with param_memo():
        a, b = p(), p()
        assert a is b
        (a * 3 + b).backward()
    assert p.raw.grad.item() == pytest.approx(4 * 2.0)  # d/draw of 4 exp(raw) at exp(raw) = 2
    assert p() is not p()  # outside a memo block every call computes afresh
    assert float(p().detach()) == pytest.approx(2.0) and isinstance(p(), torch.Tensor)


def test_polished_restarts_never_lose_to_one_run():
    # Copy 0 of a restart run is the single run and is always polished, so the kept copy can
    # only be as good or better on the hold-out it is selected on.
    traj = make_toy_trajectory(n_train=8, n_val=4, n_test=4, T=8)
    cfg = dict(max_epochs=10, polish_iters=20)
    one, one_pred = fit_and_predict(traj, TRAJ_HYBRID, TrainConfig(**cfg))
    three, three_pred = fit_and_predict(traj, TRAJ_HYBRID, TrainConfig(restarts=3, **cfg))
    assert one.ok and three.ok
    assert holdout_rmse_norm(traj, three_pred["train"]) <= holdout_rmse_norm(
        traj, one_pred["train"]) * (1 + 1e-3)
    assert any(n.startswith("L-BFGS polish (kept copy") for n in three.notes)


# sin(w x) on x in [0, 4] with w = 3: from w = 1.8 the fit falls into a local minimum near
# w ~ 1.1-1.3 (the barrier is at ~2.03); a jittered restart (factor 2: 0.9 .. 3.6) can land in
# the basin of 3.
SINE = candidate("Positive", '''    def __init__(self, spec):
        super().__init__()
        self.w = Positive(1.8)

    def forward(self, x):
        return torch.sin(self.w() * x)
''')


def sine_task() -> Task:
    rng = np.random.default_rng(0)
    splits = {}
    for name, n in (("train", 80), ("val", 40), ("test", 40)):
        x = rng.uniform(0.0, 4.0, size=(n, 1))
        splits[name] = Split(inputs=x, targets=np.sin(3.0 * x))
    return _task("sine", TaskKind.TABULAR, splits, 1, 1)


def test_restarts_jitter_mechanistic_starts_out_of_a_local_minimum():
    task = sine_task()
    stuck = evaluate(task, SINE, TrainConfig())
    assert stuck.ok and stuck.parameters["w"] < 2.03  # on the near side of the barrier
    rescued = evaluate(task, SINE, TrainConfig(restarts=4))
    assert rescued.ok, rescued.message
    assert rescued.parameters["w"] == pytest.approx(3.0, rel=1e-3)
    assert rescued.test.rmse < 1e-3 and not rescued.untrained
    assert any("4 copies trained" in n for n in rescued.notes)


def test_jitter_keeps_copy_zero_and_stays_in_range():
    import torch
    from torch import nn

    from nimm_jupyter.blocks import Bounded, Positive, Real
    from nimm_jupyter.modeling.training import build_copy

    class Model(nn.Module):
        def __init__(self, spec):
            super().__init__()
            self.rate = Positive([2.0] * 50)
            self.frac = Bounded(0.5, 0.0, 10.0, shape=(50,))
            self.gain = Real([-4.0] * 50)
            self.zero = Real(0.0)
            self.fixed = Positive(7.0)
            self.fixed.raw.requires_grad_(False)

    def values(k):
        m = build_copy(Model, None, torch.device("cpu"), 0, k)
        return {n: getattr(m, n)().detach() for n in ("rate", "frac", "gain", "zero", "fixed")}

    v0, v1, v2 = values(0), values(1), values(2)
    assert torch.allclose(v0["rate"], torch.tensor(2.0))
    assert torch.allclose(v0["frac"], torch.tensor(0.5))
    assert torch.allclose(v0["gain"], torch.tensor(-4.0))
    assert ((v1["rate"] >= 1.0 - 1e-5) & (v1["rate"] <= 4.0 + 1e-5)).all()
    assert ((v1["gain"] <= -2.0 + 1e-5) & (v1["gain"] >= -8.0 - 1e-5)).all()
    assert ((v1["frac"] >= 0.5 - 1e-4) & (v1["frac"] <= 9.5 + 1e-4)).all()
    assert v1["rate"].std() > 0.1 and v1["frac"].std() > 0.5  # each element drawn on its own
    assert v1["zero"].item() == 0.0 and v1["fixed"].item() == pytest.approx(7.0)
    assert not torch.equal(v1["rate"], v2["rate"])  # another copy, another draw
    assert torch.equal(v1["rate"], values(1)["rate"])  # reproducible from the seed


def test_describe_names_the_restart_jitter():
    text = TrainConfig(restarts=4).describe()
    assert "4 copies" in text and "jittered" in text and "factor of 2" in text
    assert "jittered" not in TrainConfig().describe()
