"""Reference candidates every search result is compared against.

* ``prior``: the task's mechanistic prior (``task.prior_code``), parameters fitted;
* ``neural``: a generic pure-neural model of the task's kind, with no mechanism at all;
* ``hybrid``: the task's hand-written neural-integrated model (``task.hybrid_code``).

The neural references are ordinary candidate sources (same contract, same harness), written
once per kind from :class:`~nimm_jupyter.tasks.TaskSpec` alone, so they work for any number of
targets, inputs (including none) and context steps (including one).
"""
from __future__ import annotations

from ..tasks.base import Task, TaskKind

__all__ = ["REFERENCES", "reference_code", "NEURAL_TRAJECTORY", "NEURAL_TABULAR"]

REFERENCES = ("prior", "neural", "hybrid")

NEURAL_TRAJECTORY = '''import torch
from torch import nn


class Model(nn.Module):
    """Pure neural forecaster: one GRU reads the context window, then rolls out on its own.

    It works on the normalised scale (training-split mean and std). Each step feeds the
    previous state and the known inputs of that interval to the GRU and adds the predicted
    change to the state, so an untrained model forecasts "no change". No mechanism is used.
    """

    def __init__(self, spec, hidden=32):
        super().__init__()
        S, U = spec.n_targets, spec.n_inputs
        self.register_buffer("y_mean", spec.target_mean.clone())
        self.register_buffer("y_scale", spec.target_scale.clone())
        self.register_buffer("u_mean", spec.input_mean.clone())
        self.register_buffer("u_scale", spec.input_scale.clone())
        self.hidden = hidden
        # A GRU cell written out so that batched restarts (torch.func.vmap) apply to it.
        self.from_input = nn.Linear(S + U, 3 * hidden)
        self.from_state = nn.Linear(hidden, 3 * hidden)
        self.readout = nn.Linear(hidden, S)
        nn.init.zeros_(self.readout.weight)
        nn.init.zeros_(self.readout.bias)

    def cell(self, x, h):
        xr, xz, xn = self.from_input(x).chunk(3, dim=-1)
        hr, hz, hn = self.from_state(h).chunk(3, dim=-1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h

    def forward(self, y_context, u, t):
        C, T = y_context.shape[1], t.shape[0]
        z_obs = (y_context - self.y_mean) / self.y_scale
        v = (u - self.u_mean) / self.u_scale
        h = z_obs.new_zeros(z_obs.shape[0], self.hidden)
        for k in range(C - 1):  # read the observed context
            h = self.cell(torch.cat([z_obs[:, k], v[:, k]], dim=-1), h)
        z = z_obs[:, -1]
        out = []
        for k in range(C, T):  # forecast step k from step k-1 and the inputs of that interval
            h = self.cell(torch.cat([z, v[:, k - 1]], dim=-1), h)
            z = (z + self.readout(h)).clamp(-30.0, 30.0)
            out.append(z)
        return self.y_mean + self.y_scale * torch.stack(out, dim=1)
'''

NEURAL_TABULAR = '''import torch
from torch import nn
from nimm_jupyter.blocks import mlp


class Model(nn.Module):
    """Pure neural regressor: an MLP on normalised features predicting normalised targets."""

    def __init__(self, spec, hidden=64):
        super().__init__()
        self.register_buffer("x_mean", spec.input_mean.clone())
        self.register_buffer("x_scale", spec.input_scale.clone())
        self.register_buffer("y_mean", spec.target_mean.clone())
        self.register_buffer("y_scale", spec.target_scale.clone())
        self.net = mlp(spec.n_inputs, spec.n_targets, hidden=hidden, depth=3,
                       activation="silu", zero_last=False)

    def forward(self, x):
        return self.y_mean + self.y_scale * self.net((x - self.x_mean) / self.x_scale)
'''


def reference_code(task: Task, which: str) -> str:
    """The candidate source of reference ``which`` (one of :data:`REFERENCES`) for ``task``."""
    if which == "prior":
        return task.prior_code
    if which == "hybrid":
        if not task.hybrid_code:
            raise ValueError(f"task {task.name!r} has no hand-written hybrid reference")
        return task.hybrid_code
    if which == "neural":
        return NEURAL_TRAJECTORY if task.kind is TaskKind.TRAJECTORY else NEURAL_TABULAR
    raise ValueError(f"unknown reference {which!r}; expected one of {', '.join(REFERENCES)}")
