"""Does a prior help? Prior-seeded offline search vs no-prior search vs the true structure.

Six simulated 2-D ODE systems of our own design; each prior (a ``blocks.Dynamics``
subclass) leaves out one term and starts every constant 30 % off the truth:

* ``oscillator``: x' = v, v' = -k x - c v; the prior is frictionless (no -c v).
* ``logistic_prey``: x' = r x - r/K x^2 - a x y, y' = b x y - d y; the prior's prey grows
  without limit (no -r/K x^2).
* ``brusselator``: x' = A - (B+1) x + x^2 y, y' = B x - x^2 y; the prior omits -x^2 y in y'.
* ``pendulum``: x' = w, w' = -g sin(x) - c w (large swings); the prior has no damping.
* ``holling_prey``: x' = r x (1 - x/K) - a x y / (1 + h x), y' = b x y - d y; the prior's
  predation does not saturate (logistic Lotka-Volterra). The missing piece is not an additive term of
  the dynamics grammar's catalogue: the case for the parameter-modulation move (a -> a(x)).
* ``sir``: S' = -beta S I, I' = beta S I - gamma I (fractions of a population); the prior
  has no recovery (no -gamma I in I').

Per system: the fitted prior (node 0 of the seeded search), the prior-seeded offline search
(user data + ``prior_code``), the no-prior search (user data only: the generic baseline)
and the true structure fitted from the same 30 %-off start. Reports test RMSE (original
units) of the model picked by validation, and the relative error of the prior's constants.

    PYTHONPATH=. NIMM_DATA_DIR=... python benchmarks/bench_priors.py [--budget 12] [--systems a,b]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nimm_jupyter.modeling.harness import evaluate
from nimm_jupyter.search.api import search
from nimm_jupyter.tasks import task_from_dataframe

_HEAD = '''import torch
from nimm_jupyter.blocks import Dynamics, Positive


class Model(Dynamics):
    substeps = 2

    def __init__(self, spec):
        super().__init__(spec)
{params}

    def rhs(self, t, y, u):
        x, w = y[:, 0], y[:, 1]
{body}
        return torch.stack([dx, dw], dim=1)
'''


def model_source(params: dict[str, float], body: list[str], off: float = 1.3) -> str:
    """A ``blocks.Dynamics`` model: ``params`` (each started at ``off`` times its value) and
    ``body``, the rhs lines that set ``dx`` and ``dw`` from the states ``x``, ``w``."""
    p = "\n".join(f"        self.{k} = Positive({v * off:.4g})" for k, v in params.items())
    return _HEAD.format(params=p, body="\n".join("        " + b for b in body))


SYSTEMS = {
    "oscillator": dict(
        truth=dict(k=2.0, c=0.3), x0=((-1.5, 1.5), (-1.0, 1.0)), dt=0.2, T=30,
        rhs=lambda x, w, p: (w, -p["k"] * x - p["c"] * w),
        prior=["dx = w", "dw = -self.k() * x"],
        true=["dx = w", "dw = -self.k() * x - self.c() * w"], missing="-c*v in dv/dt"),
    "logistic_prey": dict(
        truth=dict(r=1.0, K=4.0, a=0.6, b=0.3, d=0.5), x0=((1.0, 3.0), (0.5, 1.5)), dt=0.25,
        T=30,
        rhs=lambda x, w, p: (p["r"] * x - p["r"] / p["K"] * x * x - p["a"] * x * w,
                             p["b"] * x * w - p["d"] * w),
        prior=["dx = self.r() * x - self.a() * x * w", "dw = self.b() * x * w - self.d() * w"],
        true=["dx = self.r() * x - self.r() / self.K() * x * x - self.a() * x * w",
              "dw = self.b() * x * w - self.d() * w"], missing="-r/K*x^2 in dx/dt"),
    "brusselator": dict(
        truth=dict(A=1.0, B=1.7), x0=((0.5, 1.5), (1.0, 2.5)), dt=0.25, T=30,
        rhs=lambda x, w, p: (p["A"] - (p["B"] + 1) * x + x * x * w, p["B"] * x - x * x * w),
        prior=["dx = self.A() - (self.B() + 1) * x + x * x * w", "dw = self.B() * x"],
        true=["dx = self.A() - (self.B() + 1) * x + x * x * w", "dw = self.B() * x - x * x * w"],
        missing="-x^2*y in dy/dt"),
    "pendulum": dict(
        truth=dict(g=4.0, c=0.25), x0=((-2.5, 2.5), (-1.0, 1.0)), dt=0.2, T=30,
        rhs=lambda x, w, p: (w, -p["g"] * np.sin(x) - p["c"] * w),
        prior=["dx = w", "dw = -self.g() * torch.sin(x)"],
        true=["dx = w", "dw = -self.g() * torch.sin(x) - self.c() * w"],
        missing="-c*w in dw/dt"),
    "holling_prey": dict(
        truth=dict(r=1.0, K=5.0, a=0.8, h=0.6, b=0.3, d=0.6), x0=((1.0, 4.0), (0.5, 2.0)),
        dt=0.3, T=30,
        rhs=lambda x, w, p: (p["r"] * x * (1 - x / p["K"]) - p["a"] * x * w / (1 + p["h"] * x),
                             p["b"] * x * w - p["d"] * w),
        prior=["dx = self.r() * x * (1 - x / self.K()) - self.a() * x * w",
               "dw = self.b() * x * w - self.d() * w"],
        true=["dx = self.r() * x * (1 - x / self.K()) - self.a() * x * w / (1 + self.h() * x)",
              "dw = self.b() * x * w - self.d() * w"], missing="saturation 1/(1+h*x) of a*x*y"),
    "sir": dict(
        truth=dict(beta=1.5, gamma=0.4), x0=((0.6, 0.99), (0.01, 0.1)), dt=0.5, T=30,
        rhs=lambda x, w, p: (-p["beta"] * x * w, p["beta"] * x * w - p["gamma"] * w),
        prior=["dx = -self.beta() * x * w", "dw = self.beta() * x * w"],
        true=["dx = -self.beta() * x * w", "dw = self.beta() * x * w - self.gamma() * w"],
        missing="-gamma*I in dI/dt"),
}


def simulate(name: str | dict, n: int = 20, noise: float = 0.01, seed: int = 0) -> pd.DataFrame:
    """``n`` trajectories (fine RK4 substeps), 1 % relative Gaussian noise, long format.
    ``name``: a key of :data:`SYSTEMS`, or a system dict of the same shape."""
    s = SYSTEMS[name] if isinstance(name, str) else name
    rng = np.random.default_rng(seed)
    rows = []
    sub = 20
    h = s["dt"] / sub
    for i in range(n):
        x, w = (rng.uniform(*s["x0"][0]), rng.uniform(*s["x0"][1]))
        for k in range(s["T"]):
            rows.append((i, k * s["dt"], x, w))
            for _ in range(sub):
                f = lambda a, b: np.array(s["rhs"](a, b, s["truth"]))  # noqa: E731
                k1 = f(x, w)
                k2 = f(x + h / 2 * k1[0], w + h / 2 * k1[1])
                k3 = f(x + h / 2 * k2[0], w + h / 2 * k2[1])
                k4 = f(x + h * k3[0], w + h * k3[1])
                x, w = np.array([x, w]) + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    df = pd.DataFrame(rows, columns=["traj", "t", "x", "y"])
    for c in ("x", "y"):
        df[c] += rng.normal(0.0, noise * df[c].std(), len(df))
    return df


def make_task(df: pd.DataFrame, name: str, prior: str | None):
    return task_from_dataframe(df, name=name, time="t", targets=["x", "y"], group="traj",
                               split_by="group", context=1, test_size=6, val_size=5,
                               prior_code=prior, source="simulated")


def const_err(params: dict, truth: dict) -> dict[str, float]:
    # an output-level (wrap grammar) model names the prior's constants "prior.<name>"
    flat = {k.removeprefix("prior."): v for k, v in params.items()}
    return {k: round(abs(float(flat[k]) / v - 1.0) * 100, 1) for k, v in truth.items()
            if k in flat}


def offline_search(task, budget: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        res = search(task, proposer="offline", budget=budget, branches=3, workers=1,
                     seed=seed, run_dir=Path(tmp) / "run").wait()
        best = res.best
        out = {"seconds": round(time.time() - t0, 1), "nodes": len(res.nodes),
               "best_change": best.change if best else None,
               "test_rmse": best.rmse("test") if best else None,
               "val_rmse": best.rmse("val") if best else None,
               "params": dict(best.result.parameters) if best else {},
               # every node: what it changed, its status and validation RMSE (for reading)
               "nodes": [(n.id, n.change[:110], n.status, round(n.rmse("val"), 5))
                         for n in res.nodes]}
        root = res.nodes[0] if res.nodes and res.nodes[0].proposer_meta.get("prior") else None
        if root is not None and root.ok:
            out["prior"] = {"test_rmse": root.rmse("test"), "val_rmse": root.rmse("val"),
                            "params": dict(root.result.parameters)}
        return out


def run(name: str, budget: int, seed: int) -> dict:
    s = SYSTEMS[name]
    df = simulate(name, seed=seed)
    prior_code = model_source(s["truth"], s["prior"])
    true_code = model_source(s["truth"], s["true"])
    seeded = offline_search(make_task(df, name, prior_code), budget, seed)
    blank = offline_search(make_task(df, name, None), budget, seed)
    truth = evaluate(make_task(df, name, true_code), true_code)
    row = {"system": name, "missing": s["missing"], "budget": budget,
           "prior_test": seeded.get("prior", {}).get("test_rmse"),
           "seeded_test": seeded["test_rmse"], "seeded_best": seeded["best_change"],
           "no_prior_test": blank["test_rmse"], "no_prior_best": blank["best_change"],
           "true_test": truth.test.rmse if truth.ok else None,
           "prior_const_err_%": const_err(seeded.get("prior", {}).get("params", {}), s["truth"]),
           "seeded_const_err_%": const_err(seeded["params"], s["truth"]),
           "true_const_err_%": const_err(truth.parameters if truth.ok else {}, s["truth"]),
           "seeded_params": {k: round(float(v), 4) for k, v in seeded["params"].items()
                             if "net" not in k},
           "seconds": {"seeded": seeded["seconds"], "no_prior": blank["seconds"]},
           "seeded_nodes": seeded["nodes"]}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    rows = []
    for name in a.systems.split(","):
        row = run(name, a.budget, a.seed)
        print(json.dumps(row), flush=True)
        rows.append(row)
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
