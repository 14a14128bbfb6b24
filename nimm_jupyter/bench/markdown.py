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
from .stats import ALPHA


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
             "Test RMSE is in the task's original units, of the node each run hands back (the "
             "simplest node within one bootstrap standard error of the lowest validation score; "
             "references: one training per seed), scored on the full rollout; the one-step column "
             "scores the same model's teacher-forced one-step predictions (each step from the "
             "true previous states, as HDTwinGen scores; for windowed series, the first forecast "
             "step of every window). Mean ± standard error "
             "(sample std / √n) over the n runs that produced a valid model; worst = the largest "
             "of those. Valid-node rate = ok evaluations / all evaluations; runs with a valid "
             "model = runs whose best node exists. Wall time: mean per run (s).", "",
             "A verdict \"beats\" needs a two-sided paired t-test over the seeds both sides "
             f"have (Δ = mean per-seed difference ± its standard error, p-value, n pairs) to "
             f"hold at α = {ALPHA} with a lower mean; fewer than two pairs give no verdict. "
             "Every policy is tested against `sampling` (independent drafts only), the floor a "
             "search policy must beat.", ""]
    for task, s in summary.items():
        lines += _task_section(task, s, config)
    lines += ["## Stability", "",
              "Spread of the final test RMSE across seeds, per task and policy.", "",
              "| task | policy | runs with a model | mean | s.e. | std | worst |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for task, s in summary.items():
        for p, st in s["policies"].items():
            lines.append(f"| {task} | {p} | {st['valid_runs']}/{st['runs']} | {_fmt(st['mean'])} "
                         f"| {_fmt(st['se'])} | {_fmt(st['std'])} | {_fmt(st['worst'])} |")
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


def _paper_text(task: str, paper: dict[str, Any] | None) -> tuple[str, str, str]:
    """The paragraph under the task's heading, the paper cell and the protocol cell."""
    if paper is None:
        return "No corresponding row in the NIMM paper.", "-", ""
    unit = f" {paper['unit']}" if paper["unit"] else ""
    if task.endswith("_synthetic"):
        return (f"Synthetic stand-in for the paper's {paper['label']} row: our data is "
                "invented because the real data is not available, so the numbers are "
                "**not comparable**.",
                f"{paper['test_rmse']} (synthetic stand-in, not comparable)", "")
    if not paper["comparable"]:
        return (f"Paper row: {paper['label']} (NIMMGen test RMSE {paper['test_rmse']}{unit}), "
                f"**not comparable**: {paper['protocol']}.",
                f"{paper['test_rmse']}{unit} (not comparable)", paper["protocol"])
    return (f"Paper row: {paper['label']} (NIMMGen test RMSE {paper['test_rmse']}{unit}). "
            f"What is known of its protocol: {paper['protocol']}. Units and scales may differ "
            "from ours (data version, splits, horizon, normalisation), so compare with care.",
            f"{paper['test_rmse']}{unit}", paper["protocol"])


def _verdict(test: dict[str, Any] | None) -> str:
    """A paired test as a table cell: the verdict, then Δ ± s.e., p and n."""
    if test is None:
        return "-"
    if test["beats"] is None:
        return test["text"]
    return f"{'beats' if test['beats'] else 'does not beat'} ({test['text']})"


def _task_section(task: str, s: dict[str, Any], config: BenchConfig) -> list[str]:
    paper = s["paper"]
    head = f"## {task}" + (f" ({s['source']})" if s.get("source") else "")
    lines = [head, ""]
    targets = s.get("targets") or []
    if len(targets) > 6:  # e.g. one target per US state: name a few, not all
        lines.append(f"Targets: {len(targets)} ({', '.join(targets[:4])}, ...).")
    elif targets:
        lines.append(f"Targets: {', '.join(targets)}.")
    text, paper_cell, protocol = _paper_text(task, paper)
    lines.append(text)
    lines += ["", "| model | test RMSE mean ± s.e. (n) | one-step test RMSE mean ± s.e. (n) "
              "| worst test RMSE | valid-node rate "
              "| runs with a valid model | wall time (s) | NIMM paper NIMMGen test RMSE "
              "| paper's protocol | vs sampling (paired t over seeds) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for which, st in s["references"].items():
        if not st.get("available", True):
            lines.append(f"| {which} (reference) | n/a | n/a | n/a | n/a | n/a | - | | | |")
            continue
        lines.append(_table_row(f"{which} (reference)", st, "", "", ""))
    c = s["checks"]
    tests = c["paired_tests"]
    for p, st in s["policies"].items():
        floor = "floor" if p == "sampling" else _verdict(tests.get(f"{p}_vs_sampling"))
        mine = p == "nimmgen"
        lines.append(_table_row(p, st, paper_cell if mine else "", protocol if mine else "",
                                floor))
    if "nimmgen" not in s["policies"] and paper is not None:
        lines.append(f"| NIMMGen (paper) | | | | | | | {paper_cell} | {protocol} | |")
    lines += ["", f"NIMMGen beats prior: {_yes(c['nimmgen_beats_prior'])} "
              f"[{_verdict(tests['nimmgen_vs_prior'])}]; beats neural: "
              f"{_yes(c['nimmgen_beats_neural'])} [{_verdict(tests['nimmgen_vs_neural'])}]; "
              f"beats hand-written hybrid: {_yes(c['nimmgen_beats_hybrid'])} "
              f"[{_verdict(tests['nimmgen_vs_hybrid'])}]; NIMMGen std ≤ ½ greedy std: "
              f"{_yes(c['nimmgen_std_le_half_greedy'])}.", ""]
    plots = [Path(p).name for p in s.get("plots", [])]
    if plots:
        lines += ["Plots: " + ", ".join(f"[{p}]({p})" for p in plots) + ".", ""]
    return lines


def _mean_cell(st: dict[str, Any] | None, missing: str) -> str:
    if not st or not math.isfinite(st["mean"]):
        return missing
    return f"{_fmt(st['mean'])} ± {_fmt(st['se'])} (n={st['n']})"


def _table_row(name: str, st: dict[str, Any], paper_cell: str, protocol: str,
               verdict: str) -> str:
    mean = _mean_cell(st, "no valid model")
    # teacher-forced one-step (each step from the true previous states; "-" for tables and
    # runs journaled before the reveal existed)
    one_step = _mean_cell(st.get("one_step"), "-")
    return (f"| {name} | {mean} | {one_step} | {_fmt(st['worst'])} | {_pct(st['valid_node_rate'])} | "
            f"{st['valid_runs']}/{st['runs']} | {_fmt(st['wall_time'])} | {paper_cell} "
            f"| {protocol} | {verdict} |")
