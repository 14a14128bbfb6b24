"""``results.md``: per-task tables beside the paper's NIMMGen numbers, and the stability
summary."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..modeling.config import TrainConfig
from .config import BenchConfig
from .files import _fmt


def _pct(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{100 * x:.0f}%"


def _yes(v: bool | None) -> str:
    return "n/a" if v is None else ("yes" if v else "no")


def results_markdown(config: BenchConfig, summary: dict[str, Any]) -> str:
    """``results.md``: per task a table of references and policies beside the paper's
    NIMMGen number, then the stability summary."""
    from ..proposers.registry import resolve_name

    lines = ["# NIMM benchmark results", "",
             f"Tasks: {', '.join(config.tasks)}. Policies: {', '.join(config.policies)}. "
             f"Seeds: {config.seeds} (0..{config.seeds - 1}). Budget: {config.budget} evaluated "
             f"nodes per run, {config.branches} branches. Proposer: "
             f"{resolve_name(config.proposer)}. Max epochs: "
             f"{config.max_epochs if config.max_epochs is not None else TrainConfig().max_epochs}"
             + (f". Options: {json.dumps(config.options)}" if config.options else "")
             + (f". Task options: {json.dumps(config.task_options)}" if config.task_options else "")
             + ".", "",
             "Test RMSE is in the task's original units, of the node with the best validation "
             "RMSE in each run (references: one training per seed). Mean ± sample std over the "
             "runs that produced a valid model; worst = the largest of those. Valid-node rate = "
             "ok evaluations / all evaluations; runs with a valid model = runs whose best node "
             "exists. Wall time: mean per run (s).", ""]
    for task, s in summary.items():
        lines += _task_section(task, s, config)
    lines += ["## Stability", "",
              "Spread of the final test RMSE across seeds, per task and policy.", "",
              "| task | policy | runs with a model | mean | std | worst |",
              "| --- | --- | --- | --- | --- | --- |"]
    for task, s in summary.items():
        for p, st in s["policies"].items():
            lines.append(f"| {task} | {p} | {st['valid_runs']}/{st['runs']} | {_fmt(st['mean'])} "
                         f"| {_fmt(st['std'])} | {_fmt(st['worst'])} |")
    lines += ["", "| task | NIMMGen mean | prior mean | neural mean | NIMMGen beats prior "
              "| NIMMGen beats neural | NIMMGen std | greedy std | NIMMGen std ≤ ½ greedy std |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for task, s in summary.items():
        n, g = s["policies"].get("nimmgen", {}), s["policies"].get("greedy", {})
        pr, ne = s["references"].get("prior", {}), s["references"].get("neural", {})
        c = s["checks"]
        lines.append(f"| {task} | {_fmt(n.get('mean'))} | {_fmt(pr.get('mean'))} | "
                     f"{_fmt(ne.get('mean'))} | {_yes(c['nimmgen_beats_prior'])} | "
                     f"{_yes(c['nimmgen_beats_neural'])} | {_fmt(n.get('std'))} | "
                     f"{_fmt(g.get('std'))} | {_yes(c['nimmgen_std_le_half_greedy'])} |")
    return "\n".join(lines) + "\n"


def _task_section(task: str, s: dict[str, Any], config: BenchConfig) -> list[str]:
    paper = s["paper"]
    head = f"## {task}" + (f" ({s['source']})" if s.get("source") else "")
    lines = [head, ""]
    targets = s.get("targets") or []
    if len(targets) > 6:  # e.g. one target per US state: name a few, not all
        lines.append(f"Targets: {len(targets)} ({', '.join(targets[:4])}, ...).")
    elif targets:
        lines.append(f"Targets: {', '.join(targets)}.")
    if paper is None:
        lines.append("No corresponding row in the NIMM paper.")
        paper_cell = "-"
    elif paper["comparable"]:
        unit = f" {paper['unit']}" if paper["unit"] else ""
        lines.append(f"Paper row: {paper['label']} (NIMMGen test RMSE {paper['test_rmse']}{unit}). "
                     "Units and scales may differ from ours (data version, splits, horizon, "
                     "normalisation), so compare with care.")
        paper_cell = f"{paper['test_rmse']}{unit}"
    else:
        lines.append(f"Synthetic stand-in for the paper's {paper['label']} row: our data is "
                     "invented because the real data is not available, so the numbers are "
                     "**not comparable**.")
        paper_cell = f"{paper['test_rmse']} (synthetic stand-in, not comparable)"
    lines += ["", "| model | test RMSE mean ± std | worst test RMSE | valid-node rate "
              "| runs with a valid model | wall time (s) | NIMM paper NIMMGen test RMSE |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for which, st in s["references"].items():
        if not st.get("available", True):
            lines.append(f"| {which} (reference) | n/a | n/a | n/a | n/a | - | |")
            continue
        lines.append(_table_row(f"{which} (reference)", st, ""))
    for p, st in s["policies"].items():
        lines.append(_table_row(p, st, paper_cell if p == "nimmgen" else ""))
    if "nimmgen" not in s["policies"] and paper is not None:
        lines.append(f"| NIMMGen (paper) | | | | | | {paper_cell} |")
    c = s["checks"]
    lines += ["", f"NIMMGen beats prior: {_yes(c['nimmgen_beats_prior'])}; beats neural: "
              f"{_yes(c['nimmgen_beats_neural'])}; beats hand-written hybrid: "
              f"{_yes(c['nimmgen_beats_hybrid'])}; NIMMGen std ≤ ½ greedy std: "
              f"{_yes(c['nimmgen_std_le_half_greedy'])}.", ""]
    plots = [Path(p).name for p in s.get("plots", [])]
    if plots:
        lines += ["Plots: " + ", ".join(f"[{p}]({p})" for p in plots) + ".", ""]
    return lines


def _table_row(name: str, st: dict[str, Any], paper_cell: str) -> str:
    mean = (f"{_fmt(st['mean'])} ± {_fmt(st['std'])}" if math.isfinite(st["mean"])
            else "no valid model")
    return (f"| {name} | {mean} | {_fmt(st['worst'])} | {_pct(st['valid_node_rate'])} | "
            f"{st['valid_runs']}/{st['runs']} | {_fmt(st['wall_time'])} | {paper_cell} |")
