"""Benchmark of the ``distill`` operator (issue 20, target 1; not a test).

On ``lung_cancer_chemo`` (or ``--task``, any lung-cancer task; ``--patients`` per split, simulator seed ``--seed``), an offline
search restricted to two tumour-grammar branches, the network-free mechanistic structure
search and the size-dependent growth-rate correction (a network of the normalised
log-volume and drug level added to the per-volume growth rate), runs ``--budget`` nodes with
the ``nimmgen`` policy, which distils its best hybrid once at most ``distill_at`` nodes
remain. Then it reports, for every distilled node: its network parameters (target 0), its
validation RMSE against its neural parent's (target: within 10 %), the law, and whether the
law has the Gompertz form ``rho * ln(K / V)`` up to rearrangement: the growth-rate network
(input ``x0 = ln(V) / 5``) became ``a + b * x0`` with ``b < 0`` plus, optionally, terms in the
drug input ``x1`` only; the per-volume growth rate at zero drug is then ``rho' ln(K'/V)``,
and the ``rho'``, ``K'`` it implies are printed beside the simulator's.

Usage: ``python benchmarks/bench_distill.py [--patients 16] [--budget 8] [--seed 0]``;
prints a markdown table and one JSON line. ``--all-branches K`` runs the unrestricted
offline proposer with ``K`` branches instead (whatever hybrid wins is distilled);
``--oscillator`` the prior-seeded offline search of ``bench_priors.py``'s damped oscillator,
whose prior lacks the friction ``-c v`` (the Gompertz columns are then meaningless: read the
law, over the network's inputs, the normalised states ``x0 = x``, ``x1 = v``).
"""
from __future__ import annotations

import argparse
import json
import os
import math
import re
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from nimm_jupyter.distill import laws_from_meta, refitted  # noqa: E402
from nimm_jupyter.proposers.offline import OfflineProposer  # noqa: E402
from nimm_jupyter.modeling.config import TrainConfig  # noqa: E402
from nimm_jupyter.search.distill_step import distill_proposal, fitted_formula  # noqa: E402
from nimm_jupyter.search.rundir import RunDir  # noqa: E402
from nimm_jupyter.tasks.pkpd_sim import K as SIM_K, RHO as SIM_RHO, V0_HIGH as SIM_V0_HIGH, V0_LOW as SIM_V0_LOW  # noqa: E402  (reported, never shown to a proposer)
from nimm_jupyter.search.api import open_run, search  # noqa: E402

BRANCHES = ("tumour:none", "tumour:rate_net")


class GrowthRateSearch(OfflineProposer):
    """The offline proposer, offering only the two branches of :data:`BRANCHES`."""

    def strategies(self, ctx, k, exclude):  # noqa: D102 - see the class docstring
        return [s for s in super().strategies(ctx, 99, exclude) if s.key in BRANCHES][:k]


def gompertz_form(law: dict[str, float]) -> bool:
    """The growth-rate network's law (input ``x0 = ln(V) / 5``, ``x1`` the scaled drug
    level) is ``a + b * x0 (+ terms of x1 alone)`` with ``b < 0``: Gompertz in ``V``."""
    in_x0 = [t for t in law if "x0" in t]
    return in_x0 == ["x0"] and law["x0"] < 0


def _at_zero_treatment(term: str) -> float:
    """A library term of the inputs ``x1, x2, ...`` (drug level, doses) at zero treatment:
    the constant 1, ``exp(-xi)`` 1, ``log|xi|`` undefined (NaN), every other term 0."""
    if term == "1" or re.fullmatch(r"exp\(-x\d+\)", term):
        return 1.0
    return float("nan") if "log" in term else 0.0


# the tumour grammar's growth laws (proposers/offline/tumour.py GROWTH), per-volume rate at V
_GROWTH = {
    "exponential": lambda p, V: p["rho"] + 0 * V,
    "logistic": lambda p, V: p["rho"] * (1.0 - V / p["K"]),
    "gompertz": lambda p, V: p["rho"] * np.log(p["K"] / V),
    "bertalanffy": lambda p, V: p["rho"] * V ** (-1.0 / 3.0) - p["delta"],
}
_V_GRID = np.geomspace(SIM_V0_LOW, SIM_V0_HIGH, 200)  # the initial volumes' range, cm^3


def growth_constants(law: dict[str, float], genome: dict, params: dict[str, float]) -> tuple[float, float]:
    """The per-volume growth rate ``rho' * ln(K' / V)`` the distilled model implies at zero
    drug: the parent's growth law plus ``nn_scale * law(ln(V) / 5, 0, ...)`` (the tumour
    grammar's rate_net), fitted by least squares in ``ln V`` over the initial volumes' range
    (exact when the parent's law is exponential or Gompertz); NaN where the law is not of
    the Gompertz form or the parent's law is unknown."""
    growth, scale = genome.get("growth"), float(genome.get("nn_scale", "nan"))
    if not gompertz_form(law) or growth not in _GROWTH:
        return float("nan"), float("nan")
    at_zero = {t: _at_zero_treatment(t) for t in law if t != "x0"}
    if any(math.isnan(v) for v in at_zero.values()):
        return float("nan"), float("nan")
    const = scale * sum(c * at_zero[t] for t, c in law.items() if t != "x0")
    rate = _GROWTH[growth](params, _V_GRID) + const + scale * law["x0"] * np.log(_V_GRID) / 5.0
    slope, intercept = np.polyfit(np.log(_V_GRID), rate, 1)  # rate = intercept + slope ln V
    rho = -float(slope)
    return rho, math.exp(float(intercept) / rho)


def oscillator_task(seed: int):
    """bench_priors.py's oscillator (x' = v, v' = -k x - c v) with its frictionless prior."""
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_priors import SYSTEMS, make_task, model_source, simulate

    s = SYSTEMS["oscillator"]
    return make_task(simulate("oscillator", seed=seed), "oscillator",
                     model_source(s["truth"], s["prior"]))


def oscillator_constants(law: dict[str, float], genome: dict, params: dict[str, float],
                         spec) -> tuple[float, float]:
    """The friction ``c'`` and spring constant ``k'`` a distilled oscillator implies when its
    law (a network of the normalised states in dv/dt: ``x0 = (x - m_x) / s_x``, ``x1 =
    (v - m_v) / s_v``, times ``nn_scale * s_v / T``) is linear in the states; NaN otherwise."""
    if not set(law) <= {"1", "x0", "x1"} or genome.get("nn_state") != "y":
        return float("nan"), float("nan")
    gain = float(genome["nn_scale"]) * float(spec.target_scale[1]) / float(spec.time[-1] - spec.time[0])
    c = -gain * law.get("x1", 0.0) / float(spec.target_scale[1])
    k = params["k"] - gain * law.get("x0", 0.0) / float(spec.target_scale[0])
    return c, k


def _time_distill_step(run_dir: str, result, parent_id: int, repeats: int = 3) -> list[float]:
    """Wall time of :func:`distill_proposal` on the run's node ``parent_id`` (a repeat of
    what the search did: fresh probe executor, probe job, sparse fit, rewrite)."""
    rd = RunDir(run_dir)
    task = rd.load_task(result.task_name, result.settings.get("task_options"))
    parent = next(n for n in result.nodes if n.id == parent_id)
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        distill_proposal(task, parent, rd.node_weights(parent), TrainConfig())
        out.append(round(time.perf_counter() - t, 2))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="lung_cancer_chemo",
                    choices=("lung_cancer", "lung_cancer_chemo", "lung_cancer_chemo_radio"))
    ap.add_argument("--patients", type=int, default=16)
    ap.add_argument("--budget", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run-dir", default=None)
    ap.add_argument("--all-branches", type=int, default=0, metavar="K",
                    help="the unrestricted offline proposer with K branches instead")
    ap.add_argument("--oscillator", action="store_true",
                    help="the simulated oscillator of bench_priors.py (its prior lacks friction) "
                         "with the prior-seeded offline proposer (3 branches) instead")
    args = ap.parse_args()
    torch.set_num_threads(1)
    run_dir = args.run_dir or tempfile.mkdtemp(prefix="bench-distill-")
    t0 = time.perf_counter()
    if args.oscillator:
        task = oscillator_task(args.seed)
        search(task, budget=args.budget, branches=3, proposer="offline",
               workers=1, device="cpu", run_dir=run_dir, seed=args.seed)
    else:
        search(args.task, task_options={"n_patients": args.patients, "seed": args.seed},
               budget=args.budget, branches=args.all_branches or 2,
               proposer=(OfflineProposer if args.all_branches else GrowthRateSearch)(seed=args.seed),
               workers=1, device="cpu", run_dir=run_dir, seed=args.seed)
    wall = time.perf_counter() - t0
    result = open_run(run_dir)
    by_id = {n.id: n for n in result.nodes}
    rows = []
    for n in result.nodes:
        if n.operator != "distill":
            continue
        parent = by_id[n.parent]
        text = (n.proposer_meta.get("formula") or {}).get("text", "")
        params = n.result.parameters if n.result else {}
        law = refitted(laws_from_meta(n.proposer_meta.get("laws")), params).get("net")
        fitted = law.laws[0] if law is not None and len(law.laws) == 1 else {}
        genome = parent.proposer_meta.get("genome") or {}
        rho, K = (oscillator_constants(fitted, genome, params, task.spec()) if args.oscillator
                  else growth_constants(fitted, genome, params))
        rows.append({
            "node": n.id, "parent": parent.id, "status": n.status,
            "parent_network_parameters": parent.result.n_network_parameters,
            "network_parameters": n.result.n_network_parameters if n.result else None,
            "parent_val_rmse": parent.rmse("val"), "val_rmse": n.rmse("val"),
            "val_ratio": n.rmse("val") / parent.rmse("val"),
            "parent_test_rmse": parent.rmse("test"), "test_rmse": n.rmse("test"),
            "parent_growth_law": genome.get("growth"),
            "gompertz_form": gompertz_form(fitted), "rho": rho, "K": K,
            "formula": text, "fitted_formula": (fitted_formula(n) or {}).get("text"),
            "fitted": params,
        })
    best = result.best
    print(("oscillator (prior-seeded offline search), " if args.oscillator else
           f"{args.task}, {args.patients} patients/split, ")
          + f"budget {args.budget}, "
          + (f"all offline branches ({args.all_branches}), " if args.all_branches else "")
          + f"seed {args.seed}: {wall:.0f} s; best node {best.id if best else None} "
          + f"({best.operator if best else ''}, val RMSE "
          + f"{best.rmse('val') if best else float('nan'):.4g})\n")
    print("| distilled node | of (growth law) | network params parent -> child | val RMSE parent "
          "-> child (ratio) | test RMSE parent -> child | Gompertz form | implied rho', K' | "
          "law as trained |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['node']} ({r['status']}) | {r['parent']} ({r['parent_growth_law']}) | "
              f"{r['parent_network_parameters']} -> {r['network_parameters']} | "
              f"{r['parent_val_rmse']:.4g} -> {r['val_rmse']:.4g} ({r['val_ratio']:.3f}) | "
              f"{r['parent_test_rmse']:.4g} -> {r['test_rmse']:.4g} | "
              f"{'yes' if r['gompertz_form'] else 'no'} | {r['rho']:.4g}, {r['K']:.4g} | "
              f"`{r['fitted_formula']}` |")
    print("\n(the simulator: c = 0.3, k = 2 in place of rho', K'; the Gompertz column does not "
          "apply)" if args.oscillator else
          f"\n(the simulator: rho = {SIM_RHO:.4g} 1/day, K = {SIM_K:.4g} cm^3)")
    step_s = _time_distill_step(run_dir, result, rows[0]["parent"]) if rows else []
    if step_s:
        print(f"one distill step (probe executor + job + sparse fit) on node {rows[0]['parent']}: "
              + ", ".join(f"{t:.2f}" for t in step_s) + " s")
    print(json.dumps({"patients": args.patients, "distill_step_s": step_s, "budget": args.budget, "seed": args.seed,
                      "wall_s": round(wall, 1), "run_dir": run_dir, "distilled": rows}))


if __name__ == "__main__":
    main()
