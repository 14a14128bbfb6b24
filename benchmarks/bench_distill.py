"""Benchmark of the ``distill`` operator (issue 20, target 1; not a test).

On ``lung_cancer_chemo`` (``--patients`` per split, simulator seed ``--seed``), an offline
search restricted to two tumour-grammar branches, the network-free mechanistic structure
search and the size-dependent growth-rate correction (a network of the normalised
log-volume and drug level added to the per-volume growth rate), runs ``--budget`` nodes with
the ``nimmgen`` policy, which distils its best hybrid once at most ``distill_at`` nodes
remain. Then it reports, for every distilled node: its network parameters (target 0), its
validation RMSE against its neural parent's (target: within 10 %), the law, and whether the
law has the Gompertz form ``rho * ln(K / V)`` up to rearrangement: the growth-rate network
(input ``x0 = ln(V) / 5``) became ``a + b * x0`` with ``b < 0`` plus, optionally, terms in the
drug input ``x1`` only (the per-volume rate is then ``rho + 0.1 * (a + b ln V / 5)``, i.e.
``rho' ln(K'/V)`` with ``rho' = -b / 50``).

Usage: ``python benchmarks/bench_distill.py [--patients 16] [--budget 8] [--seed 0]``;
prints a markdown table and one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from nimm_jupyter.proposers.offline import OfflineProposer  # noqa: E402
from nimm_jupyter.search.api import open_run, search  # noqa: E402

BRANCHES = ("tumour:none", "tumour:rate_net")


class GrowthRateSearch(OfflineProposer):
    """The offline proposer, offering only the two branches of :data:`BRANCHES`."""

    def strategies(self, ctx, k, exclude):  # noqa: D102 - see the class docstring
        return [s for s in super().strategies(ctx, 99, exclude) if s.key in BRANCHES][:k]


def gompertz_form(formula: str) -> bool:
    """``net(x) = a + b*x0 (+ terms in x1 alone)`` with ``b < 0``: the Gompertz law."""
    rhs = formula.split("=", 1)[1].replace(" ", "")
    terms = re.findall(r"[+-]?[^+-]+(?:e[+-]\d+)?[^+-]*", rhs.replace("e-", "e~").replace("e+", "e^"))
    terms = [t.replace("e~", "e-").replace("e^", "e+") for t in terms]
    in_x0 = [t for t in terms if "x0" in t]
    if len(in_x0) != 1 or not re.fullmatch(r"[+-]?\d+(\.\d+)?(e[+-]?\d+)?\*x0", in_x0[0]):
        return False
    return float(in_x0[0].split("*")[0]) < 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=16)
    ap.add_argument("--budget", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run-dir", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    run_dir = args.run_dir or tempfile.mkdtemp(prefix="bench-distill-")
    t0 = time.perf_counter()
    search("lung_cancer_chemo", task_options={"n_patients": args.patients, "seed": args.seed},
           budget=args.budget, branches=2, proposer=GrowthRateSearch(seed=args.seed),
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
        rows.append({
            "node": n.id, "parent": parent.id, "status": n.status,
            "parent_network_parameters": parent.result.n_network_parameters,
            "network_parameters": n.result.n_network_parameters if n.result else None,
            "parent_val_rmse": parent.rmse("val"), "val_rmse": n.rmse("val"),
            "val_ratio": n.rmse("val") / parent.rmse("val"),
            "parent_test_rmse": parent.rmse("test"), "test_rmse": n.rmse("test"),
            "gompertz_form": gompertz_form(text.splitlines()[0]) if text else False,
            "formula": text, "fitted": n.result.parameters if n.result else {},
        })
    best = result.best
    print(f"lung_cancer_chemo, {args.patients} patients/split, budget {args.budget}, "
          f"seed {args.seed}: {wall:.0f} s; best node {best.id if best else None} "
          f"({best.operator if best else ''}, val RMSE {best.rmse('val') if best else float('nan'):.4g})\n")
    print("| distilled node | of | network params (parent -> child) | val RMSE parent -> child "
          "(ratio) | test RMSE parent -> child | Gompertz form | law |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['node']} ({r['status']}) | {r['parent']} | {r['parent_network_parameters']} -> "
              f"{r['network_parameters']} | {r['parent_val_rmse']:.4g} -> {r['val_rmse']:.4g} "
              f"({r['val_ratio']:.3f}) | {r['parent_test_rmse']:.4g} -> {r['test_rmse']:.4g} | "
              f"{'yes' if r['gompertz_form'] else 'no'} | `{r['formula']}` |")
    print(json.dumps({"patients": args.patients, "budget": args.budget, "seed": args.seed,
                      "wall_s": round(wall, 1), "run_dir": run_dir, "distilled": rows}))


if __name__ == "__main__":
    main()
