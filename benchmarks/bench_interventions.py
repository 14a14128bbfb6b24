"""Do the models a search finds hold under interventions the data never showed? (issue 20 item 3)

    NIMM_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_interventions.py BENCH_OUT \
        [--tasks lung_cancer,lung_cancer_chemo,lung_cancer_chemo_radio] [--policy nimmgen] \
        [--seeds 0,1,2] [--n-patients 200] [--workers 2] [--out FILE.md]

Any task with scenarios works (the lung-cancer tasks' dosing policies, the COVID stand-ins'
npi schedules); ``--n-patients`` goes only to the tasks that take it.

``BENCH_OUT`` is a finished ``nimm bench`` output directory (``runs/<task>/<policy>/seed<k>``).
For every task and seed it takes the search's best node (by validation) and the three
references (prior, neural, hybrid), fits each once more through the sandboxed executor with
that seed (the driver scores the held-out intervention scenarios of ``Task.scenarios``, which
no search ever saw), and prints test RMSE (in distribution) next to each scenario's RMSE,
mean ± standard error over the seeds, plus how often and by how much the search's best beats
the neural reference and the prior on each scenario.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nimm_jupyter import tasks  # noqa: E402
from nimm_jupyter.bench.stats import cell, paired_t_test  # noqa: E402
from nimm_jupyter.execution import EvalRequest, LocalExecutor, TrainConfig  # noqa: E402
from nimm_jupyter.modeling.references import REFERENCES, reference_code  # noqa: E402
from nimm_jupyter.search.api import open_run  # noqa: E402

LUNG = "lung_cancer,lung_cancer_chemo,lung_cancer_chemo_radio"


def _fmt(values: list[float]) -> str:
    c = cell(values)
    return "n/a" if not c.n else f"{c.mean:.4g} ± {c.se:.2g}"


def _versus(by_seed: dict[tuple[str, int], dict[str, float]], ref: str, seeds: list[int],
            columns: list[str]) -> list[str]:
    """Per column: on how many seeds the search's best is below ``ref``, the geometric mean of
    their ratio and the paired t-test of the difference."""
    out = []
    for s in columns:
        pairs = [(by_seed[("search best", k)][s], by_seed[(ref, k)][s]) for k in seeds
                 if ("search best", k) in by_seed and (ref, k) in by_seed]
        if pairs:
            won = sum(b < n for b, n in pairs)
            ratio = math.exp(sum(math.log(b / n) for b, n in pairs if b > 0 and n > 0)
                             / len(pairs))
            test = paired_t_test(dict(enumerate(b for b, _ in pairs)),
                                 dict(enumerate(n for _, n in pairs)))
            out.append(f"{s}: lower on {won}/{len(pairs)} seeds, geometric-mean "
                       f"ratio {ratio:.3g} ({test.describe()})")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bench_out", type=Path)
    ap.add_argument("--tasks", default=LUNG)
    ap.add_argument("--policy", default="nimmgen")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--n-patients", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    lines = [f"Held-out intervention scenarios; best node of `{args.policy}` searches in "
             f"`{args.bench_out}`; RMSE, mean ± SE over seeds {seeds}.", ""]
    with LocalExecutor(workers=args.workers, device="cpu") as ex:
        for name in args.tasks.split(","):
            opts = ({"n_patients": args.n_patients} if tasks.accepts_option(name, "n_patients")
                    else {})
            task = tasks.get(name, **opts)
            jobs = {}
            for k in seeds:
                run = open_run(args.bench_out / "runs" / name / args.policy / f"seed{k}")
                if run.best is None:
                    continue
                sources = {ref: reference_code(task, ref) for ref in REFERENCES}
                sources["search best"] = run.best.code
                for model, code in sources.items():
                    if code:
                        job = f"{name}/{model}/{k}"
                        ex.submit(EvalRequest(job, code, task, TrainConfig(seed=k), timeout=900))
                        jobs[job] = (model, k)
            results = {job: ex.wait(job) for job in jobs}
            scen = list(task.scenarios)
            first = len(lines)  # this task's block, printed as soon as it is done
            sizes = ", ".join(f"{s} {len(task.split(s))}" for s in [*task.sizes(), *scen])
            lines += [f"### {name}", "", f"Samples: {sizes}.", "",
                      "| model | test | " + " | ".join(scen) + " |",
                      "|---|---|" + "---|" * len(scen)]
            table: dict[str, dict[str, list[float]]] = {}
            by_seed: dict[tuple[str, int], dict[str, float]] = {}
            for job, (model, k) in jobs.items():
                r = results[job]
                if not r.ok:
                    print(f"  {job}: {r.status.value}: {r.message[:200]}", file=sys.stderr)
                    continue
                row = {"test": r.test.rmse, **{s: r.scenarios[s].rmse for s in scen}}
                by_seed[(model, k)] = row
                for col, v in row.items():
                    table.setdefault(model, {}).setdefault(col, []).append(v)
            for model in (*REFERENCES, "search best"):
                if model in table:
                    lines.append(f"| {model} | " + " | ".join(
                        _fmt(table[model].get(c, [])) for c in ["test", *scen]) + " |")
            lines.append("")
            for ref in ("neural", "prior"):
                lines += [f"search best vs {ref}: "
                          + "; ".join(_versus(by_seed, ref, seeds, ["test", *scen])), ""]
            print("\n".join(lines[first:]), flush=True)
    text = "\n".join(lines)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
