"""``nimm bench``: the search benchmark (policies x seeds x tasks, plus references), resumable.

Every (task, policy, seed) search runs into ``OUT/runs/<task>/<policy>/seed<k>/``; finished
runs are kept, interrupted ones resumed, so running the same command again continues it.
Outputs: ``OUT/results.csv``, ``OUT/results.md``, ``OUT/references.csv`` and two plots per
task. With ``--json`` stdout holds exactly one JSON object (paths and summary).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..cli import CLIError
from . import parse_options
from .search import add_json_option, stdout_to_stderr


# flags whose meaning is a search's: taken from the search option table as they are
SHARED_FLAGS = ("--branches", "--device", "--max-epochs", "--eval-timeout", "--option")


def add_parser(sub: Any) -> None:
    from ..bench import BenchConfig
    from ..search.options import option

    defaults = BenchConfig(tasks=[], out=Path("."))
    p = sub.add_parser("bench", help="benchmark search policies against references",
                       description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("--tasks", required=True, metavar="A,B",
                   help="comma-separated task names (see `nimm tasks`), or 'all'")
    p.add_argument("--policies", default=",".join(defaults.policies), metavar="P,Q",
                   help="comma-separated policies (default: all of them)")
    p.add_argument("--seeds", type=int, default=defaults.seeds, metavar="N",
                   help=f"seeds 0..N-1 (default {defaults.seeds})")
    p.add_argument("--budget", type=int, default=defaults.budget, metavar="B",
                   help=f"evaluated nodes per search (default {defaults.budget})")
    p.add_argument("--proposer", default=defaults.proposer,
                   choices=["offline", "anthropic", "auto"],
                   help=f"who writes candidates (default {defaults.proposer})")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--workers", type=int, default=defaults.workers, metavar="W",
                   help="evaluations at once, as W searches side by side "
                        f"(default {defaults.workers})")
    for flag in SHARED_FLAGS:
        option(flag).add_to(p)
    p.add_argument("--task-option", metavar="TASK:KEY=VALUE", action="append", default=[],
                   help="task option for one task, e.g. lung_cancer:n_patients=200")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing; rebuild results.csv/.md and plots from OUT")
    add_json_option(p)


def _names(text: str, what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise CLIError(f"--{what} is empty")
    return names


def parse_task_options(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """``task:key=value`` strings -> {task: {key: value}} (values JSON when they parse)."""
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        task, sep, rest = pair.partition(":")
        if not sep or not task.strip() or "=" not in rest:
            raise CLIError(f"--task-option needs TASK:KEY=VALUE, got {pair!r}")
        out.setdefault(task.strip(), {}).update(parse_options([rest]))
    return out


def build_config(args: argparse.Namespace) -> Any:
    from .. import tasks
    from ..bench import BenchConfig

    names = tasks.list_tasks() if args.tasks.strip() == "all" else _names(args.tasks, "tasks")
    shared = {k: getattr(args, k) for k in ("branches", "device", "eval_timeout")
              if getattr(args, k) is not None}  # unset: BenchConfig's default
    return BenchConfig(
        tasks=names, out=Path(args.out), policies=_names(args.policies, "policies"),
        seeds=args.seeds, budget=args.budget, proposer=args.proposer, workers=args.workers,
        max_epochs=args.max_epochs, options=parse_options(args.option),
        task_options=parse_task_options(args.task_option), **shared,
    )


def _text(report: Any) -> str:
    lines = [f"runs: {len(report.ran)} run, {len(report.resumed)} resumed, "
             f"{len(report.skipped)} kept, {len(report.errors)} failed; "
             f"references trained: {report.references_trained}"]
    for task, s in report.summary.items():
        parts = []
        for name, st in list(s["references"].items()) + list(s["policies"].items()):
            mean = st.get("mean")
            if mean is not None and mean == mean:
                parts.append(f"{name} {mean:.4g}±{st['std']:.2g}")
        lines.append(f"  {task}: test RMSE " + ", ".join(parts))
    lines += [f"results: {report.results_md}", f"         {report.results_csv}"]
    if report.errors:
        lines.append("failed runs (run the command again to retry): " + ", ".join(report.errors))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..bench import BenchError, run_benchmark

    config = build_config(args)
    with stdout_to_stderr(args.json):
        try:
            report = run_benchmark(config, run=not args.report_only)
        except BenchError as exc:
            raise CLIError(str(exc)) from None
    if args.json:
        print(json.dumps(report.to_dict(), default=str))
    else:
        print(_text(report))
        sys.stdout.flush()
    return 1 if report.errors else 0
