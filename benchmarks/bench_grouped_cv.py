"""Would grouped k-fold cross-validation pick better alloy models than the single validation split?

    NIMM_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_grouped_cv.py TASK RUN_DIR... \
        [--folds 5] [--seeds 0,1,2]

Pools the task's train and validation rows, splits their groups (compositions) into ``--folds``
folds, and for every reference (one per seed) and every ok node of the given search runs (the
run's own seed) trains one model per fold under the normal harness (early stopping on the
held-out fold). Reported per model: the single-split validation and test RMSE, the
out-of-fold RMSE over train+val, and the test RMSE of the fold models' mean prediction. If the
out-of-fold ranking agreed with the test ranking where the single validation split does not,
a cross-validated selection rule would be the fix; the printed Kendall taus say whether it does.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_split_sensitivity import kendall_tau  # noqa: E402
from nimm_jupyter import tasks  # noqa: E402
from nimm_jupyter.execution.base import TrainConfig  # noqa: E402
from nimm_jupyter.modeling.harness import evaluate, load_trained, predict  # noqa: E402
from nimm_jupyter.modeling.references import REFERENCES, reference_code  # noqa: E402
from nimm_jupyter.search.api import open_run  # noqa: E402
from nimm_jupyter.tasks.base import Split  # noqa: E402


def fold_tasks(task, folds: int, seed: int = 0):
    """``folds`` copies of ``task`` whose train/val are grouped folds of train+val."""
    pool = Split(np.concatenate([task.train.inputs, task.val.inputs]),
                 np.concatenate([task.train.targets, task.val.targets]),
                 np.concatenate([task.train.groups, task.val.groups]))
    groups = sorted(set(pool.groups))
    order = np.random.default_rng(seed).permutation(len(groups))
    fold_of = {groups[j]: i % folds for i, j in enumerate(order)}
    fid = np.array([fold_of[g] for g in pool.groups])

    def part(mask):
        return Split(pool.inputs[mask], pool.targets[mask], pool.groups[mask])
    return pool, fid, [dataclasses.replace(task, train=part(fid != f), val=part(fid == f))
                       for f in range(folds)]


def cv_scores(task, code: str, config: TrainConfig, folds: int) -> tuple[float, float] | None:
    """(out-of-fold RMSE over train+val, test RMSE of the fold-mean prediction)."""
    pool, fid, parts = fold_tasks(task, folds)
    oof = np.zeros(pool.targets.shape)
    test = []
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "w.pt")
        for f, part in enumerate(parts):
            r = evaluate(part, code, dataclasses.replace(config, save_weights=path))
            if not r.ok:
                return None
            model = load_trained(part, code, path)
            oof[fid == f] = predict(model, part, "val")
            test.append(predict(model, part, "test"))
    rmse = lambda a, b: float(np.sqrt(np.nanmean((a - b) ** 2)))  # noqa: E731
    return rmse(oof, pool.targets), rmse(np.mean(test, axis=0), task.test.targets)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("task")
    ap.add_argument("runs", nargs="*", type=Path)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seeds", default="0,1,2", help="reference seeds")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    task = tasks.get(args.task)
    rows = []  # (label, val, test, oof, cv_test)
    for seed in (int(s) for s in args.seeds.split(",")):
        for ref in REFERENCES:
            code = reference_code(task, ref)
            config = TrainConfig(seed=seed)
            r = evaluate(task, code, config)
            cv = cv_scores(task, code, config, args.folds)
            if r.ok and cv:
                rows.append((f"{ref} seed {seed}", r.val.rmse, r.test.rmse, *cv))
    for run_dir in args.runs:
        run = open_run(run_dir)
        config = TrainConfig(**{**run.settings.get("train", {}), "save_weights": None})
        for n in run.nodes:
            if n.result is None or not n.result.ok:
                continue
            cv = cv_scores(task, n.code, config, args.folds)
            if cv:
                rows.append((f"{run.settings.get('policy', '')} {run_dir.name} node {n.id}", n.result.val.rmse,
                             n.result.test.rmse, *cv))
    print(f"{args.task}: {args.folds}-fold grouped CV over train+val\n")
    print("| model | val | test | out-of-fold | test (fold mean) |\n| --- | --- | --- | --- | --- |")
    for label, *v in rows:
        print(f"| {label} | " + " | ".join(f"{x:.0f}" for x in v) + " |")
    col = list(zip(*[r[1:] for r in rows]))
    print(f"\nKendall tau, validation vs test: {kendall_tau(col[0], col[1]):+.2f}; "
          f"out-of-fold vs fold-mean test: {kendall_tau(col[2], col[3]):+.2f}")


if __name__ == "__main__":
    main()
