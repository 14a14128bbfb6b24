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
from .search import parse_options, stdout_to_stderr


def add_parser(sub: Any) -> None:
    p = sub.add_parser("bench", help="benchmark search policies against references",
                       description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("--tasks", required=True, metavar="A,B",
                   help="comma-separated task names (see `nimm tasks`), or 'all'")
    p.add_argument("--policies", default="nimmgen,greedy,evolution,sampling", metavar="P,Q",
                   help="comma-separated policies (default: all four)")
    p.add_argument("--seeds", type=int, default=3, metavar="N", help="seeds 0..N-1 (default 3)")
    p.add_argument("--budget", type=int, default=8, metavar="B",
                   help="evaluated nodes per search (default 8)")
    p.add_argument("--proposer", default="offline", choices=["offline", "anthropic", "auto"],
                   help="who writes candidates (default offline)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--workers", type=int, default=1, metavar="W",
                   help="evaluations at once, as W searches side by side (default 1)")
    p.add_argument("--max-epochs", type=int, metavar="E",
                   help="training epochs per candidate and reference (default 300)")
    p.add_argument("--branches", type=int, default=3, help="strategies per search (default 3)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--option", metavar="KEY=VALUE", action="append", default=[],
                   help="task option for every task that takes it, e.g. n_patients=200")
    p.add_argument("--task-option", metavar="TASK:KEY=VALUE", action="append", default=[],
                   help="task option for one task, e.g. lung_cancer:n_patients=200")
    p.add_argument("--eval-timeout", type=float, default=600.0, metavar="S",
                   help="wall-clock limit of one evaluation (default 600)")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing; rebuild results.csv/.md and plots from OUT")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


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
    return BenchConfig(
        tasks=names, out=Path(args.out), policies=_names(args.policies, "policies"),
        seeds=args.seeds, budget=args.budget, proposer=args.proposer, workers=args.workers,
        max_epochs=args.max_epochs, branches=args.branches, device=args.device,
        options=parse_options(args.option), task_options=parse_task_options(args.task_option),
        eval_timeout=args.eval_timeout,
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
