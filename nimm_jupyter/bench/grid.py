"""The resumable grid of searches: one per (task, policy, seed), in
``OUT/runs/<task>/<policy>/seed<k>/``; finished runs are kept, interrupted ones resumed."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..search.layout import JOURNAL_NAME
from .config import BenchConfig, BenchError, Log, log_stderr, run_dir_for
from .files import _fmt


def run_state(run_dir: str | Path, budget: int) -> str:
    """``new`` (no journal), ``done`` (completed, budget reached or nothing left to try) or
    ``resume`` (stopped, crashed, errored, or completed below a since-raised budget)."""
    from ..search.api import open_run

    rd = Path(run_dir)
    if not (rd / JOURNAL_NAME).exists():
        return "new"
    r = open_run(rd)
    if r.status != "completed":
        return "resume"
    completed = sum(n.completed for n in r.nodes)
    if r.stop_reason == "budget" and completed < budget:
        return "resume"
    return "done"


def _check_same_run(run_dir: Path, config: BenchConfig, task: str, policy: str,
                    seed: int) -> None:
    """An existing run must have been made with this grid's settings, or results would mix."""
    from ..proposers.registry import resolve_name
    from ..search.api import open_run

    s = open_run(run_dir).settings
    want = {"policy": policy, "seed": seed,
            "proposer": resolve_name(config.proposer), "branches": config.branches,
            "task_options": config.options_for(task),
            "max_epochs": config.train_config(seed).max_epochs}
    have = dict(s, max_epochs=(s.get("train") or {}).get("max_epochs"))
    for k, v in want.items():
        if have.get(k) != v:
            raise BenchError(f"{run_dir} holds a run with {k}={have.get(k)!r}, but this "
                             f"benchmark asks for {k}={v!r}; use another --out directory")


@dataclass
class _Cell:
    task: str
    policy: str
    seed: int
    run_dir: Path
    mode: str  # new | resume


def plan_grid(config: BenchConfig) -> tuple[list[_Cell], list[str]]:
    """The cells still to run (new or to resume) and the labels of finished ones.

    Raises :class:`BenchError` when an existing run was made with other settings.
    """
    todo: list[_Cell] = []
    done: list[str] = []
    for task in config.tasks:
        for policy in config.policies:
            for seed in config.seed_list():
                rd = run_dir_for(config.out, task, policy, seed)
                state = run_state(rd, config.budget)
                if state != "new":
                    _check_same_run(rd, config, task, policy, seed)
                if state == "done":
                    done.append(f"{task}/{policy}/seed{seed}")
                else:
                    todo.append(_Cell(task, policy, seed, rd, state))
    return todo, done


def run_grid(config: BenchConfig, log: Log = log_stderr) -> dict[str, list[str]]:
    """Run or resume every grid cell that is not done; returns cell labels by outcome
    (``ran``, ``resumed``, ``skipped``, ``errors``)."""
    from ..execution.local import LocalExecutor
    from ..search.api import resume, search

    todo, skipped = plan_grid(config)
    outcome: dict[str, list[str]] = {"ran": [], "resumed": [], "skipped": skipped, "errors": []}
    if skipped:
        log(f"runs: {len(skipped)} already finished (kept)")
    if not todo:
        return outcome
    log(f"runs: {len(todo)} to run ({sum(c.mode == 'resume' for c in todo)} resumed)")
    # One executor per lane, reused by the lane's successive searches: a fork server per
    # search would cost a torch import each time. Lanes never share an executor, since a
    # search takes every event its executor reports.
    lanes = [LocalExecutor(workers=1, device=config.device) for _ in range(config.workers)]
    active: dict[int, tuple[_Cell, Any, float]] = {}
    total, started = len(todo), 0
    try:
        while todo or active:
            for lane in range(len(lanes)):
                if lane in active or not todo:
                    continue
                cell = todo.pop(0)
                started += 1
                label = f"{cell.task}/{cell.policy}/seed{cell.seed}"
                try:
                    if cell.mode == "new":
                        s = search(cell.task, config.search_config(cell.policy, cell.seed),
                                   run_dir=cell.run_dir, background=True, executor=lanes[lane],
                                   task_options=config.options_for(cell.task) or None)
                    else:
                        s = resume(cell.run_dir, budget=config.budget, background=True,
                                   executor=lanes[lane])
                except Exception as exc:  # one broken cell must not stop the grid
                    outcome["errors"].append(label)
                    log(f"[{started}/{total}] {label}: could not start: {exc}")
                    continue
                log(f"[{started}/{total}] {label}"
                    + (" (resumed)" if cell.mode == "resume" else ""))
                active[lane] = (cell, s, time.time())
            for lane, (cell, s, t0) in list(active.items()):
                if not s.done:
                    continue
                del active[lane]
                label = f"{cell.task}/{cell.policy}/seed{cell.seed}"
                try:
                    r = s.wait()
                except Exception as exc:
                    outcome["errors"].append(label)
                    log(f"  {label}: search failed: {type(exc).__name__}: {exc}")
                    continue
                outcome["ran" if cell.mode == "new" else "resumed"].append(label)
                best = r.best
                found = (f"best node {best.id}: val {_fmt(best.rmse('val'))}, test "
                         f"{_fmt(best.rmse('test'))}" if best else "no valid model")
                log(f"  {label}: {r.stop_reason}, {len(r.nodes)} nodes, {found} "
                    f"({time.time() - t0:.0f} s)")
            if active:
                time.sleep(0.2)
    except BaseException:
        for _, s, _ in active.values():  # leave every journal resumable
            try:
                s.stop(timeout=10.0)
            except Exception:
                pass
        raise
    finally:
        for ex in lanes:
            ex.shutdown()
    return outcome
