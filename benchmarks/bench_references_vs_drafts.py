"""Train the prior / hybrid / neural references and every offline-grammar draft on one task.

Usage: python benchmarks/bench_references_vs_drafts.py TASK [key=value task options] [--epochs N]
Prints one line per model: status, val/test RMSE (original units), normalised val RMSE, epochs,
wall time. In-process (no sandbox), one thread, seed 0.
"""
from __future__ import annotations

import argparse
import ast
import time

import torch

import nimm_jupyter.tasks as tasks
from nimm_jupyter.execution.base import TrainConfig
from nimm_jupyter.modeling.harness import evaluate
from nimm_jupyter.modeling.references import reference_code
from nimm_jupyter.proposers.context import context_for
from nimm_jupyter.proposers.offline import OfflineProposer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("task")
    ap.add_argument("options", nargs="*", help="task options as key=value")
    ap.add_argument("--epochs", type=int, default=300)
    args = ap.parse_args()
    torch.set_num_threads(1)
    opts = {k: ast.literal_eval(v) for k, v in (o.split("=", 1) for o in args.options)}
    task = tasks.get(args.task, **opts)
    cfg = TrainConfig(max_epochs=args.epochs)
    models = [(f"reference:{w}", reference_code(task, w)) for w in ("prior", "neural", "hybrid")
              if w != "hybrid" or task.hybrid_code]
    proposer, ctx = OfflineProposer(seed=0), context_for(task)
    models += [(f"draft:{s.key}", proposer.draft(ctx, s).code) for s in proposer.strategies(ctx, 20, [])]
    print(f"| model | status | val RMSE | test RMSE | val RMSE (norm.) | epochs | wall s |")
    print("|---|---|---|---|---|---|---|")
    for label, code in models:
        t0 = time.perf_counter()
        r = evaluate(task, code, cfg)
        print(f"| {label} | {r.status.value} | {r.val.rmse:.4g} | {r.test.rmse:.4g} | "
              f"{r.val.rmse_norm:.3g} | {r.epochs} | {time.perf_counter() - t0:.1f} |", flush=True)


if __name__ == "__main__":
    main()
