"""Harness speed benchmark (not a test): wall time of the reference hybrid and of restarts.

    .venv/bin/python benchmarks/bench_harness.py                      # lung_cancer_chemo
    .venv/bin/python benchmarks/bench_harness.py --task toy           # no task module needed
    .venv/bin/python benchmarks/bench_harness.py --json --no-assert

Targets (asserted unless ``--no-assert``):

* the hand-written hybrid reference with the default :class:`TrainConfig` trains in
  <= ``--target-seconds`` (15 s) on one CPU thread;
* on the test-sized toy task (32 trajectories, where per-operation overhead dominates),
  ``restarts=4`` trained batched with vmap costs < 2x a single run.

``--restarts`` (default 8) restarts on ``--task`` are measured against one run and reported,
not asserted.

Restart timings use a fixed number of epochs (``--restart-epochs``, early stopping off) so
that the cost of the same training budget is compared, not how long each run happened to
train. Batched restarts train all copies in one vmapped computation; when that computation is
compute-bound (1000 patients on one thread) K copies cost close to K runs, and where per-op
overhead dominates (small data) they cost far less. On a machine shared with other jobs,
``--clock cpu`` applies the targets to process CPU time.
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

from nimm_jupyter.execution.base import TrainConfig  # noqa: E402
from nimm_jupyter.modeling import evaluate, reference_code  # noqa: E402


def _task(name: str, n_patients: int | None):
    if name in ("toy", "toy-small"):
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from toy_tasks import make_toy_trajectory

        if name == "toy-small":
            return make_toy_trajectory()
        return make_toy_trajectory(n_train=256, n_val=256, n_test=256, T=40)
    from nimm_jupyter import tasks

    opts = {"n_patients": n_patients} if n_patients else {}
    return tasks.get(name, **opts)


def _timed(task, code: str, cfg: TrainConfig) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    res = evaluate(task, code, cfg)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "status": res.status.value, "message": (res.message or "; ".join(res.notes))[:300],
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "epochs": res.epochs, "ms_per_epoch": round(1e3 * wall / max(res.epochs, 1), 2),
        "cpu_ms_per_epoch": round(1e3 * cpu / max(res.epochs, 1), 2),
        "val_rmse": res.val.rmse, "test_rmse": res.test.rmse, "val_rmse_norm": res.val.rmse_norm,
        "restarts": res.restarts, "parameters": res.parameters,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="lung_cancer_chemo")
    ap.add_argument("--n-patients", type=int, default=None, help="task size option (default: task default)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--restarts", type=int, nargs="+", default=[8])
    ap.add_argument("--restart-epochs", type=int, default=100)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="which time the targets apply to (cpu: on a machine shared with other jobs)")
    ap.add_argument("--target-seconds", type=float, default=15.0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-assert", action="store_true")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    task = _task(args.task, args.n_patients)
    code = reference_code(task, "hybrid")
    report: dict = {"task": task.name, "sizes": task.sizes(), "threads": args.threads,
                    "device": args.device, "torch": torch.__version__}

    base = dict(threads=args.threads, device=args.device)
    report["hybrid_default"] = _timed(task, code, TrainConfig(**base))

    # the same Adam budget for every K (early stopping and the polish off): cost per copy
    fixed = dict(base, max_epochs=args.restart_epochs, patience=10 * args.restart_epochs,
                 polish_iters=0)
    key = "cpu_s" if args.clock == "cpu" else "wall_s"

    def restarts(t, ks: list[int]) -> dict:
        code_t = reference_code(t, "hybrid")
        single = _timed(t, code_t, TrainConfig(**fixed))
        out = {"1": single}
        for k in ks:
            run = _timed(t, code_t, TrainConfig(restarts=k, **fixed))
            run["ratio_vs_1"] = round(run[key] / single[key], 2)
            out[str(k)] = run
        return out

    report["restarts"] = restarts(task, args.restarts)
    report["restarts_toy_small"] = restarts(_task("toy-small", None), [4])

    failures = []
    hd = report["hybrid_default"]
    if hd["status"] != "ok":
        failures.append(f"hybrid reference failed: {hd['status']} {hd['message']}")
    elif hd[f"{args.clock}_s"] > args.target_seconds:
        failures.append(f"hybrid reference took {hd[args.clock + '_s']:.1f}s ({args.clock}) "
                        f"> {args.target_seconds:g}s")
    four = report["restarts_toy_small"]["4"]
    if four["ratio_vs_1"] >= 2.0:
        failures.append(f"restarts=4 on the toy task costs {four['ratio_vs_1']}x a single run")
    for group in ("restarts", "restarts_toy_small"):
        for k, run in report[group].items():
            if k != "1" and "vmap" not in run["message"]:
                failures.append(f"restarts={k} did not use vmap: {run['message']}")
    report["failures"] = failures

    if args.json:
        print(json.dumps(report, indent=2, default=float))
    else:
        print(f"task {report['task']} {report['sizes']} threads={args.threads} device={args.device}")
        print(f"hybrid (defaults): {hd['status']} wall {hd['wall_s']:.2f}s cpu {hd['cpu_s']:.2f}s, "
              f"{hd['epochs']} epochs, {hd['cpu_ms_per_epoch']} cpu-ms/epoch, "
              f"val RMSE {hd['val_rmse']:.4g}, test RMSE {hd['test_rmse']:.4g}")
        for group, label in (("restarts", report["task"]), ("restarts_toy_small", "toy (32 traj.)")):
            for k, run in report[group].items():
                ratio = run.get("ratio_vs_1", 1.0)
                print(f"{label} restarts={k}: wall {run['wall_s']:.2f}s cpu {run['cpu_s']:.2f}s for "
                      f"{run['epochs']} epochs (x{ratio} {args.clock} vs restarts=1), "
                      f"val RMSE {run['val_rmse']:.4g}")
        for f in failures:
            print("FAIL:", f)
    return 1 if failures and not args.no_assert else 0


if __name__ == "__main__":
    sys.exit(main())
