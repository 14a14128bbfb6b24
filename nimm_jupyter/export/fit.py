"""Helpers the exported cells call in a fresh kernel: recover a cell's ``Model`` source,
retrain it with the search's harness, plot its fit."""
from __future__ import annotations

import linecache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ExportError

if TYPE_CHECKING:
    import numpy as np
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


def _step(t: Any) -> float:
    return float(t[1] - t[0]) if len(t) > 1 else 1.0


def _time_axis(task: "Task", split: str) -> tuple[Any, str]:
    """Each sample's start on the data's own time axis (None: relative time) and the label."""
    opts = task.options or {}
    starts = (opts.get("t_start") or {}).get(split)
    column = opts.get("time_column") or "time"
    if opts.get("time_origin"):
        return starts, f"days since {opts['time_origin']}"
    unit = opts.get("time_unit") or ""
    label = f"{column} [{unit}]" if unit else column
    return starts, label if starts is not None else f"{label} (from the sample's start)"


def plot_fit(model: "torch.nn.Module | None", task: "Task", split: str = "test", *,
             figure: "Figure | None" = None, max_series: int = 3, title: str = "",
             predictions: "np.ndarray | None" = None) -> "Figure":
    """Plot ``model``'s predictions against the data of ``split``; returns the Figure.
    ``predictions`` (layout as ``predict``) are plotted instead of running ``model``.

    Trajectory tasks: the first ``max_series`` samples, one row per target, on the data's
    own time axis when the task records it: the observed context, the held-out points of
    the forecast window (shaded) and the model's forecast (points for a one-step model). Tabular tasks: predicted vs observed
    per target. Uses ``matplotlib.figure.Figure`` unless a figure is given (thread-safe,
    no pyplot state).
    """
    import numpy as np
    from matplotlib.figure import Figure

    from ..modeling.harness import predict, score_predictions

    fig = figure if figure is not None else Figure(figsize=(10, 5))
    pred = predictions if predictions is not None else predict(model, task, split)
    data = task.split(split)
    y = np.asarray(data.targets, dtype=float)
    names = [f"{v.name} [{v.unit}]" if v.unit else v.name for v in task.targets]
    scores = score_predictions(task, split, pred)
    if str(getattr(task.kind, "value", task.kind)) == "trajectory":
        n = min(max_series, y.shape[0])
        S = y.shape[2]
        t = np.asarray(task.time, dtype=float) if task.time is not None else np.arange(y.shape[1], dtype=float)
        C = int(task.context)
        starts, xlabel = _time_axis(task, split)
        one_step = y.shape[1] - C == 1
        axes = fig.subplots(S, n, squeeze=False)
        for j in range(S):
            for i in range(n):
                ax = axes[j][i]
                x = t + (starts[i] if starts is not None else 0.0)
                # the forecast steps are the held-out window this split scores
                half = 0.5 * _step(t)
                ax.axvspan(x[C] - half, x[-1] + half, color="C1", alpha=0.08, lw=0,
                           label=f"{split} forecast window")
                ax.plot(x[:C], y[i, :C, j], ".", color="0.55", ms=4, label="observed context")
                ax.plot(x[C:], y[i, C:, j], ".", color="0.1", ms=5, label="held-out data")
                # a one-step model is a set of points, not a curve
                ax.plot(x[C:], pred[i, :, j], "o" if one_step else "-o", color="C1",
                        lw=1.5, ms=4 if one_step else 2.5, label="model")
                if i == 0:
                    ax.set_ylabel(names[j])
                if j == 0:
                    ax.set_title(f"{split} #{i}", fontsize=9)
                if j == S - 1:
                    ax.set_xlabel(xlabel)
        axes[0][0].legend(fontsize=7, loc="best")
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

