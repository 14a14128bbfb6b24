"""Fitting-engine benchmark (not a test): true structures and the hybrid reference, old vs new.

    .venv/bin/python benchmarks/bench_fit.py                          # 200 patients, this tree
    .venv/bin/python benchmarks/bench_fit.py --n-patients 200 1000 --old /work/main
    .venv/bin/python benchmarks/bench_fit.py --cases hybrid:lung_cancer_chemo --json

Each case (a candidate on a task at a patient count) is evaluated with the default
:class:`TrainConfig` in a fresh interpreter per harness (``--old`` names a checkout whose
harness is compared, e.g. main), one torch thread, and reports test RMSE, the fitted
mechanistic parameters against the simulator's constants, epochs, why training stopped and
the process CPU time. The true-structure candidates live in ``benchmarks/true_structures/``
(generic starting values; never shown to a proposer). CPU time, not wall time, is compared:
this machine is shared.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TRUE = {"lung_cancer": ["rho", "K"], "lung_cancer_chemo": ["rho", "K", "beta_c", "k_el"],
        "lung_cancer_chemo_radio": ["rho", "K", "beta_c", "k_el"]}
DEFAULT_CASES = [f"true:{t}" for t in TRUE] + ["hybrid:lung_cancer_chemo"]

# Run in the child interpreter: PYTHONPATH selects which harness is measured.
_CHILD = r"""
import json, sys, time
import torch
torch.set_num_threads(1)
from nimm_jupyter import tasks
from nimm_jupyter.execution.base import TrainConfig
from nimm_jupyter.modeling import evaluate, reference_code
kind, task_name, n, code_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
overrides = json.loads(sys.argv[5])
task = tasks.get(task_name, n_patients=n)
code = open(code_path).read() if kind == "true" else reference_code(task, kind)
c0, t0 = time.process_time(), time.perf_counter()
res = evaluate(task, code, TrainConfig(**overrides))
cpu, wall = time.process_time() - c0, time.perf_counter() - t0
d = res.to_dict()
print(json.dumps({"status": d["status"], "test_rmse": d["test"]["rmse"], "val_rmse": d["val"]["rmse"],
                  "parameters": d["parameters"], "epochs": d["epochs"],
                  "stop_reason": d.get("stop_reason"), "untrained": d.get("untrained"),
                  "cpu_s": cpu, "wall_s": wall, "message": d["message"][:200]}))
"""


def _truth() -> dict[str, float]:
    from nimm_jupyter.tasks import pkpd_sim

    return {"rho": pkpd_sim.RHO, "K": pkpd_sim.K, "beta_c": pkpd_sim.BETA_C,
            "k_el": pkpd_sim.CHEMO_DECAY}


def run_case(repo: Path, case: str, n: int, timeout: float, overrides: dict | None = None) -> dict:
    kind, task = case.split(":")
    code = HERE / "true_structures" / f"{task}.py"
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    env.setdefault("NIMM_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    proc = subprocess.run([sys.executable, "-c", _CHILD, kind, task, str(n), str(code),
                           json.dumps(overrides or {})],
                          env=env, cwd=repo, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return {"status": "bench_error", "message": proc.stderr[-300:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _param_error(case: str, params: dict[str, float]) -> float | None:
    kind, task = case.split(":")
    if kind != "true":
        return None
    truth = _truth()
    return max(abs(params.get(p, float("nan")) / truth[p] - 1) for p in TRUE[task])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=DEFAULT_CASES,
                    help="KIND:TASK with KIND true (benchmarks/true_structures) or a reference name")
    ap.add_argument("--n-patients", nargs="+", type=int, default=[200])
    ap.add_argument("--old", type=Path, default=None, help="another checkout to compare with")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="TrainConfig overrides for the new harness only (JSON values)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    overrides = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    harnesses = [("new", ROOT)] + ([("old", args.old.resolve())] if args.old else [])
    rows = []
    for n in args.n_patients:
        for case in args.cases:
            for label, repo in harnesses:
                r = run_case(repo, case, n, args.timeout, overrides if label == "new" else None)
                r.update(case=case, n_patients=n, harness=label,
                         max_param_rel_error=_param_error(case, r.get("parameters", {})))
                rows.append(r)
                if not args.json:
                    err = r["max_param_rel_error"]
                    print(f"{case:32s} n={n:<5d} {label:3s} {r['status']:8s} "
                          f"test_rmse={r.get('test_rmse', float('nan')):<10.4g} "
                          f"params_err={'-' if err is None else f'{err:.2%}':>8s} "
                          f"epochs={r.get('epochs', 0):<4d} stop={r.get('stop_reason')!s:10s} "
                          f"cpu={r.get('cpu_s', float('nan')):.1f}s", flush=True)
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
