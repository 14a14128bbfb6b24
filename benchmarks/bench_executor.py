"""Benchmark of the isolated local executor (not a test).

Measures, on a small synthetic trajectory task (8 trajectories x 10 steps):

* cold start: creating an executor and getting the first result (fork server imports torch);
* per-candidate overhead beyond training: wall time of one isolated evaluation with
  ``max_epochs=1`` on a warm executor minus the same evaluation run in-process
  (``harness.evaluate``), median over ``--repeats`` runs (target: <= 0.5 s), side by side
  for the executor with the kernel jail (the default) and without it (``os_jail=False``,
  what the executor did before the jail); the jail's own cost is their difference;
* the driver's share of that overhead since it owns every score: sending a job's
  predictions as a ``done`` frame, parsing it and scoring them (:func:`driver_scores`), on the
  small task and on ``lung_cancer_chemo`` with 50 and 1000 patients (median over ``--repeats``);
* throughput: evaluations per minute with 1 and 2 workers at ``--epochs`` epochs each.

Prints a markdown table. Usage: ``python benchmarks/bench_executor.py [--repeats 10]``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from nimm_jupyter.execution import EvalRequest, LocalExecutor, SandboxPolicy, TrainConfig  # noqa: E402
from nimm_jupyter.execution.job import driver_scores  # noqa: E402
from nimm_jupyter.execution.protocol import FrameReader, encode_array  # noqa: E402
from nimm_jupyter.modeling.harness import evaluate, fit_and_predict  # noqa: E402
from nimm_jupyter.tasks.base import Split, Task, Variable  # noqa: E402

PRIOR = '''import torch
from torch import nn
from nimm_jupyter.blocks import Positive, euler_rollout, mlp


class Model(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.k = Positive(0.3)
        self.net = mlp(1, 1, hidden=16)

    def forward(self, y_context, u, t):
        C = y_context.shape[1]
        return euler_rollout(lambda y, u_k, k: -self.k() * y + self.net(y), y_context[:, -1], None,
                             n_steps=t.shape[0] - C, dt=float(t[1] - t[0]))
'''


def small_task() -> Task:
    rng = np.random.default_rng(0)
    t = np.arange(10, dtype=np.float64) * 0.1

    def split(m: int) -> Split:
        y = rng.uniform(1, 2, (m, 1))[:, None, :] * np.exp(-0.7 * t)[None, :, None]
        return Split(inputs=np.zeros((m, 10, 0)), targets=y)

    return Task(name="bench_decay", kind="trajectory", description="y' = -k y", source="synthetic",
                provenance="benchmark", inputs=[], targets=[Variable("y")], train=split(8),
                val=split(4), test=split(4), prior_code=PRIOR, prior_omits="", time=t, context=2)


def run_all(ex: LocalExecutor, task: Task, n: int, config: TrainConfig, tag: str) -> float:
    """Submit ``n`` evaluations at once; seconds until all are done."""
    t0 = time.perf_counter()
    for i in range(n):
        ex.submit(EvalRequest(f"{tag}{i}", PRIOR, task, config, timeout=120))
    done = 0
    while done < n:
        for ev in ex.poll(0.5):
            if ev.kind == "done":
                assert ev.result.ok, ev.result.message
                done += 1
    return time.perf_counter() - t0


def scoring_cost(task: Task, source: str, repeats: int) -> tuple[float, int]:
    """Median seconds the driver spends on one job's predictions (encode the frame as the
    job does, parse it, score every split), and the frame's size in bytes."""
    result, preds = fit_and_predict(task, source, TrainConfig(max_epochs=1, threads=1))
    assert result.ok, result.message
    times, size = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        frame = json.dumps({"kind": "done", "result": result.to_dict(),
                            "predictions": {s: encode_array(p) for s, p in preds.items()}})
        data = b'{"kind": "started"}\n' + frame.encode() + b"\n"
        reader = FrameReader(task.target_names)
        reader.feed(data)
        driver_scores(task, reader.result, reader.predictions)
        times.append(time.perf_counter() - t0)
        size = len(data)
    return statistics.median(times), size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=50, help="epochs per evaluation for throughput")
    ap.add_argument("--jobs", type=int, default=16, help="evaluations per throughput run")
    args = ap.parse_args()
    torch.set_num_threads(1)
    task = small_task()
    one = TrainConfig(max_epochs=1, threads=1)
    rows: list[tuple[str, str]] = []

    evaluate(task, PRIOR, one)  # warm in-process caches too
    inproc = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        assert evaluate(task, PRIOR, one).ok
        inproc.append(time.perf_counter() - t0)

    rows.append(("one evaluation, max_epochs=1, in-process (median)",
                 f"{statistics.median(inproc) * 1e3:.0f} ms"))
    medians = {}
    for label, policy in (("kernel jail", SandboxPolicy()), ("no jail", SandboxPolicy(os_jail=False))):
        t0 = time.perf_counter()
        with LocalExecutor(workers=1, device="cpu", policy=policy) as ex:
            run_all(ex, task, 1, one, "cold")
            cold = time.perf_counter() - t0
            iso = [run_all(ex, task, 1, one, f"w{i}_") for i in range(args.repeats)]
            problem = ex.jail_problem if policy.os_jail else None
        medians[label] = statistics.median(iso)
        overhead = medians[label] - statistics.median(inproc)
        note = f" (jail unavailable: {problem})" if problem else ""
        rows += [
            (f"{label}: cold start (new executor -> first result){note}", f"{cold:.2f} s"),
            (f"{label}: one evaluation, max_epochs=1, isolated, warm (median)", f"{medians[label] * 1e3:.0f} ms"),
            (f"{label}: per-candidate isolation overhead (target <= 500 ms)", f"{overhead * 1e3:.0f} ms"),
        ]
    rows.append(("the jail's own cost per candidate (median difference)",
                 f"{(medians['kernel jail'] - medians['no jail']) * 1e3:.0f} ms"))
    from nimm_jupyter import tasks

    cases = [("small task", task, PRIOR)]
    for n in (50, 1000):  # 1000: the task's default size
        lung = tasks.get("lung_cancer_chemo", n_patients=n)
        cases.append((f"lung_cancer_chemo, {n} patients per split", lung, lung.prior_code))
    for label, t, source in cases:
        cost, size = scoring_cost(t, source, args.repeats)
        rows.append((f"driver scores a job's predictions, {label} (median; frame {size >> 10} KiB)",
                     f"{cost * 1e3:.1f} ms"))

    cfg = TrainConfig(max_epochs=args.epochs, patience=args.epochs, threads=1)
    for workers in (1, 2):
        with LocalExecutor(workers=workers, device="cpu") as ex:
            run_all(ex, task, 1, one, "warm")
            took = run_all(ex, task, args.jobs, cfg, "t")
        rows.append((f"throughput, {workers} worker(s), {args.epochs} epochs each",
                     f"{args.jobs / took * 60:.0f} evals/min"))

    print(f"\nmachine: {os.cpu_count()} CPU cores, torch {torch.__version__}, 1 thread per worker\n")
    print("| measurement | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
