"""Reading every run journal and ``references.csv`` back: ``results.csv``, the per-task
statistics and the stability checks."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable

import numpy as np

from ..modeling.result import Status
from ..search.node import PROPOSAL_ERROR, Node
from .config import REFERENCES_CSV, RESULTS_CSV, RESULTS_MD, BenchConfig, run_dir_for
from .files import _read_csv, _write_csv, num
from .markdown import results_markdown
from .paper import paper_row
from .plots import plots
from .stats import cell, paired_t_test

STATUS_COLUMNS = tuple(s.value for s in Status) + (PROPOSAL_ERROR, "pending", "running")
RUN_FIELDS = (("task", "policy", "seed", "status", "stop_reason", "best_node", "best_val_rmse",
               "best_test_rmse", "best_val_rmse_norm", "best_test_rmse_norm",
               "best_val_rmse_one_step", "best_test_rmse_one_step", "n_nodes",
               "n_completed", "n_failed") + tuple(f"n_{s}" for s in STATUS_COLUMNS)
              + ("wall_time", "tokens", "cost", "run_dir"))


def _run_row(config: BenchConfig, task: str, policy: str,
             seed: int) -> tuple[dict[str, Any], list[float]]:
    """The results.csv row of one run and its best-so-far validation RMSE per evaluation."""
    from ..search.api import SearchError, open_run

    rd = run_dir_for(config.out, task, policy, seed)
    row: dict[str, Any] = {"task": task, "policy": policy, "seed": seed, "run_dir": str(rd)}
    try:
        r = open_run(rd)
    except SearchError:
        row.update(status="missing", n_nodes=0, n_completed=0, n_failed=0, n_ok=0)
        return row, []
    best = r.best
    completed = [n for n in r.nodes if n.completed]
    row.update(
        status=r.status, stop_reason=r.stop_reason, best_node=best.id if best else None,
        best_val_rmse=best.rmse("val") if best else None,
        best_test_rmse=best.rmse("test") if best else None,
        best_val_rmse_norm=best.result.val.rmse_norm if best and best.result else None,
        best_test_rmse_norm=best.result.test.rmse_norm if best and best.result else None,
        # teacher-forced one-step (trajectory tasks; the sequential reveal), next to the rollout
        best_val_rmse_one_step=best.result.val.rmse_one_step if best and best.result else None,
        best_test_rmse_one_step=best.result.test.rmse_one_step if best and best.result else None,
        n_nodes=len(r.nodes), n_completed=len(completed),
        n_failed=sum(not n.ok for n in completed),
        wall_time=r.wall_time, tokens=r.tokens, cost=r.cost,
    )
    for s in STATUS_COLUMNS:
        row[f"n_{s}"] = r.counts.get(s, 0)
    return row, best_so_far(r.nodes)


def best_so_far(nodes: Iterable[Node]) -> list[float]:
    """Lowest validation RMSE (original units) after each completed evaluation, in the order
    evaluations finished; NaN until the first valid model."""
    done = sorted((n for n in nodes if n.completed),
                  key=lambda n: (n.finished if n.finished is not None else math.inf, n.id))
    out, best = [], math.inf
    for n in done:
        if n.ok and math.isfinite(n.rmse("val")):
            best = min(best, n.rmse("val"))
        out.append(best if math.isfinite(best) else math.nan)
    return out


def _stats(values: list[float]) -> dict[str, float]:
    """Mean, sample std, standard error and worst case of the finite values (see
    :func:`.stats.cell`)."""
    return dataclasses.asdict(cell(values))


def _by_seed(rows: list[dict[str, Any]], column: str) -> dict[int, float]:
    """One value per seed (the unit a paired test pairs on); NaN where the run has no model."""
    out = {}
    for r in rows:
        ok = r.get("status") not in ("missing", "unavailable") and (
            column != "test_rmse" or r.get("status") == "ok")
        out[int(r["seed"])] = num(r.get(column)) if ok else math.nan
    return out


def _summarise_policy(rows: list[dict[str, Any]]) -> dict[str, Any]:
    tests = [num(r.get("best_test_rmse")) for r in rows]
    completed = sum(int(r.get("n_completed") or 0) for r in rows)
    ok = sum(int(r.get("n_ok") or 0) for r in rows)
    walls = [num(r.get("wall_time")) for r in rows if r.get("status") != "missing"]
    st = _stats(tests)
    one_step = _stats([num(r.get("best_test_rmse_one_step")) for r in rows])
    return {**st, "one_step": one_step, "by_seed": _by_seed(rows, "best_test_rmse"), "runs": len(rows),
            "valid_runs": st["n"],
            "valid_run_rate": st["n"] / len(rows) if rows else math.nan,
            "valid_node_rate": ok / completed if completed else math.nan,
            "wall_time": float(np.mean(walls)) if walls else math.nan,
            "finished_runs": sum(r.get("status") == "completed" for r in rows)}


def _summarise_reference(rows: list[dict[str, str]]) -> dict[str, Any]:
    if rows and all(r["status"] == "unavailable" for r in rows):
        return {"available": False, "runs": len(rows)}
    tests = [num(r["test_rmse"]) if r["status"] == "ok" else math.nan for r in rows]
    st = _stats(tests)
    one_step = _stats([num(r.get("test_rmse_one_step")) if r["status"] == "ok" else math.nan
                       for r in rows])
    walls = [num(r["wall_time"]) for r in rows if math.isfinite(num(r["wall_time"]))]
    return {**st, "one_step": one_step, "by_seed": _by_seed(rows, "test_rmse"),
            "available": True, "runs": len(rows),
            "valid_runs": st["n"],
            "valid_run_rate": st["n"] / len(rows) if rows else math.nan,
            "valid_node_rate": st["n"] / len(rows) if rows else math.nan,
            "wall_time": float(np.mean(walls)) if walls else math.nan}


def _paired(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """The paired t-test of ``a``'s per-seed test RMSE against ``b``'s, as a JSON-able dict
    with its verdict (``beats``: True, False, or None when fewer than two seeds pair up)."""
    if not a or not b or not b.get("available", True):
        return None
    t = paired_t_test(a["by_seed"], b["by_seed"])
    return {**dataclasses.asdict(t), "beats": t.a_beats_b, "text": t.describe()}


def _checks(task_summary: dict[str, Any], refs: dict[str, Any]) -> dict[str, Any]:
    """The verdicts. NIMMGen "beats" a reference only when a paired t-test over the seeds
    holds at :data:`.stats.ALPHA` with a lower mean; every policy is also tested against
    ``sampling`` (independent drafts), the floor a search policy must beat. Also: is
    NIMMGen's spread at most half of greedy's?"""
    n = task_summary.get("nimmgen")
    g = task_summary.get("greedy")
    tests = {f"nimmgen_vs_{ref}": _paired(n, refs.get(ref)) for ref in ("prior", "neural",
                                                                          "hybrid")}
    floor = task_summary.get("sampling")
    vs_sampling = {p: _paired(st, floor) for p, st in task_summary.items() if p != "sampling"}
    half = None
    if n and g and n["n"] > 1 and g["n"] > 1:  # a spread needs two runs with a model
        half = bool(n["std"] <= 0.5 * g["std"])

    def verdict(t: dict[str, Any] | None) -> bool | None:
        return None if t is None else t["beats"]

    return {"nimmgen_beats_prior": verdict(tests["nimmgen_vs_prior"]),
            "nimmgen_beats_neural": verdict(tests["nimmgen_vs_neural"]),
            "nimmgen_beats_hybrid": verdict(tests["nimmgen_vs_hybrid"]),
            "nimmgen_std_le_half_greedy": half,
            "beats_sampling": {p: verdict(t) for p, t in vs_sampling.items()},
            "paired_tests": {**tests, **{f"{p}_vs_sampling": t for p, t in vs_sampling.items()}}}


def aggregate(config: BenchConfig, built: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read every run journal and ``references.csv``; write ``results.csv``, ``results.md``
    and the plots. Returns the per-task summary (policies, references, checks, plots)."""
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    rows, curves = [], {}
    for task in config.tasks:
        for policy in config.policies:
            for seed in config.seed_list():
                row, curve = _run_row(config, task, policy, seed)
                rows.append(row)
                curves[(task, policy, seed)] = curve
    _write_csv(out / RESULTS_CSV, RUN_FIELDS, rows)
    refs = [r for r in _read_csv(out / REFERENCES_CSV)
            if r["task"] in config.tasks and int(r["seed"]) < config.seeds
            and r["reference"] in config.references]
    summary: dict[str, Any] = {}
    for task in config.tasks:
        pol = {p: _summarise_policy([r for r in rows if r["task"] == task and r["policy"] == p])
               for p in config.policies}
        ref = {}
        for w in config.references:
            mine = [r for r in refs if r["task"] == task and r["reference"] == w]
            if mine:
                ref[w] = _summarise_reference(mine)
        paper, comparable = paper_row(task)
        info = _task_info(task, built)
        summary[task] = {
            "policies": pol, "references": ref, "checks": _checks(pol, ref),
            "paper": None if paper is None else {"label": paper.label, "test_rmse": paper.test_rmse,
                                                   "unit": paper.unit, "comparable": comparable,
                                                   "protocol": paper.protocol},
            **info,
        }
        summary[task]["plots"] = [str(p) for p in plots(out, task, config, curves, rows, refs)]
    (out / RESULTS_MD).write_text(results_markdown(config, summary))
    return summary


def _task_info(task: str, built: dict[str, Any] | None) -> dict[str, Any]:
    t = (built or {}).get(task)
    if t is None:
        return {"source": None, "targets": []}
    return {"source": t.source.value,
            "targets": [f"{v.name} [{v.unit}]" if v.unit else v.name for v in t.targets]}
