"""Training: fit K copies of one candidate, with the best-by-validation weights kept.

* the loss is the MSE on the normalised scale (each target divided by its training std);
  for trajectory tasks it is the error of the candidate's full rollout of steps C..T-1;
* Adam (lr ``config.lr``; steps of ``Real`` parameters scaled to their initial magnitude)
  with per-copy gradient-norm clipping, a reduce-on-plateau schedule, validation every
  ``config.val_every`` epochs, early stopping on the validation loss (``config.patience``
  epochs without progress, and only once the rate has been cut; at most
  ``config.max_epochs``) and the best-by-validation weights kept; full batch unless
  ``config.batch_size`` is set;
* a non-finite loss restarts from the best weights with half the learning rate, at most
  :data:`MAX_RECOVERIES` times, after which that copy is declared diverged;
* ``config.restarts = K > 1`` trains K different copies (one, with a note, when the model
  builds the same weights under every seed and has no mechanistic starting value to vary)
  *in one batched computation* (``torch.func.stack_module_state`` + ``functional_call`` +
  ``vmap``, one Adam over the stacked parameters) and keeps the best by validation. Models that cannot
  be vmapped (``.item()``, data-dependent branches, in-place writes) fall back to training
  the copies one after another; the result notes say which path ran.

Copy ``k`` is initialised under seed ``config.seed + k`` and, for ``k > 0``, its trainable
mechanistic starting values are jittered (:func:`jitter_start_`), so that a fit stuck in a local
minimum from the given start can be rescued; copy 0 keeps the given starting values and is the
model a single run trains.
"""
from __future__ import annotations

import math
import random
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from ..blocks import Bounded, Param, Positive, Real
from .config import TrainConfig
from .contract import _short
from .engines import SingleEngine, StackedAdam, VmapEngine, clip_grads_, step_scales
from .scoring import SplitData

__all__ = [
    "Fit", "Progress", "ProgressFn", "fit_restarts", "seed_all", "MAX_RECOVERIES",
    "PROGRESS_INTERVAL", "DIVERGED_HINT", "build_copy", "jitter_start_", "JITTER_FACTOR",
    "BOUNDED_MARGIN",
]

MAX_RECOVERIES = 3  # NaN recoveries per copy before it is declared diverged
CLIP_NORM = 1.0
PROGRESS_INTERVAL = 0.2  # seconds between progress callbacks
_REL_IMPROVEMENT = 1e-4  # what counts as progress for patience and the schedule
_MIN_LR_FACTOR = 1e-3
JITTER_FACTOR = 2.0  # restarts: Positive and Real starting values within this factor (log-uniform)
BOUNDED_MARGIN = 0.05  # restarts: Bounded starting values uniform in the inner 90% of the range
DIVERGED_HINT = ("bound rates with Positive/Bounded, clamp states, or scale the neural "
                 "correction down")

ProgressFn = Callable[[dict], None]


# -- the shared training loop ----------------------------------------------------------------
@dataclass
class Fit:
    """Per-copy outcome of training (indexed by copy id, ``0 .. K-1``)."""

    best_val: list[float]  # normalised val MSE of the best weights (inf when never finite)
    best_epoch: list[int]
    curves: list[list[dict]]
    epochs: int
    failures: list[str | None]  # per copy divergence message
    stopped_by_time: bool
    module: Callable[[int], nn.Module]  # copy id -> module holding its best weights
    path: str
    note: str = ""
    patience_hit: list[bool] = field(default_factory=list)  # per copy: early stopping ended it

    def best_index(self) -> int | None:
        finite = [(v, k) for k, v in enumerate(self.best_val)
                  if math.isfinite(v) and self.failures[k] is None]
        return min(finite)[1] if finite else None


def _batches(data: SplitData, batch_size: int | None, gen: torch.Generator) -> Iterator[SplitData]:
    if not batch_size or batch_size >= data.n:
        yield data
        return
    order = torch.randperm(data.n, generator=gen).to(data.target.device)
    for start in range(0, data.n, batch_size):
        yield data.take(order[start:start + batch_size])


class Progress:
    def __init__(self, fn: ProgressFn | None):
        self.fn = fn
        self.last = -math.inf

    def __call__(self, epoch: int, train: float, val: float, final: bool = False) -> None:
        if self.fn is None:
            return
        now = time.perf_counter()
        if not final and now - self.last < PROGRESS_INTERVAL:
            return
        self.last = now
        try:
            self.fn({"epoch": epoch, "train": train, "val": val})
        except Exception as exc:  # a broken observer must not fail the evaluation
            warnings.warn(f"progress callback failed and was disabled: {exc!r}")
            self.fn = None


def _sqrt(v: float) -> float:
    return math.sqrt(v) if v >= 0 else v


def _train(engine: Any, train: SplitData, val: SplitData, config: TrainConfig, deadline: float | None,
           progress: Progress, gen: torch.Generator) -> Fit:
    """Train ``engine``'s copies; per-copy state is kept by copy id, tensors by position.

    A copy that diverged for good is dropped from the batched computation at once (its best
    weights are kept), so it costs nothing afterwards.
    """
    K = engine.K
    device = train.target.device
    ids = list(range(K))  # copy id at each position of the stacked tensors
    opt = StackedAdam(engine.params, torch.full((K,), float(config.lr), device=device),
                      scales=step_scales(engine.base, engine.names))
    lr_now = [float(config.lr)] * K  # host copy by position: the schedule needs no device sync
    best = [p.detach().clone() for p in engine.params]
    best_val = [math.inf] * K
    best_epoch = [0] * K
    patience_ref = [math.inf] * K
    since = [0] * K  # epochs without progress (patience)
    since_lr = [0] * K  # epochs without progress or lr cut (schedule)
    recoveries = [0] * K
    failures: list[str | None] = [None] * K
    curves: list[list[dict]] = [[] for _ in range(K)]
    weights: dict[int, list[torch.Tensor]] = {}  # best weights of copies no longer trained
    plateau = max(5, config.patience // 2)
    min_lr = config.lr * _MIN_LR_FACTOR
    stopped_by_time = False

    def mask_of(positions: list[int]) -> torch.Tensor:
        mask = torch.zeros(len(ids), dtype=torch.bool, device=device)
        mask[positions] = True
        return mask

    def view(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return mask.reshape((-1,) + (1,) * (like.dim() - 1))

    @torch.no_grad()
    def keep_best(positions: list[int]) -> None:
        mask = mask_of(positions)
        for b, p in zip(best, engine.params):
            b.copy_(torch.where(view(mask, p), p, b))

    @torch.no_grad()
    def restore(positions: list[int]) -> None:
        mask = mask_of(positions)
        for b, p in zip(best, engine.params):
            p.copy_(torch.where(view(mask, p), b, p))
        opt.reset(mask)

    def keep_only(positions: list[int]) -> None:
        nonlocal best, ids, lr_now
        for pos in range(len(ids)):
            if pos not in positions:
                weights[ids[pos]] = [b[pos].clone() for b in best]
        idx = torch.tensor(positions, device=device)
        engine.keep(idx)
        opt.keep(idx, engine.params)
        best = [b[idx].clone() for b in best]
        ids = [ids[p] for p in positions]
        lr_now = [lr_now[p] for p in positions]

    # Epoch 0: the initial weights are the first candidate for "best".
    for g, v in zip(ids, engine.eval_loss(val).tolist()):
        if math.isfinite(v):
            best_val[g] = patience_ref[g] = v

    epoch = last_val = 0
    for epoch in range(1, config.max_epochs + 1):
        n = len(ids)
        live = torch.tensor([failures[g] is None for g in ids], device=device)
        total = torch.zeros(n, device=device)
        bad = torch.zeros(n, dtype=torch.bool, device=device)
        n_batches = 0
        for batch in _batches(train, config.batch_size, gen):
            loss = engine.loss(batch)
            grads = engine.grads(loss)
            norms = clip_grads_(grads, CLIP_NORM)
            finite = torch.isfinite(loss) & torch.isfinite(norms)
            bad |= ~finite
            opt.step(grads, live & finite)
            total += loss.detach()
            n_batches += 1
        # validating is a full forward of the val split: every val_every epochs is enough
        validate = epoch % config.val_every == 0 or epoch == config.max_epochs
        val_list = engine.eval_loss(val).tolist() if validate else [0.0] * n
        elapsed, last_val = (epoch - last_val, epoch) if validate else (0, last_val)
        train_list = (total / n_batches).tolist()
        bad_list = bad.tolist()

        improved, to_restore = [], []
        for pos, g in enumerate(ids):
            if failures[g] is not None:
                continue
            tr, vl = train_list[pos], val_list[pos]
            if validate:
                curves[g].append({"epoch": epoch, "train": _sqrt(tr), "val": _sqrt(vl)})
            if bad_list[pos] or not math.isfinite(vl):
                what = "training loss" if bad_list[pos] else "validation loss"
                recoveries[g] += 1
                if recoveries[g] > MAX_RECOVERIES or not math.isfinite(best_val[g]):
                    extra = (f"; still non-finite after {MAX_RECOVERIES} restarts from the best "
                             "weights with halved learning rate") if math.isfinite(best_val[g]) \
                        else " (no finite loss since the initial parameters)"
                    failures[g] = f"{what} became NaN/inf at epoch {epoch}{extra}; {DIVERGED_HINT}"
                else:
                    to_restore.append(pos)
                    lr_now[pos] *= 0.5
                    opt.lr[pos] = lr_now[pos]
                continue
            if not validate:
                continue
            if vl < best_val[g]:
                best_val[g], best_epoch[g] = vl, epoch
                improved.append(pos)
            if vl < patience_ref[g] * (1 - _REL_IMPROVEMENT):
                patience_ref[g] = vl
                since[g] = since_lr[g] = 0
            else:
                since[g] += elapsed
                since_lr[g] += elapsed
                if since_lr[g] >= plateau and lr_now[pos] > min_lr:
                    lr_now[pos] = max(lr_now[pos] * 0.5, min_lr)
                    opt.lr[pos] = lr_now[pos]
                    since_lr[g] = 0
        if improved:
            keep_best(improved)
        if to_restore:
            restore(to_restore)

        alive = [pos for pos, g in enumerate(ids) if failures[g] is None]
        if alive and validate:
            pos = min(alive, key=lambda q: val_list[q] if math.isfinite(val_list[q]) else math.inf)
            progress(epoch, curves[ids[pos]][-1]["train"], curves[ids[pos]][-1]["val"])
        # early stopping needs both: no progress for `patience` epochs, and a learning rate the
        # schedule has already cut (a run that only needed a smaller step is not stopped)
        if not alive or all(since[ids[pos]] >= config.patience and lr_now[pos] < config.lr
                            for pos in alive):
            break
        if deadline is not None and time.perf_counter() >= deadline:
            stopped_by_time = epoch < config.max_epochs
            break
        if len(alive) < len(ids):
            keep_only(alive)

    for pos, g in enumerate(ids):
        weights[g] = [b[pos] for b in best]
    return Fit(best_val, best_epoch, curves, epoch, failures, stopped_by_time,
               lambda g: engine.module(weights[g], g), engine.path,
               patience_hit=[since[g] >= config.patience for g in range(K)])



def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _build(model_class: type, spec: Any, device: torch.device, seed: int,
           dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    model = model_class(spec).to(device)
    # float32 is the candidate's own business (it may keep float64 pieces); float64 is asked
    return model if dtype == torch.float32 else model.to(dtype)


def _jitterable(model: nn.Module) -> list[Param]:
    """The trainable mechanistic parameters whose starting value a restart can vary (a ``Real``
    at exactly 0 has no scale to be relative to, so it is left alone)."""
    return [m for m in model.modules()
            if isinstance(m, (Positive, Bounded, Real)) and m.raw.requires_grad
            and (not isinstance(m, Real) or bool(m.raw.detach().ne(0).any()))]


@torch.no_grad()
def jitter_start_(model: nn.Module, gen: torch.Generator) -> int:
    """Draw new starting values for ``model``'s trainable mechanistic parameters, in place;
    returns how many parameters were changed.

    ``Positive`` and ``Real`` values are multiplied by a log-uniform factor in
    ``[1/JITTER_FACTOR, JITTER_FACTOR]`` (a ``Real`` keeps its sign; one at 0 stays 0), a
    ``Bounded`` value is drawn uniformly from the inner ``1 - 2 * BOUNDED_MARGIN`` of its range
    (its bounds say where it may be, its start is only a guess). Each element is drawn on its
    own; frozen parameters (``requires_grad`` off) keep their values."""
    params = _jitterable(model)
    log_f = math.log(JITTER_FACTOR)
    for m in params:
        raw = m.raw
        u = torch.rand(raw.shape, generator=gen, dtype=torch.float64).to(raw.device)
        if isinstance(m, Bounded):
            p = BOUNDED_MARGIN + (1 - 2 * BOUNDED_MARGIN) * u
            new = torch.log(p) - torch.log1p(-p)
        elif isinstance(m, Positive):  # stored as log(value): a shift is a factor
            new = raw.double() + (2 * u - 1) * log_f
        else:
            new = raw.double() * torch.exp((2 * u - 1) * log_f)
        raw.copy_(new.to(raw.dtype))
    return len(params)


def build_copy(model_class: type, spec: Any, device: torch.device, seed: int, k: int,
               dtype: torch.dtype = torch.float32) -> nn.Module:
    """Copy ``k`` of a restart run as it starts training: built under seed ``seed + k``, with
    its mechanistic starting values jittered unless ``k == 0`` (copy 0 is the single run)."""
    model = _build(model_class, spec, device, seed + k, dtype)
    if k:
        jitter_start_(model, torch.Generator().manual_seed(seed + k))
    return model



def _same_for_every_seed(model_class: type, spec: Any, device: torch.device, seed: int,
                         first: nn.Module, dtype: torch.dtype) -> bool:
    """Whether ``model_class`` builds the same weights under another seed and has no dropout:
    then restarts would train identical copies."""
    if any(isinstance(m, nn.modules.dropout._DropoutNd) for m in first.modules()):
        return False
    other = _build(model_class, spec, device, seed + 1, dtype)
    a, b = first.state_dict(), other.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def fit_restarts(model_class: type, spec: Any, train: SplitData, val: SplitData, inv_scale: torch.Tensor,
                 config: TrainConfig, device: torch.device, deadline: float | None,
                 progress: Progress) -> Fit:
    """Train ``config.restarts`` copies (one when they could not differ: no random
    initialisation and no mechanistic starting value to jitter)."""
    K = int(config.restarts)
    dtype = getattr(torch, config.dtype)
    gen = torch.Generator().manual_seed(int(config.seed))
    first = build_copy(model_class, spec, device, config.seed, 0, dtype)
    skipped = K > 1 and not _jitterable(first) and _same_for_every_seed(
        model_class, spec, device, config.seed, first, dtype)
    if K == 1 or skipped:
        fit = _train(SingleEngine(first, inv_scale), train, val, config, deadline, progress, gen)
        if skipped:
            fit.note = (f"restarts: {K} asked, 1 trained: the model builds the same weights "
                        "under every seed and has no mechanistic starting value to vary "
                        "(Positive, Bounded or nonzero Real), so every copy would be identical")
        return fit

    vmap_error = ""
    models = [first] + [build_copy(model_class, spec, device, config.seed, k, dtype)
                        for k in range(1, K)]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*batching rule.*")
            return _train(VmapEngine(models, inv_scale), train, val, config, deadline, progress, gen)
    except (MemoryError, torch.cuda.OutOfMemoryError):
        raise
    except Exception as exc:  # not vmappable: train the copies one after another
        vmap_error = f"{type(exc).__name__}: {_short(str(exc), 120)}"

    fits: list[Fit] = []
    for k in range(K):
        gen = torch.Generator().manual_seed(int(config.seed) + k)
        model = build_copy(model_class, spec, device, config.seed, k, dtype)
        fits.append(_train(SingleEngine(model, inv_scale), train, val, config, deadline,
                           progress, gen))
        if deadline is not None and time.perf_counter() >= deadline:
            break
    merged = Fit(
        best_val=[f.best_val[0] for f in fits], best_epoch=[f.best_epoch[0] for f in fits],
        curves=[f.curves[0] for f in fits], epochs=max(f.epochs for f in fits),
        failures=[f.failures[0] for f in fits],
        stopped_by_time=any(f.stopped_by_time for f in fits),
        patience_hit=[f.patience_hit[0] for f in fits],
        module=lambda k: fits[k].module(0), path="sequential",
        note=f"vmap unavailable ({vmap_error})",
    )
    return merged

