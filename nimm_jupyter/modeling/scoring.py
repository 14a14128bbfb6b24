"""Scoring: a task split as tensors, the normalised training loss, and the RMSE scores,
predictions and fitted-parameter report of a trained model.

Data become float32 tensors on the requested device; missing targets (NaN) are masked. For
trajectory tasks the target is steps C..T-1 of each trajectory (the candidate's rollout).

Fitted mechanistic parameters are ``model.mechanistic_parameters()`` when the candidate defines
it, otherwise every :class:`nimm_jupyter.blocks.Param` submodule by attribute path. Values are
reported as floats: a scalar under its name, a vector of at most :data:`MAX_VECTOR_PARAMS`
entries as ``name[i]`` per entry, a larger one as ``name.mean``.

One-step (teacher-forced) predictions of a trajectory task (:func:`forward_one_step`): step
``s`` (``s >= C``) is predicted from ALL the true steps ``0..s-1`` as context, i.e. the model's
own ``forward(y_context, u, t)`` on the trajectory cut after step ``s`` (context ``y[:, :s]``,
``u[:, :s+1]``, ``t[:s+1]``): the time origin and the first observed steps stay what the model
was trained with; only the context is longer than ``C`` (a candidate that cannot take that
gets a note and no one-step scores). One call per step, batched over samples: ``T-C`` calls
of one step each, about the cost of one more rollout. A job holds the true states of the
training split only; validation and test steps reach it one at a time, each after its
prediction (:func:`predict_step`, in :mod:`nimm_jupyter.execution.reveal`); the windows of
a windowed series' validation and test splits (:func:`windowed_splits`) reach it start by
start instead (:func:`window_stages`), and their one-step prediction is each window's first
forecast step (:func:`score_first_step`). Tabular tasks
have no rollout: their one-step RMSE *is* the plain RMSE, so it is not computed twice (the
``*_one_step`` fields stay None).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..blocks import Param, param_memo
from ..tasks.base import Split, Task, TaskKind
from .noise import bootstrap_rmse_se
from .result import SplitScores

__all__ = [
    "SplitData", "split_data", "sq_err_norm", "forward_chunks", "split_scores",
    "score_predictions", "predict", "mechanistic_parameters", "count_trainable",
    "MAX_VECTOR_PARAMS", "SPLITS", "HIDDEN_SPLITS", "without_targets", "prediction_shape",
    "predictions_file", "forward_one_step", "predict_step", "one_step_key", "score_one_step", "one_step_scores",
    "rollout", "windowed_splits", "window_stages", "score_first_step",
]

SPLITS = ("train", "val", "test")
# Splits whose targets never enter a process that runs candidate code (issue 15 item 1).
HIDDEN_SPLITS = ("val", "test")

MAX_VECTOR_PARAMS = 16


@dataclass
class SplitData:
    """One split as tensors: forward arguments, filled targets and the finite mask."""

    args: tuple[torch.Tensor, ...]
    per_sample: tuple[bool, ...]  # which args are indexed by sample (t is not)
    target: torch.Tensor  # NaN replaced by 0
    mask: torch.Tensor | None  # None when every target is finite
    count: float  # number of finite target entries

    @property
    def n(self) -> int:
        return int(self.target.shape[0])

    def take(self, idx: torch.Tensor) -> "SplitData":
        args = tuple(a[idx] if ps else a for a, ps in zip(self.args, self.per_sample))
        mask = None if self.mask is None else self.mask[idx]
        count = float(mask.sum().item()) if mask is not None else float(self.target[idx].numel())
        return SplitData(args, self.per_sample, self.target[idx], mask, count)


def split_data(task: Task, which: str, device: torch.device,
               dtype: torch.dtype = torch.float32) -> SplitData:
    """One split of ``task`` as tensors of ``dtype`` on ``device``."""
    split = task.split(which)
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    f32 = lambda a: torch.as_tensor(np.asarray(a, dtype=np_dtype), device=device)  # noqa: E731
    if task.kind is TaskKind.TRAJECTORY:
        y = f32(split.targets)
        C = int(task.context)
        T = y.shape[1]
        t = f32(task.time if task.time is not None else np.arange(T))
        args, per_sample = (y[:, :C], f32(split.inputs), t), (True, True, False)
        target = y[:, C:]
    else:
        args, per_sample = (f32(split.inputs),), (True,)
        target = f32(split.targets)
    finite = torch.isfinite(target)
    if bool(finite.all()):
        return SplitData(args, per_sample, target, None, float(target.numel()))
    return SplitData(args, per_sample, torch.where(finite, target, 0.0), finite, float(finite.sum()))


def sq_err_norm(pred: torch.Tensor, data: SplitData, inv_scale: torch.Tensor) -> torch.Tensor:
    """Mean squared normalised error over the finite targets; ``pred`` may carry a leading
    copies dimension, and then the result has one value per copy."""
    err = (pred - data.target) * inv_scale
    if data.mask is not None:
        err = torch.where(data.mask, err, 0.0)
    extra = pred.dim() - data.target.dim()
    dims = tuple(range(extra, pred.dim()))
    return err.pow(2).sum(dim=dims) / max(data.count, 1.0)



def _flatten_param(name: str, value: Any, out: dict[str, float]) -> None:
    t = torch.as_tensor(value.detach() if isinstance(value, torch.Tensor) else value,
                        dtype=torch.float64).cpu().flatten()
    if t.numel() == 1:
        out[name] = float(t[0])
    elif t.numel() <= MAX_VECTOR_PARAMS:
        for i, v in enumerate(t.tolist()):
            out[f"{name}[{i}]"] = float(v)
    elif t.numel():
        out[f"{name}.mean"] = float(t.mean())


@torch.no_grad()
def mechanistic_parameters(model: nn.Module) -> dict[str, float]:
    """The fitted mechanistic parameters of ``model`` (see the module docstring for the rules)."""
    out: dict[str, float] = {}
    custom = getattr(model, "mechanistic_parameters", None)
    if callable(custom):
        for name, value in dict(custom()).items():
            _flatten_param(str(name), value, out)
        return out
    for name, module in model.named_modules():
        if isinstance(module, Param) and name:
            _flatten_param(name, module(), out)
    return out


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def forward_chunks(model: nn.Module, data: SplitData, chunk: int = 4096) -> torch.Tensor:
    outs = []
    for start in range(0, max(data.n, 1), chunk):
        idx = torch.arange(start, min(start + chunk, data.n), device=data.target.device)
        part = data.take(idx) if data.n > chunk else data
        with param_memo():
            outs.append(model(*part.args).to(data.target.dtype))
        if data.n <= chunk:
            break
    return torch.cat(outs, dim=0)


def one_step_key(split: str) -> str:
    """The predictions key of ``split``'s one-step predictions (next to ``split`` itself)."""
    return f"{split}_one_step"


def _true_states(data: SplitData) -> torch.Tensor:
    """Every observed step of a trajectory split, ``(N, T, S)``, missing entries NaN."""
    target = data.target if data.mask is None else torch.where(data.mask, data.target, float("nan"))
    return torch.cat([data.args[0].to(target.dtype), target], dim=1)


def forward_one_step(model: nn.Module, data: SplitData) -> torch.Tensor:
    """Teacher-forced one-step predictions ``(N, T-C, S)`` of a trajectory split: see the
    module docstring. A window with a missing true state gives NaN there (the driver does
    not score such steps, :func:`score_one_step`)."""
    C = int(data.args[0].shape[1])
    y = _true_states(data)
    return torch.cat([predict_step(model, y[:, :s], data.args[1], data.args[2])
                      for s in range(C, y.shape[1])], dim=1)


def predict_step(model: nn.Module, y_known: torch.Tensor, u: torch.Tensor,
                 t: torch.Tensor) -> torch.Tensor:
    """The model's prediction ``(N, 1, S)`` of step ``s = y_known.shape[1]`` from the true
    steps ``0..s-1`` (``y_known``), i.e. its forward on the trajectory cut after step ``s``
    (``u[:, :s+1]``, ``t[:s+1]``): one step of :func:`forward_one_step`, and what a job
    answers in the sequential reveal (:mod:`nimm_jupyter.execution.reveal`)."""
    s = int(y_known.shape[1])
    return rollout(model, y_known, u[:, :s + 1], t[:s + 1])


def rollout(model: nn.Module, y_context: torch.Tensor, u: torch.Tensor,
            t: torch.Tensor) -> torch.Tensor:
    """The model's forecast ``(N, T-c, S)`` from contexts ``(N, c, S)`` (the same forward
    as :func:`predict`, on tensors the caller cut)."""
    return forward_chunks(model, SplitData((y_context, u, t), (True, True, False),
                                           y_context[:, :1], None, 0.0))


def one_step_scores(pred: torch.Tensor, data: SplitData, scale: torch.Tensor,
                    names: list[str]) -> dict[str, Any]:
    """The ``*_one_step`` fields of :class:`SplitScores` for one-step ``pred`` on a
    trajectory split, over the steps whose target and every earlier true state are observed."""
    observed = torch.isfinite(_true_states(data))
    C = int(data.args[0].shape[1])
    # a missing true state poisons the context of every later step of its trajectory
    context_ok = torch.cumprod(observed.all(dim=2).to(torch.int8), dim=1).bool()
    mask = observed[:, C:] & context_ok[:, C - 1:-1, None]
    scored = SplitData(data.args, data.per_sample, data.target, mask, float(mask.sum()))
    s = split_scores(pred, scored, scale, names)
    return {"rmse_one_step": s.rmse, "rmse_norm_one_step": s.rmse_norm,
            "per_target_one_step": s.per_target}


def score_first_step(task: Task, split: str, pred: np.ndarray, scores: SplitScores) -> SplitScores:
    """``scores`` with the one-step fields of a windowed split (:func:`windowed_splits`):
    each window's first forecast step of its rollout ``pred`` (predicted from the true
    context steps before it, so it *is* that step's one-step prediction)."""
    data = split_data(task, split, torch.device("cpu"), torch.float64)
    first = SplitData(data.args, data.per_sample, data.target[:, :1],
                      None if data.mask is None else data.mask[:, :1], 0.0)
    p = torch.as_tensor(np.asarray(pred, dtype=np.float64))[:, :1]
    fields = one_step_scores(p, first, task.spec().target_scale, task.target_names)
    return dataclasses.replace(scores, **fields)


def score_one_step(task: Task, split: str, pred: np.ndarray, scores: SplitScores) -> SplitScores:
    """``scores`` with the one-step fields of ``pred`` (layout as :func:`predict`) on ``split``."""
    data = split_data(task, split, torch.device("cpu"), torch.float64)
    p = torch.as_tensor(np.asarray(pred, dtype=np.float64))
    if tuple(p.shape) != tuple(data.target.shape):
        raise ValueError(f"one-step predictions have shape {tuple(p.shape)}; "
                         f"expected {tuple(data.target.shape)}")
    fields = one_step_scores(p, data, task.spec().target_scale, task.target_names)
    return dataclasses.replace(scores, **fields)


def split_scores(pred: torch.Tensor, data: SplitData, scale: torch.Tensor, names: list[str],
                 input_names: list[str] | None = None) -> SplitScores:
    """RMSE of ``pred`` on ``data``; with ``input_names`` also the error by input regime."""
    err = pred.double() - data.target.double()
    if data.mask is not None:
        err = torch.where(data.mask, err, 0.0)
        counts = data.mask.reshape(-1, data.mask.shape[-1]).sum(0).double()
    else:
        counts = torch.full((err.shape[-1],), float(err[..., 0].numel()), dtype=torch.float64,
                            device=err.device)
    sq = err.pow(2).reshape(-1, err.shape[-1]).sum(0)
    total = float(counts.sum())
    per = (sq / counts.clamp_min(1)).sqrt()
    rmse = math.sqrt(float(sq.sum()) / total) if total else float("nan")
    norm = math.sqrt(float((sq / scale.double().pow(2)).sum()) / total) if total else float("nan")
    return SplitScores(rmse=rmse, rmse_norm=norm, rmse_norm_se=_norm_se(err, data, scale),
                       per_target={n: float(v) for n, v in zip(names, per.tolist())},
                       by_horizon=_by_horizon(err, data, scale) if err.dim() == 3 else None,
                       by_regime=_by_regime(err, data, scale, input_names) if input_names else None)


def _unit_sums(err: torch.Tensor, data: SplitData, scale: torch.Tensor
               ) -> tuple[np.ndarray, np.ndarray]:
    """Per unit (first axis: trajectory, window or row) the sum of squared normalised errors
    and the number of scored entries: what the standard error and the regimes resample."""
    z = (err / scale.double()).pow(2).reshape(err.shape[0], -1)
    counts = (data.mask.reshape(err.shape[0], -1).sum(1).double() if data.mask is not None
              else torch.full((err.shape[0],), float(z.shape[1]), dtype=torch.float64))
    return z.sum(1).cpu().numpy(), counts.cpu().numpy()


def _norm_se(err: torch.Tensor, data: SplitData, scale: torch.Tensor) -> float | None:
    """Bootstrap standard error of the normalised RMSE over the split's units (first axis)."""
    return bootstrap_rmse_se(*_unit_sums(err, data, scale))


REGIME_INPUTS = 4  # at most this many inputs get regimes in ``SplitScores.by_regime``


def _by_regime(err: torch.Tensor, data: SplitData, scale: torch.Tensor,
               input_names: list[str]) -> dict[str, float] | None:
    """Normalised RMSE by input regime: for each of the first :data:`REGIME_INPUTS` inputs
    that vary between units (trajectories: the input's total over the trajectory; rows: its
    value), the units with none of it (when a third or more have none) and the lower and
    upper half of the rest, else its lower, middle and upper third. Keys name the input and
    the range, e.g. ``"chemo_dose total 0"`` or ``"dose 2.5-10 (n=12)"``."""
    sq, n_obs = _unit_sums(err, data, scale)
    u = data.args[1] if err.dim() == 3 else data.args[0]
    values = (u.double().sum(1) if err.dim() == 3 else u.double()).cpu().numpy()
    label = " total" if err.dim() == 3 else ""
    out: dict[str, float] = {}
    used = 0
    for j, name in enumerate(input_names[:values.shape[1]]):
        v = values[:, j]
        if used >= REGIME_INPUTS or not np.isfinite(v).all() or np.ptp(v) == 0:
            continue
        used += 1
        none = v == 0
        groups: list[tuple[str, np.ndarray]] = []
        rest = v
        if none.mean() >= 1 / 3:
            groups.append((f"{name}{label} 0", none))
            rest = v[~none]
        cuts = np.quantile(rest, [0.5] if len(groups) else [1 / 3, 2 / 3])
        edges = [rest.min(), *cuts, rest.max()]
        for k in range(len(edges) - 1):
            lo, hi = edges[k], edges[k + 1]
            sel = (~none if groups else np.ones_like(none)) & (v >= lo) & (
                (v <= hi) if k == len(edges) - 2 else (v < hi))
            groups.append((f"{name}{label} {lo:.3g}-{hi:.3g}", sel))
        for key, sel in groups:
            n = float(n_obs[sel].sum())
            if sel.sum() >= 2 and n:
                out[f"{key} (n={int(sel.sum())})"] = math.sqrt(float(sq[sel].sum()) / n)
    return out or None


HORIZON_BUCKETS = 6  # at most this many forecast-step ranges in ``SplitScores.by_horizon``


def _by_horizon(err: torch.Tensor, data: SplitData, scale: torch.Tensor) -> dict[str, float]:
    """Normalised RMSE of a rollout over consecutive ranges of forecast steps (step 1 is the
    first forecast step), e.g. ``{"1-10": 0.01, "11-20": 0.03}``: where a model drifts."""
    z = (err / scale.double()).pow(2)  # (N, H, S); masked entries are 0 already
    finite = data.mask if data.mask is not None else torch.ones_like(z, dtype=torch.bool)
    out: dict[str, float] = {}
    for part in np.array_split(np.arange(z.shape[1]), min(HORIZON_BUCKETS, z.shape[1])):
        n = float(finite[:, part].sum())
        if n:
            key = f"{part[0] + 1}-{part[-1] + 1}" if len(part) > 1 else f"{part[0] + 1}"
            out[key] = math.sqrt(float(z[:, part].sum()) / n)
    return out


def score_predictions(task: Task, split: str, pred: np.ndarray) -> SplitScores:
    """RMSE of ``pred`` (original units, layout as :func:`predict`) on one split."""
    data = split_data(task, split, torch.device("cpu"))
    p = torch.as_tensor(np.asarray(pred, dtype=np.float64))
    if tuple(p.shape) != tuple(data.target.shape):
        raise ValueError(f"predictions have shape {tuple(p.shape)}; expected {tuple(data.target.shape)}")
    scale = task.spec().target_scale
    return split_scores(p, data, scale, task.target_names, task.input_names)


@torch.no_grad()
def predict(model: nn.Module, task: Task, split: str) -> np.ndarray:
    """Predictions of ``model`` on ``split`` in original units: trajectory tasks give the
    forecast of steps C..T-1 ``(N, T-C, S)``, tabular tasks ``(N, Y)``."""
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    model.eval()
    data = split_data(task, split, device)
    return forward_chunks(model, data).double().cpu().numpy()



def windowed_splits(task: Task) -> tuple[str, ...]:
    """The hidden splits of a trajectory ``task`` whose samples are windows of longer series
    (``Split.window_start``): their windows overlap, so the job gets their contexts in time
    order, window start by window start (:mod:`nimm_jupyter.execution.reveal`)."""
    if task.kind is not TaskKind.TRAJECTORY:
        return ()
    return tuple(s for s in HIDDEN_SPLITS
                 if task.split(s).window_start is not None and len(task.split(s)))


def window_stages(task: Task) -> list[tuple[int, dict[str, np.ndarray]]]:
    """``(start, {split: sample indices})`` for every window start step of the
    :func:`windowed_splits`, in time order (all series and splits of one start together).
    Every target of a window lies at or after its start + C, so the contexts of the windows
    of one start hold no target of a window that starts at or after it."""
    starts: dict[int, dict[str, np.ndarray]] = {}
    for s in windowed_splits(task):
        ws = np.asarray(task.split(s).window_start, dtype=np.int64)
        for a in np.unique(ws):
            starts.setdefault(int(a), {})[s] = np.nonzero(ws == a)[0]
    return sorted(starts.items())


def without_targets(task: Task, splits: tuple[str, ...] = HIDDEN_SPLITS) -> Task:
    """A copy of ``task`` whose ``splits`` and scenarios hold no targets the candidate must
    predict: NaN there (tabular: every target; trajectory: steps C.. of each trajectory, since
    the first C steps are the context the model is given as input). The contexts of the
    windows of :func:`windowed_splits` are NaN too, except those of the windows that start
    first (which hold no target of any hidden window): the others hold earlier windows'
    targets and reach the job only through the window reveal. Inputs, the training split
    and everything :meth:`Task.spec` reads are unchanged, so a job trains exactly as before."""
    stages = window_stages(task)
    first = stages[0][0] if stages else None

    def hide(split: Split, windowed: bool = False) -> Split:
        targets = np.array(split.targets, dtype=np.float64, copy=True)
        if task.kind is TaskKind.TRAJECTORY:
            targets[:, int(task.context):] = np.nan
            if windowed and first is not None:
                targets[np.asarray(split.window_start) != first] = np.nan
        else:
            targets[...] = np.nan
        return dataclasses.replace(split, targets=targets)

    windowed = windowed_splits(task)
    hidden: dict[str, Any] = {which: hide(task.split(which), which in windowed) for which in splits}
    hidden["scenarios"] = {name: dataclasses.replace(sc, split=hide(sc.split))
                           for name, sc in task.scenarios.items()}
    return dataclasses.replace(task, **hidden)


def prediction_shape(task: Task, split: str) -> tuple[int, ...]:
    """The layout :func:`predict` returns for ``split``: ``(N, T-C, S)`` or ``(N, Y)``."""
    shape = tuple(int(n) for n in np.shape(task.split(split).targets))
    if task.kind is TaskKind.TRAJECTORY:
        return (shape[0], shape[1] - int(task.context), shape[2])
    return shape


def predictions_file(weights: str | Path) -> Path:
    """Where the driver keeps the val/test predictions it scored, next to a node's weights:
    what the end-of-search plot draws, without running the candidate again."""
    return Path(weights).with_suffix(".pred.npz")
