"""Two plots per task: best-so-far validation RMSE and the spread of test RMSE over seeds.
matplotlib's Agg canvas is used without touching pyplot."""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..modeling.references import REFERENCES
from .config import BenchConfig
from .files import num


def _figure(width: float = 6.4, height: float = 4.0) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _log_scale_if_wide(ax: Any, values: Iterable[float]) -> None:
    v = [x for x in values if math.isfinite(x) and x > 0]
    if v and max(v) / min(v) > 30:
        ax.set_yscale("log")


def plots(out: Path, task: str, config: BenchConfig, curves: dict[tuple, list[float]],
           rows: list[dict[str, Any]], refs: list[dict[str, str]]) -> list[Path]:
    paths = [out / f"best_so_far_{task}.png", out / f"spread_{task}.png"]
    # best-so-far: mean over seeds at each evaluation; a finished seed keeps its last value
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    seen: list[float] = []
    for policy in config.policies:
        runs = [curves.get((task, policy, s), []) for s in config.seed_list()]
        length = max((len(c) for c in runs), default=0)
        if not length:
            continue
        grid = np.full((len(runs), length), np.nan)
        for i, c in enumerate(runs):
            if c:
                grid[i, :len(c)] = c
                grid[i, len(c):] = c[-1]
        with warnings.catch_warnings():  # an evaluation where no seed has a model yet
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(grid, axis=0)
        x = np.arange(1, length + 1)
        ax.plot(x, mean, marker="o", markersize=3, label=policy)
        seen += [float(v) for v in mean if math.isfinite(v)]
    _log_scale_if_wide(ax, seen)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best-so-far validation RMSE (mean over seeds)")
    ax.set_title(f"{task}: best-so-far validation RMSE")
    if seen:
        ax.legend()
    fig.tight_layout()
    fig.savefig(paths[0])
    # spread: final test RMSE per seed (points) and the mean (bar), references included
    fig = _figure(max(6.4, 0.9 * (len(config.policies) + len(config.references)) + 1.5))
    ax = fig.add_subplot(1, 1, 1)
    labels, values = [], []
    for which in config.references:
        v = [num(r["test_rmse"]) for r in refs
             if r["task"] == task and r["reference"] == which and r["status"] == "ok"]
        if any(r["task"] == task and r["reference"] == which for r in refs):
            labels.append(which)
            values.append(v)
    for policy in config.policies:
        labels.append(policy)
        values.append([num(r.get("best_test_rmse")) for r in rows
                       if r["task"] == task and r["policy"] == policy])
    allv: list[float] = []
    for i, (label, v) in enumerate(zip(labels, values)):
        v = [x for x in v if math.isfinite(x)]
        allv += v
        color = "0.55" if label in REFERENCES else f"C{i % 10}"
        if v:
            ax.scatter([i] * len(v), v, color=color, zorder=3, s=22)
            ax.hlines(float(np.mean(v)), i - 0.3, i + 0.3, color=color, linewidth=2.5)
    _log_scale_if_wide(ax, allv)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=20)
    ax.set_ylabel("final test RMSE (original units)")
    ax.set_title(f"{task}: test RMSE per seed (points) and mean (bar)")
    fig.tight_layout()
    fig.savefig(paths[1])
    return paths
