"""Helpers the exported cells call in a fresh kernel: recover a cell's ``Model`` source,
retrain it with the search's harness, plot its fit."""
from __future__ import annotations

import linecache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ExportError

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

    from ..tasks.base import Task


def model_source(model_class: type) -> str:
    """The source text of a candidate ``Model`` class defined in a notebook cell or file.

    IPython keeps each executed cell in ``linecache`` under the file name its code objects
    carry, so the whole cell (imports included) is recovered even though ``__main__`` has no
    file for :func:`inspect.getsource`.
    """
    for attr in vars(model_class).values():
        func = getattr(attr, "__func__", attr)
        code = getattr(func, "__code__", None)
        if code is None:
            continue
        lines = linecache.getlines(code.co_filename)
        if lines:
            return "".join(lines)
    import inspect

    try:
        return inspect.getsource(inspect.getmodule(model_class))  # type: ignore[arg-type]
    except (TypeError, OSError) as exc:
        raise ExportError(f"cannot find the source of {model_class.__name__}: {exc}") from None


def refit(model_class: type, task: "Task", *, weights: str | Path | None = None,
          device: str = "cpu", **train: Any) -> "torch.nn.Module":
    """Train ``model_class`` with the search's harness (same settings) and return it in eval
    mode. Used by exported cells when the run dir's weights are gone; the scores can differ
    slightly from the search's (thread scheduling), so they are printed again by the cell."""
    import tempfile

    from ..modeling.config import TrainConfig
    from ..modeling.harness import evaluate, load_trained

    source = model_source(model_class)
    known = {k: v for k, v in train.items() if k in TrainConfig.__dataclass_fields__}
    target = Path(weights) if weights is not None else Path(tempfile.mkdtemp(prefix="nimm_refit_")) / "model.pt"
    config = TrainConfig(device=device, save_weights=str(target), **known)
    result = evaluate(task, source, config)
    if not result.ok:
        raise ExportError(f"refit failed ({result.status.value}): {result.message}")
    return load_trained(task, source, str(target), device=device)


def plot_fit(model: "torch.nn.Module", task: "Task", split: str = "test", *,
             figure: "Figure | None" = None, max_series: int = 3, title: str = "") -> "Figure":
    """Plot ``model``'s predictions against the data of ``split``; returns the Figure.

    Trajectory tasks: the first ``max_series`` trajectories, one row per target (data as
    dots, the forecast from the context on as a line). Tabular tasks: predicted vs observed
    per target. Uses ``matplotlib.figure.Figure`` unless a figure is given (thread-safe,
    no pyplot state).
    """
    import numpy as np
    from matplotlib.figure import Figure

    from ..modeling.harness import predict, score_predictions

    fig = figure if figure is not None else Figure(figsize=(10, 5))
    pred = predict(model, task, split)
    data = task.split(split)
    y = np.asarray(data.targets, dtype=float)
    names = [f"{v.name} [{v.unit}]" if v.unit else v.name for v in task.targets]
    scores = score_predictions(task, split, pred)
    if str(getattr(task.kind, "value", task.kind)) == "trajectory":
        n = min(max_series, y.shape[0])
        S = y.shape[2]
        t = np.asarray(task.time, dtype=float) if task.time is not None else np.arange(y.shape[1], dtype=float)
        C = int(task.context)
        axes = fig.subplots(S, n, squeeze=False)
        for j in range(S):
            for i in range(n):
                ax = axes[j][i]
                ax.plot(t, y[i, :, j], ".", color="0.25", ms=3, label="data")
                ax.plot(t[C:], pred[i, :, j], "-", color="C1", lw=1.5, label="model")
                ax.axvline(t[C - 1] if C > 0 else t[0], color="0.7", lw=0.8, ls="--")
                if i == 0:
                    ax.set_ylabel(names[j])
                if j == 0:
                    ax.set_title(f"{split} #{i}", fontsize=9)
                if j == S - 1:
                    ax.set_xlabel("time")
        axes[0][0].legend(fontsize=8, loc="best")
    else:
        Y = y.shape[1]
        axes = fig.subplots(1, Y, squeeze=False)
        for j in range(Y):
            ax = axes[0][j]
            ok = np.isfinite(y[:, j])
            ax.scatter(y[ok, j], pred[ok, j], s=10, alpha=0.7, color="C0")
            lo = float(np.nanmin([y[ok, j].min(), pred[ok, j].min()])) if ok.any() else 0.0
            hi = float(np.nanmax([y[ok, j].max(), pred[ok, j].max()])) if ok.any() else 1.0
            ax.plot([lo, hi], [lo, hi], "--", color="0.5", lw=1)
            ax.set_xlabel(f"observed {names[j]}")
            ax.set_ylabel(f"predicted {names[j]}")
    head = f"{title}: " if title else ""
    fig.suptitle(f"{head}{task.name}, {split} split (RMSE {scores.rmse:.4g})", fontsize=10)
    try:
        fig.tight_layout()
    except Exception:  # tight_layout can fail on odd sizes; the plot is still fine
        pass
    return fig

