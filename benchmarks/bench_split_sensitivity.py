"""How much do the alloy benchmark verdicts depend on which compositions land in the test split?

    NIMM_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_split_sensitivity.py OUT \
        [--splits 5] [--tasks hea_fcc_rt,hea_bcc_temp] [--policies nimmgen] [--seeds 3] [--budget 8]

The alloy tasks split their ~100-200 compositions 70/15/15 by a seeded grouped split (task
option ``seed``, 0 in the main benchmark). This runs the normal benchmark grid (``nimm bench``,
offline proposer, the references) once per split seed into ``OUT/split<k>/`` (resumable, like
``nimm bench``) and writes ``OUT/split_sensitivity.md``:

* per split: mean validation and test RMSE of the prior, neural and hybrid references and of
  each policy's selected node, and whether the first policy beats prior and neural on test;
* the mean over splits (each split weighted equally);
* the headline verdict of issue 16 over every (split, seed) unit: each model's mean test RMSE
  with its standard error, the paired t-test of the first policy against the prior and the
  neural reference over the units, and whether the first policy's mean beats each by more
  than their combined standard error;
* how well validation predicts test: Kendall's tau between the validation and the test ranking
  of the models of each split, and the mean Spearman correlation between validation and test
  RMSE over the evaluated nodes inside each search run.
"""
from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nimm_jupyter.bench import BenchConfig, run_benchmark, run_dir_for  # noqa: E402
from nimm_jupyter.bench.stats import cell, paired_t_test  # noqa: E402
from nimm_jupyter.modeling.references import REFERENCES  # noqa: E402
from nimm_jupyter.search.api import open_run  # noqa: E402


def _ranks(values: list[float]) -> np.ndarray:
    return np.argsort(np.argsort(values)).astype(float)


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-a of two equally long score lists (no tie correction)."""
    n, s = len(a), 0.0
    for i in range(n):
        for j in range(i + 1, n):
            s += np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])
    return float(2 * s / (n * (n - 1))) if n > 1 else float("nan")


def spearman(a: list[float], b: list[float]) -> float:
    if len(a) < 3:
        return float("nan")
    return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def _model_scores(out: Path, task: str) -> dict[str, tuple[float, float]]:
    """model -> (mean val RMSE, mean test RMSE) over the seeds of one split."""
    vals: dict[str, list[tuple[float, float]]] = {}
    for r in csv.DictReader(open(out / "references.csv")):
        if r["task"] == task and r["status"] == "ok":
            vals.setdefault(r["reference"], []).append((float(r["val_rmse"]), float(r["test_rmse"])))
    for r in csv.DictReader(open(out / "results.csv")):
        if r["task"] == task and r["best_test_rmse"]:
            vals.setdefault(r["policy"], []).append((float(r["best_val_rmse"]),
                                                     float(r["best_test_rmse"])))
    return {m: (statistics.mean(v for v, _ in xs), statistics.mean(t for _, t in xs))
            for m, xs in vals.items()}


def _unit_tests(out: Path, task: str, split: int) -> dict[str, dict[tuple[int, int], float]]:
    """model -> {(split, seed): test RMSE}: the units the headline verdict pairs on (a run
    without a model is left out of its pairs)."""
    units: dict[str, dict[tuple[int, int], float]] = {}
    for r in csv.DictReader(open(out / "references.csv")):
        if r["task"] == task and r["status"] == "ok":
            units.setdefault(r["reference"], {})[(split, int(r["seed"]))] = float(r["test_rmse"])
    for r in csv.DictReader(open(out / "results.csv")):
        if r["task"] == task and r["best_test_rmse"]:
            units.setdefault(r["policy"], {})[(split, int(r["seed"]))] = float(r["best_test_rmse"])
    return units


def _verdict_lines(units: dict[str, dict[tuple[int, int], float]], models: list[str],
                   lead: str) -> list[str]:
    """Mean ± SE per model over the units, and the lead's paired tests and SE criterion."""
    cells = {m: cell(list(units.get(m, {}).values())) for m in models}
    lines = ["Over every (split, seed) unit: mean test RMSE ± standard error (n units): "
             + "; ".join(f"{m} {c.mean:.0f} ± {c.se:.0f} (n={c.n})" for m, c in cells.items())
             + ".", ""]
    for ref in ("prior", "neural"):
        t = paired_t_test(units.get(lead, {}), units.get(ref, {}))
        a, b = cells[lead], cells[ref]
        margin = b.mean - a.mean
        beyond = margin > math.hypot(a.se, b.se)
        lines.append(f"* {lead} vs {ref}: mean {abs(margin):.0f} {'below' if margin > 0 else 'above'}"
                     f" {ref}'s; margin beyond the combined standard error "
                     f"({math.hypot(a.se, b.se):.0f}): {'yes' if beyond else 'no'}; paired t over "
                     f"the units ({t.describe()}) holds at 0.05: "
                     f"{'yes' if t.a_beats_b else 'no'}.")
    return lines + [""]


def _node_spearman(config: BenchConfig, task: str) -> list[float]:
    """Spearman(val, test) over the ok nodes of every run of ``task`` in one split."""
    out = []
    for policy in config.policies:
        for seed in config.seed_list():
            r = open_run(run_dir_for(config.out, task, policy, seed))
            pairs = [(n.result.val.rmse, n.result.test.rmse) for n in r.nodes
                     if n.result is not None and n.result.ok]
            rho = spearman([v for v, _ in pairs], [t for _, t in pairs])
            if np.isfinite(rho):
                out.append(rho)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--splits", type=int, default=5, help="split seeds 0..N-1 (default 5)")
    ap.add_argument("--tasks", default="hea_fcc_rt,hea_bcc_temp")
    ap.add_argument("--policies", default="nimmgen")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    tasks, policies = args.tasks.split(","), args.policies.split(",")
    models = list(REFERENCES) + policies
    lead = policies[0]

    per_task: dict[str, list[dict]] = {t: [] for t in tasks}
    for k in range(args.splits):
        config = BenchConfig(tasks=tasks, out=args.out / f"split{k}", policies=policies,
                             seeds=args.seeds, budget=args.budget, workers=args.workers,
                             device="cpu", options={"seed": k})
        run_benchmark(config)
        for t in tasks:
            scores = _model_scores(config.out, t)
            per_task[t].append({"split": k, "scores": scores, "units": _unit_tests(config.out, t, k),
                                "node_rho": _node_spearman(config, t)})

    lines = ["# Alloy tasks: sensitivity of the verdicts to the grouped split", "",
             f"Command: `benchmarks/bench_split_sensitivity.py OUT --splits {args.splits} "
             f"--tasks {args.tasks} --policies {args.policies} --seeds {args.seeds} "
             f"--budget {args.budget}`. Cells: mean val / test RMSE over {args.seeds} seeds "
             "(references: one training per seed; policies: the node each run hands back, the "
             "simplest within one bootstrap standard error of the lowest validation score; "
             "journals from before the standard error existed hand back the lowest).", ""]
    for t, rows in per_task.items():
        lines += [f"## {t}", "",
                  "| split | " + " | ".join(models) + f" | {lead} beats prior and neural on test "
                  "| Kendall tau (val vs test ranking of the models) | mean Spearman (val vs test, "
                  "nodes within a run) |",
                  "| --- " * (len(models) + 4) + "|"]
        taus, rhos, wins = [], [], 0
        for row in rows:
            s = row["scores"]
            tau = kendall_tau([s[m][0] for m in models], [s[m][1] for m in models])
            rho = statistics.mean(row["node_rho"]) if row["node_rho"] else float("nan")
            win = s[lead][1] < min(s["prior"][1], s["neural"][1])
            wins += win
            taus.append(tau)
            rhos.append(rho)
            cells = " | ".join(f"{s[m][0]:.0f} / {s[m][1]:.0f}" for m in models)
            lines.append(f"| {row['split']} | {cells} | {'yes' if win else 'no'} | {tau:+.2f} "
                         f"| {rho:+.2f} |")
        mean_cells = " | ".join(
            f"{statistics.mean(r['scores'][m][0] for r in rows):.0f} / "
            f"{statistics.mean(r['scores'][m][1] for r in rows):.0f}" for m in models)
        lines += [f"| mean | {mean_cells} | {wins}/{len(rows)} | {statistics.mean(taus):+.2f} "
                  f"| {np.nanmean(rhos):+.2f} |", ""]
        units = {m: {u: v for row in rows for u, v in row["units"].get(m, {}).items()}
                 for m in models}
        lines += _verdict_lines(units, models, lead)
    text = "\n".join(lines)
    (args.out / "split_sensitivity.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
