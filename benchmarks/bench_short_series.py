"""One short noisy series, its last points held out, a mechanistic prior as seed code (issue 17,
target 2): does the search's multi-step forecast of the held-out tail beat the fitted prior?

    PYTHONPATH=. NIMM_DATA_DIR=... python benchmarks/bench_short_series.py OUT \
        [--seeds 0,1,2,3,4] [--flags "--test-last 10 --context 1"] [--budget 12]

The system: predator-prey with logistic prey growth, x' = r x (1 - x/K) - a x y,
y' = b x y - d y (r=1, K=8, a=0.6, b=0.3, d=0.5; x0=3, y0=0.6), sampled every 0.4 years for
50 points (a damped cycle), each value times (1 + 0.04 e), e standard normal: 4 % multiplicative
noise, drawn afresh per seed. The prior (``own_data_priors/lotka_volterra.py``) is plain
Lotka-Volterra in dynamics form (no self-limitation of the prey), every constant 30 % off.

Per seed, as a user runs it: write the series as a CSV (``year,prey,predator``), run
``nimm search --csv ... --seed-code PRIOR --proposer offline --workers 1`` with ``--flags``,
read ``nimm show RUN --json``, and score ``own_data_priors/lotka_volterra_logistic.py`` (the
true structure from the same 30 %-off start: the ceiling) with ``nimm eval --csv ... --code``
and the same flags. Compared on the test window (held-out tail, RMSE in the data's units over
both states): the fitted prior (node 0), the search's answer (``best`` of ``nimm show``: the
simplest node within one SE of the lowest validation score) and the ceiling. It checks from
the run directory that the test split is one window forecast from the last validation point.
Prints one JSON line per seed and a summary (mean +- SE over seeds, paired comparison); the
summary also goes to OUT/summary.json.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
PRIOR = HERE / "own_data_priors" / "lotka_volterra.py"
TRUE = HERE / "own_data_priors" / "lotka_volterra_logistic.py"
TRUTH = dict(r=1.0, K=8.0, a=0.6, b=0.3, d=0.5)
X0, DT, N_POINTS, NOISE = (3.0, 0.6), 0.4, 50, 0.04
COLUMNS = ["--time", "year", "--targets", "prey,predator"]


def _rhs(z: np.ndarray) -> np.ndarray:
    x, y = z
    p = TRUTH
    return np.array([p["r"] * x * (1 - x / p["K"]) - p["a"] * x * y,
                     p["b"] * x * y - p["d"] * y])


def clean_series() -> np.ndarray:
    """The noise-free trajectory ``(N_POINTS, 2)``: RK4, 20 substeps per sample."""
    z, h, rows = np.array(X0), DT / 20, []
    for _ in range(N_POINTS):
        rows.append(z.copy())
        for _ in range(20):
            k1 = _rhs(z)
            k2 = _rhs(z + h / 2 * k1)
            k3 = _rhs(z + h / 2 * k2)
            k4 = _rhs(z + h * k3)
            z = z + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return np.array(rows)


def simulate(seed: int) -> pd.DataFrame:
    """The series times (1 + 0.04 e): 4 % multiplicative noise, drawn by ``seed``."""
    clean = clean_series()
    noisy = clean * (1 + NOISE * np.random.default_rng(seed).standard_normal(clean.shape))
    return pd.DataFrame({"year": np.round(np.arange(N_POINTS) * DT, 2),
                         "prey": noisy[:, 0].round(5), "predator": noisy[:, 1].round(5)})


def nimm(args: list[str], log: Path) -> str:
    """``python -m nimm_jupyter.cli ARGS``: stdout; stderr (progress) appended to ``log``."""
    with log.open("a") as err:
        out = subprocess.run([sys.executable, "-m", "nimm_jupyter.cli", *args], check=True,
                             stdout=subprocess.PIPE, stderr=err, text=True)
    return out.stdout


def check_test_window(run_dir: Path) -> tuple[str, int]:
    """The test split must be forecast from the end of validation over the whole tail."""
    from nimm_jupyter.search.results import open_run
    task = open_run(run_dir).task
    test, opts = task.split("test"), task.options
    starts = test.window_start.tolist()
    first_forecast = starts[0] + opts["context"] if len(starts) == 1 else None
    if first_forecast != N_POINTS - opts["test_last"] or opts["horizon"] != opts["test_last"]:
        raise SystemExit(f"test split is not one forecast of the whole tail: starts {starts}, "
                         f"options {opts['context'], opts['horizon'], opts['test_last']}")
    return opts["layout"], opts["test_last"]


def run_seed(out: Path, seed: int, flags: list[str], budget: int) -> dict:
    work = out / f"seed{seed}"
    work.mkdir(parents=True, exist_ok=True)
    csv, run_dir, log = work / "series.csv", work / "run", work / "stderr.log"
    series = simulate(seed)
    series.to_csv(csv, index=False)
    data = ["--csv", str(csv), *COLUMNS, *flags]
    t0 = time.time()
    nimm(["search", *data, "--seed-code", str(PRIOR), "--budget", str(budget), "--proposer",
          "offline", "--workers", "1", "--seed", str(seed), "--run-dir", str(run_dir)], log)
    wall = time.time() - t0
    show = json.loads(nimm(["show", str(run_dir), "--json"], log))
    ceiling = json.loads(nimm(["eval", *data, "--code", str(TRUE), "--seed", str(seed),
                               "--json"], log))
    nodes = {n["id"]: n for n in show["nodes"]}
    prior, answer = nodes[0], nodes[show["best"]["id"]]
    low = min((n for n in show["nodes"] if n["status"] == "ok"), key=lambda n: n["val_score"])
    layout, n_test = check_test_window(run_dir)
    # the noise-free truth scored against the noisy tail: what no model can beat on average
    tail = series[["prey", "predator"]].to_numpy()[-n_test:]
    floor = float(np.sqrt(np.mean((clean_series()[-n_test:] - tail) ** 2)))
    return {
        "seed": seed, "layout": layout, "noise_floor_test": floor, "search_wall_s": round(wall, 1),
        "prior_test": prior["test_rmse"], "prior_val": prior["val_rmse"],
        "answer_id": answer["id"], "answer_change": answer["change"],
        "answer_test": answer["test_rmse"], "answer_val": answer["val_rmse"],
        "answer_val_score_se": answer["val_score_se"], "answer_n_parameters": answer["n_parameters"],
        "lowest_val_id": low["id"], "lowest_val_test": low["test_rmse"],
        "ceiling_status": ceiling.get("status"),
        "ceiling_test": (ceiling.get("test") or {}).get("rmse"),
        "ceiling_params": {k: round(float(v), 4) for k, v in
                           (ceiling.get("parameters") or {}).items()},
        "nodes": [(n["id"], n["status"], n["val_rmse"], n["test_rmse"], n["change"][:90])
                  for n in show["nodes"]],
    }


def _mean_se(xs: list[float]) -> tuple[float, float]:
    a = np.asarray(xs, dtype=float)
    return float(a.mean()), float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else math.nan


def summarise(rows: list[dict]) -> dict:
    """Mean +- SE per model; paired search-vs-prior: log ratio t-test and the sign count."""
    from scipy import stats
    summary: dict = {"n_seeds": len(rows)}
    for key in ("prior_test", "answer_test", "lowest_val_test", "ceiling_test",
                "noise_floor_test"):
        vals = [r[key] for r in rows if r[key] is not None]
        summary[key] = dict(zip(("mean", "se"), _mean_se(vals)), n=len(vals))
    log_ratio = [math.log(r["answer_test"] / r["prior_test"]) for r in rows]
    diff = [r["answer_test"] - r["prior_test"] for r in rows]
    summary["answer_minus_prior"] = dict(zip(("mean", "se"), _mean_se(diff)))
    summary["answer_over_prior_geomean"] = math.exp(float(np.mean(log_ratio)))
    summary["answer_beats_prior"] = f"{sum(d < 0 for d in diff)} of {len(diff)}"
    if len(rows) > 1:
        t = stats.ttest_1samp(log_ratio, 0.0)
        summary["paired_t_log_ratio"] = dict(t=float(t.statistic), p_two_sided=float(t.pvalue))
        w = stats.wilcoxon(diff, alternative="two-sided")
        summary["wilcoxon_signed_rank"] = dict(p_two_sided=float(w.pvalue))
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--flags", default="--test-last 10 --context 1",
                    help="data/split flags of nimm search and nimm eval")
    ap.add_argument("--budget", type=int, default=12)
    a = ap.parse_args()
    os.environ.setdefault("PYTHONPATH", str(HERE.parent))
    rows = []
    for seed in (int(s) for s in a.seeds.split(",")):
        row = run_seed(a.out, seed, shlex.split(a.flags), a.budget)
        print(json.dumps(row), flush=True)
        rows.append(row)
    summary = summarise(rows)
    summary["flags"], summary["budget"] = a.flags, a.budget
    (a.out / "summary.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
