"""CPU vs CUDA benchmark of the fitting engine (not a test); runs and skips CUDA cleanly on CPU.

    .venv/bin/python benchmarks/bench_gpu.py                      # cpu, and cuda when present
    .venv/bin/python benchmarks/bench_gpu.py --n-patients 200 --json
    .venv/bin/python benchmarks/bench_gpu.py --devices cpu --batch 0   # in-process cases only

Cases, each on every device (``cpu``; ``cuda`` when ``torch.cuda.is_available()``):

* ``hybrid``: the hybrid reference of ``lung_cancer_chemo`` (default 1000 patients) with the
  default :class:`TrainConfig`, restarts 1 and 8 (the MLP has random initialisation, so 8
  copies are really trained, batched with vmap);
* ``true``: the true-structure candidate ``benchmarks/true_structures/lung_cancer_chemo.py``;
* ``batch``: ``--batch`` (8) hybrid evaluations submitted at once to a
  :class:`~nimm_jupyter.execution.LocalExecutor` with as many workers (sandboxed processes,
  all on that device), which is how a search runs them.

Reported per case: wall seconds per candidate, evaluations per minute, test RMSE.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from nimm_jupyter import tasks  # noqa: E402
from nimm_jupyter.execution import EvalRequest, LocalExecutor  # noqa: E402
from nimm_jupyter.modeling import evaluate, reference_code  # noqa: E402
from nimm_jupyter.modeling.config import TrainConfig  # noqa: E402

TRUE_CODE = Path(__file__).resolve().parent / "true_structures" / "lung_cancer_chemo.py"


def _row(case: str, device: str, n_evals: int, wall: float, rmse: list[float],
         status: list[str]) -> dict:
    return {"case": case, "device": device, "evaluations": n_evals,
            "wall_s": round(wall, 2), "s_per_candidate": round(wall / max(n_evals, 1), 2),
            "evals_per_min": round(60.0 * n_evals / wall, 2) if wall > 0 else None,
            "test_rmse": rmse, "status": status}


def in_process(task, code: str, case: str, device: str, restarts: int) -> dict:
    cfg = TrainConfig(device=device, restarts=restarts)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    res = evaluate(task, code, cfg)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return _row(f"{case} restarts={restarts}", device, 1, time.perf_counter() - t0,
                [res.test.rmse], [res.status.value if res.ok else f"{res.status.value}: {res.message[:120]}"])


def batch(task, code: str, device: str, n: int, timeout: float) -> dict:
    with LocalExecutor(workers=n, device=device) as ex:
        t0 = time.perf_counter()
        for i in range(n):
            ex.submit(EvalRequest(f"b{i}", code, task, TrainConfig(seed=i), timeout=timeout))
        results = {}
        while len(results) < n:
            for ev in ex.poll(timeout=0.5):
                if ev.kind == "done":
                    results[ev.job_id] = ev.result
        wall = time.perf_counter() - t0
    rs = [results[f"b{i}"] for i in range(n)]
    return _row(f"batch of {n} hybrid", device, n, wall, [r.test.rmse for r in rs],
                [r.status.value for r in rs])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-patients", type=int, default=1000)
    ap.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    ap.add_argument("--restarts", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--batch", type=int, default=8, help="parallel evaluations (0: skip)")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    task = tasks.get("lung_cancer_chemo", n_patients=args.n_patients)
    hybrid = reference_code(task, "hybrid")
    rows, skipped = [], []
    for device in args.devices:
        if device.startswith("cuda") and not torch.cuda.is_available():
            skipped.append(f"{device}: CUDA is not available on this machine")
            continue
        for k in args.restarts:
            rows.append(in_process(task, hybrid, "hybrid", device, k))
        rows.append(in_process(task, TRUE_CODE.read_text(), "true structure", device, 1))
        if args.batch:
            rows.append(batch(task, hybrid, device, args.batch, args.timeout))
    report = {"torch": torch.__version__, "n_patients": args.n_patients,
              "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
              "rows": rows, "skipped": skipped}
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"torch {report['torch']}  gpu {report['gpu']}  lung_cancer_chemo n={args.n_patients}")
        for r in rows:
            rmse = ", ".join(f"{v:.3g}" for v in r["test_rmse"])
            print(f"{r['case']:26s} {r['device']:6s} {r['s_per_candidate']:8.2f} s/candidate "
                  f"{r['evals_per_min'] or 0:7.2f} evals/min  test RMSE {rmse}")
        for s in skipped:
            print("skipped:", s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
