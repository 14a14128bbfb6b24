"""Tiny synthetic tasks for fast tests of the modelling layer (seconds, one thread).

* :func:`make_toy_trajectory`: a 2-state linear ODE driven by one input; the prior leaves out
  the coupling ``-d * x1`` in ``dx2/dt``, which the hybrid's network can learn.
* :func:`make_toy_tabular`: ``y = a * x1**2 + b * x2 + noise``; the prior is linear.
"""
from __future__ import annotations

import numpy as np

from nimm_jupyter.tasks import DataSource, Split, Task, TaskKind, Variable

TRAJ_PRIOR = '''import torch
from torch import nn
from nimm_jupyter.blocks import Positive, euler_rollout


class Model(nn.Module):
    """Linear decay with coupling x2 -> x1 and an input on x1."""

    def __init__(self, spec):
        super().__init__()
        self.a = Positive(0.3)
        self.b = Positive(0.5)
        self.c = Positive(0.5)

    def derivative(self, y, u_k):
        dx1 = -self.a() * y[:, :1] + self.b() * y[:, 1:2] + u_k[:, :1]
        dx2 = -self.c() * y[:, 1:2]
        return torch.cat([dx1, dx2], dim=1)

    def forward(self, y_context, u, t):
        C = y_context.shape[1]
        return euler_rollout(lambda y, u_k, k: self.derivative(y, u_k), y_context[:, -1],
                             u[:, C - 1:], n_steps=t.shape[0] - C, dt=float(t[1] - t[0]))
'''

TRAJ_HYBRID = '''import torch
from torch import nn
from nimm_jupyter.blocks import Positive, euler_rollout, mlp


class Model(nn.Module):
    """The linear prior plus a small network correcting both derivatives."""

    def __init__(self, spec):
        super().__init__()
        self.a = Positive(0.3)
        self.b = Positive(0.5)
        self.c = Positive(0.5)
        self.net = mlp(2, 2, hidden=16)

    def derivative(self, y, u_k):
        dx1 = -self.a() * y[:, :1] + self.b() * y[:, 1:2] + u_k[:, :1]
        dx2 = -self.c() * y[:, 1:2]
        return torch.cat([dx1, dx2], dim=1) + self.net(y)

    def forward(self, y_context, u, t):
        C = y_context.shape[1]
        return euler_rollout(lambda y, u_k, k: self.derivative(y, u_k), y_context[:, -1],
                             u[:, C - 1:], n_steps=t.shape[0] - C, dt=float(t[1] - t[0]))
'''

TAB_PRIOR = '''import torch
from torch import nn
from nimm_jupyter.blocks import Real


class Model(nn.Module):
    """A linear law in both features."""

    def __init__(self, spec):
        super().__init__()
        self.w1 = Real(0.0)
        self.w2 = Real(0.0)
        self.c = Real(0.0)

    def forward(self, x):
        return (self.c() + self.w1() * x[:, 0] + self.w2() * x[:, 1]).unsqueeze(1)
'''

TAB_HYBRID = '''import torch
from torch import nn
from nimm_jupyter.blocks import Real, mlp


class Model(nn.Module):
    """The linear law plus a network of the normalised features."""

    def __init__(self, spec):
        super().__init__()
        self.w1 = Real(0.0)
        self.w2 = Real(0.0)
        self.c = Real(0.0)
        self.net = mlp(2, 1, hidden=16)
        self.mean, self.scale = spec.input_mean, spec.input_scale

    def forward(self, x):
        linear = (self.c() + self.w1() * x[:, 0] + self.w2() * x[:, 1]).unsqueeze(1)
        return linear + self.net((x - self.mean) / self.scale)
'''


def _simulate(rng: np.random.Generator, n: int, T: int, dt: float, forced: bool,
              a: float, b: float, c: float, d: float) -> tuple[np.ndarray, np.ndarray]:
    x = rng.uniform(-1.5, 1.5, size=(n, 2))
    u = np.zeros((n, T, 1))
    # One input pulse per trajectory at a random time, held over a few steps.
    start = rng.integers(2, T - 4, size=n)
    for i in range(n):
        u[i, start[i]:start[i] + 3, 0] = rng.uniform(0.5, 1.5)
    if not forced:
        u[:] = 0.0
    ys = np.zeros((n, T, 2))
    ys[:, 0] = x
    sub = 20
    for k in range(1, T):
        for _ in range(sub):  # fine Euler steps: close to the exact solution
            dx1 = -a * x[:, 0] + b * x[:, 1] + u[:, k - 1, 0]
            dx2 = -c * x[:, 1] - d * x[:, 0]
            x = x + dt / sub * np.stack([dx1, dx2], axis=1)
        ys[:, k] = x
    return ys, (u if forced else u[:, :, :0])


def make_toy_trajectory(n_train: int = 32, n_val: int = 16, n_test: int = 16, T: int = 20,
                        context: int = 2, seed: int = 0, with_input: bool = True) -> Task:
    """A 2-state linear ODE with one input; the prior omits ``-d * x1`` in ``dx2/dt``.

    ``with_input=False`` gives the unforced system with U = 0 inputs.
    """
    rng = np.random.default_rng(seed)
    dt = 0.25
    params = dict(a=0.5, b=1.0, c=0.3, d=0.8)
    splits = {}
    for name, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        ys, u = _simulate(rng, n, T, dt, forced=with_input, **params)
        splits[name] = Split(inputs=u.astype(np.float64), targets=ys)
    prior, hybrid = TRAJ_PRIOR, TRAJ_HYBRID
    if not with_input:
        prior, hybrid = (c.replace(" + u_k[:, :1]", "") for c in (prior, hybrid))
    return Task(
        name="toy_linear_ode", kind=TaskKind.TRAJECTORY,
        description="Two coupled states x1, x2 (arbitrary units) driven by an input pulse u on x1.",
        source=DataSource.SYNTHETIC, provenance="tests/toy_tasks.py",
        inputs=[Variable("u")] if with_input else [], targets=[Variable("x1"), Variable("x2")],
        train=splits["train"], val=splits["val"], test=splits["test"],
        prior_code=prior, prior_omits="the coupling -d*x1 in dx2/dt",
        hybrid_code=hybrid, time=np.arange(T) * dt, context=context,
        options=dict(n_train=n_train, seed=seed, **params),
    )


def make_toy_tabular(n_train: int = 64, n_val: int = 32, n_test: int = 32, seed: int = 0) -> Task:
    """``y = 1.5 * x1**2 - 0.7 * x2 + noise``; the prior is linear in x1, x2."""
    rng = np.random.default_rng(seed)
    splits = {}
    for name, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        x = rng.uniform(-2.0, 2.0, size=(n, 2))
        y = 1.5 * x[:, :1] ** 2 - 0.7 * x[:, 1:2] + rng.normal(0.0, 0.05, size=(n, 1))
        splits[name] = Split(inputs=x, targets=y)
    return Task(
        name="toy_quadratic", kind=TaskKind.TABULAR,
        description="y from two features x1, x2; a linear law is the prior.",
        source=DataSource.SYNTHETIC, provenance="tests/toy_tasks.py",
        inputs=[Variable("x1"), Variable("x2")], targets=[Variable("y")],
        train=splits["train"], val=splits["val"], test=splits["test"],
        prior_code=TAB_PRIOR, prior_omits="the quadratic dependence on x1",
        hybrid_code=TAB_HYBRID, options=dict(n_train=n_train, seed=seed),
    )


def line_of(source: str, needle: str) -> int:
    """1-based number of the first line of ``source`` containing ``needle``."""
    return next(i for i, line in enumerate(source.splitlines(), 1) if needle in line)


def holdout_rmse_norm(task: Task, train_pred: np.ndarray, holdout: float = 0.2) -> float:
    """Normalised RMSE of a model's training-split predictions on the hold-out the harness
    stops on (:func:`nimm_jupyter.tasks.splits.holdout_indices`): what its curves call "val"."""
    from nimm_jupyter.tasks.splits import holdout_indices

    traj = task.kind is TaskKind.TRAJECTORY
    pred = np.asarray(train_pred, dtype=np.float64)
    _fit, hold, _how = holdout_indices(task.train, holdout, windows=traj,
                                       horizon=pred.shape[1] if traj else 0)
    y = np.asarray(task.train.targets, dtype=np.float64)[hold]
    if traj:
        y = y[:, int(task.context):]
    err = (pred[hold] - y) / task.spec().target_scale.numpy()
    return float(np.sqrt(np.nanmean(err ** 2)))
