"""Cost per training epoch of an ODE candidate: torchdiffeq's solver loop vs plain-torch RK4.

The setting of issue 21 item 6: a 2-state system, 18 trajectories x 80 samples forecast 79
steps from one observed step, one RK4 step per sample interval. Each candidate is timed as
the harness trains it (full batch, one thread): forward under ``param_memo``, normalised MSE,
backward, one Adam step. Candidates:

* ``ode_rollout`` mechanistic (a damped oscillator's two constants) and hybrid (plus a
  16-unit network of the state in the derivative), free or driven by one input, integrated by torchdiffeq's ``odeint``
  (``blocks._torchdiffeq_rollout``, what ``ode_rollout`` ran before) and by the plain-torch
  path ``ode_rollout`` now takes for ``rk4``;
* a ``blocks.Dynamics`` prior (what the offline grammars edit), 1 and 2 RK4 substeps.

Besides wall time (the least of ``--repeats`` timings: the machine is shared) it counts the
aten operators one epoch dispatches, forward and backward: on CPU each costs a few
microseconds whatever its size, and the count does not depend on the machine's load.
``--cases dynamics`` runs only the cases whose name contains that text; the Dynamics cases
use nothing new, so an older checkout can be measured as well::

    PYTHONPATH=. python benchmarks/bench_ode_rollout.py [--epochs 20] [--trajectories 18] [--repeats 3]
    git archive 6105947 nimm_jupyter | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python benchmarks/bench_ode_rollout.py --cases Dynamics
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from nimm_jupyter import blocks


class Oscillator(nn.Module):
    """x' = v, v' = -k x - c v (+ a network of (x, v) in v' when ``hybrid``)."""

    def __init__(self, hybrid: bool, solver: str):
        super().__init__()
        self.k, self.c = blocks.Positive(2.6), blocks.Positive(0.4)
        self.net = blocks.mlp(2, 1, hidden=16, zero_last=False) if hybrid else None
        self.solver = solver

    def rhs(self, t, y, u):
        x, v = y[:, 0], y[:, 1]
        dv = -self.k() * x - self.c() * v
        if self.net is not None:
            dv = dv + 0.1 * self.net(y)[:, 0]
        if u.shape[-1]:  # a driven oscillator: the force is held over each interval
            dv = dv + u[:, 0]
        return torch.stack([v, dv], dim=1)

    def forward(self, y_context, u, t):
        c = y_context.shape[1]
        tt, uu = t[c - 1:], u[:, c - 1:]
        if self.solver == "torchdiffeq":
            dt = float(tt[1] - tt[0])
            ys = blocks._torchdiffeq_rollout(self.rhs, y_context[:, -1], tt, uu, "rk4", 10_000,
                                             options={"step_size": dt})
        else:
            ys = blocks.ode_rollout(self.rhs, y_context[:, -1], tt, uu, method="rk4")
        return ys[:, 1:]


class DynamicsOscillator(blocks.Dynamics):
    def __init__(self, substeps: int):
        super().__init__(type("Spec", (), {"target_names": ["x", "v"], "input_names": []})())
        self.k, self.c = blocks.Positive(2.6), blocks.Positive(0.4)
        self.substeps = substeps

    def rhs(self, t, y, u):
        x, v = y[:, 0], y[:, 1]
        return torch.stack([v, -self.k() * x - self.c() * v], dim=1)


def data(n: int, T: int, forced: bool, dt: float = 0.2
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y0 = torch.rand(n, 2, generator=g) * 2 - 1
    t = torch.arange(T, dtype=torch.float32) * dt
    u = torch.randn(n, T, 1, generator=g) if forced else torch.zeros(n, T, 0)
    with torch.no_grad():
        y = blocks.ode_rollout(Oscillator(False, "plain").rhs, y0, t, u=u, step_size=dt / 10)
    return y, u, t


class OpCount(TorchDispatchMode):
    """Counts the aten operators dispatched inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def trainer(model: nn.Module, y, u, t):
    """One training epoch of ``model`` as the harness runs it (full batch)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    target = y[:, 1:]

    def epoch():
        with blocks.param_memo():
            loss = ((model(y[:, :1], u, t) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    return epoch


def per_epoch(epoch, epochs: int) -> float:
    t0 = time.perf_counter()
    for _ in range(epochs):
        epoch()
    return (time.perf_counter() - t0) / epochs


def ops_per_epoch(epoch) -> int:
    count = OpCount()
    with count:
        epoch()
    return count.n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--trajectories", type=int, default=18)
    ap.add_argument("--samples", type=int, default=80)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", default="", help="only the cases whose name contains this")
    a = ap.parse_args()
    torch.set_num_threads(1)
    free, driven = data(a.trajectories, a.samples, False), data(a.trajectories, a.samples, True)
    cases = [(f"ode_rollout {kind}{', driven' if d is driven else ''}, {solver} rk4",
              Oscillator(kind == "hybrid", solver), d)
             for kind in ("mechanistic", "hybrid") for d in (free, driven)
             for solver in ("torchdiffeq", "plain-torch")]
    cases += [(f"Dynamics prior, substeps={n}", DynamicsOscillator(n), free) for n in (1, 2)]
    for name, model, (y, u, t) in cases:
        if a.cases not in name:
            continue
        torch.manual_seed(0)
        epoch = trainer(model, y, u, t)
        for _ in range(3):  # warm-up
            epoch()
        # the least of --repeats timings: the machine is shared, a slow run is someone else's
        ms = min(per_epoch(epoch, a.epochs) for _ in range(a.repeats)) * 1e3
        print(json.dumps({"case": name, "ms_per_epoch": round(ms, 2),
                          "s_per_200_epochs": round(ms * 0.2, 2),
                          "aten_ops_per_epoch": ops_per_epoch(epoch)}), flush=True)


if __name__ == "__main__":
    main()
