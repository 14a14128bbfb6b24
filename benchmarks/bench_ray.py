"""Throughput of RayExecutor vs LocalExecutor (evaluations per minute) on a small task.

Each backend first runs one warm-up round (one evaluation per worker: Ray workers and fork
servers start, torch is imported), reported as ``startup_s`` together with ``ray.init``; then
``--evals`` evaluations of the task's hybrid reference model (seeds 0..N-1, a fixed number of
epochs) are timed from the first submit to the last ``done`` event.

    .venv/bin/python benchmarks/bench_ray.py                      # local Ray instance
    .venv/bin/python benchmarks/bench_ray.py --address auto        # an existing cluster
    .venv/bin/python benchmarks/bench_ray.py --evals 40 --json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

from nimm_jupyter import tasks  # noqa: E402
from nimm_jupyter.execution.base import EvalRequest, Executor, TrainConfig  # noqa: E402
from nimm_jupyter.execution.local import LocalExecutor  # noqa: E402


def run_batch(ex: Executor, task: tasks.Task, source: str, seeds: range, config: TrainConfig,
              prefix: str) -> tuple[float, list[Any]]:
    """Submit one evaluation per seed, wait for all; (seconds, results)."""
    t0 = time.perf_counter()
    for seed in seeds:
        cfg = TrainConfig(**{**config.to_dict(), "seed": seed})
        ex.submit(EvalRequest(f"{prefix}{seed}", source, task, cfg, timeout=600))
    results = []
    while len(results) < len(seeds):
        results += [ev.result for ev in ex.poll(0.5) if ev.kind == "done"]
    return time.perf_counter() - t0, results


def measure(name: str, make: Any, task: tasks.Task, args: argparse.Namespace) -> dict[str, Any]:
    config = TrainConfig(max_epochs=args.epochs, patience=args.epochs + 1)
    source = task.hybrid_code or task.prior_code
    t0 = time.perf_counter()
    ex = make()
    try:
        _warm, warm_results = run_batch(ex, task, source, range(args.workers), config, "warm")
        startup = time.perf_counter() - t0
        seconds, results = run_batch(ex, task, source, range(args.evals), config, "eval")
    finally:
        ex.shutdown()
    failed = [r.status.value for r in results + warm_results if not r.ok]
    walls = [r.wall_time for r in results if r.ok]
    return {
        "backend": name, "workers": args.workers, "evals": args.evals, "epochs": args.epochs,
        "startup_s": round(startup, 2), "seconds": round(seconds, 2),
        "evals_per_min": round(60.0 * args.evals / seconds, 1),
        "median_eval_wall_s": round(statistics.median(walls), 3) if walls else None,
        "failed": failed,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="lung_cancer_chemo")
    p.add_argument("--patients", type=int, default=64, help="n_patients per split")
    p.add_argument("--horizon", type=int, default=30)
    p.add_argument("--evals", type=int, default=20)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--address", default=None, help="Ray address (default: a local instance)")
    p.add_argument("--backends", default="local,ray")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    args = p.parse_args(argv)
    task = tasks.get(args.task, n_patients=args.patients, horizon=args.horizon)
    rows = []
    for backend in args.backends.split(","):
        if backend == "local":
            rows.append(measure("local", lambda: LocalExecutor(workers=args.workers, device="cpu"),
                                task, args))
        elif backend == "ray":
            import ray

            from nimm_jupyter.execution.ray_executor import RayExecutor

            t0 = time.perf_counter()
            if args.address:
                ray.init(address=args.address, log_to_driver=False)
            else:
                ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
            init_s = time.perf_counter() - t0
            row = measure("ray", lambda: RayExecutor(workers=args.workers, num_cpus=1), task, args)
            row["ray_init_s"] = round(init_s, 2)
            rows.append(row)
            ray.shutdown()
        else:
            p.error(f"unknown backend {backend!r}; use local and/or ray")
    info = {"task": args.task, "patients": args.patients, "horizon": args.horizon,
            "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2), "rows": rows}
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"task {args.task} ({args.patients} patients/split, {args.horizon} days), "
          f"{args.epochs} epochs/eval, {os.cpu_count()} CPUs, load {info['load_avg_1m']}")
    print(f"{'backend':8} {'workers':>7} {'evals':>5} {'startup_s':>9} {'seconds':>8} "
          f"{'evals/min':>9} {'median_eval_s':>13} failed")
    for r in rows:
        startup = f"{r['startup_s']}" + (f"+{r['ray_init_s']}" if "ray_init_s" in r else "")
        print(f"{r['backend']:8} {r['workers']:>7} {r['evals']:>5} {startup:>9} {r['seconds']:>8} "
              f"{r['evals_per_min']:>9} {str(r['median_eval_wall_s']):>13} {len(r['failed'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
