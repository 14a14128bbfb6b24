"""The full-batch L-BFGS polish that follows Adam.

Mechanistic models are small, smooth, full-batch problems: first-order steps leave them on
ridges (Gompertz rho-K, for one) that a quasi-Newton method crosses in tens of iterations. The
polish runs ``torch.optim.LBFGS`` with a strong Wolfe line search on all trainable parameters,
in rounds of :data:`ROUND_ITERS` iterations, validating after each round; the weights best on
the validation split (Adam's included) are kept, so the polish can never make a result worse
on the early-stopping split.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from ..blocks import param_memo
from .scoring import SplitData, sq_err_norm

__all__ = ["Polish", "polish", "train_grad_norm", "ROUND_ITERS"]

ROUND_ITERS = 20  # L-BFGS iterations between validations
_HISTORY = 20
_PATIENCE_ROUNDS = 2  # rounds without validation progress before the polish stops
_REL_IMPROVEMENT = 1e-6


@dataclass
class Polish:
    """What the polish did: validation MSE before/after, its curve and why it stopped."""

    val_before: float
    val_after: float
    iterations: int = 0
    evaluations: int = 0
    converged: bool = False  # L-BFGS met its gradient / step tolerance
    stopped_by_time: bool = False
    diverged: bool = False  # a non-finite loss ended it (the best weights were restored)
    curve: list[dict[str, float]] = field(default_factory=list)  # {"iteration","train","val"}

    @property
    def improved(self) -> bool:
        return self.val_after < self.val_before


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def _loss(model: nn.Module, data: SplitData, inv_scale: torch.Tensor) -> torch.Tensor:
    with param_memo():
        pred = model(*data.args)
    return sq_err_norm(pred, data, inv_scale)


def train_grad_norm(model: nn.Module, train: SplitData, inv_scale: torch.Tensor) -> float:
    """Norm of the full-batch training-loss gradient at ``model``'s current weights."""
    params = _params(model)
    model.train()
    loss = _loss(model, train, inv_scale)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    sq = sum(float(g.double().pow(2).sum()) for g in grads if g is not None)
    return math.sqrt(sq)


def polish(model: nn.Module, train: SplitData, val: SplitData, inv_scale: torch.Tensor,
           max_iters: int, deadline: float | None) -> Polish:
    """Polish ``model`` in place with L-BFGS; it ends holding the best weights by validation."""
    params = _params(model)
    with torch.no_grad():
        model.eval()
        start_val = float(_loss(model, val, inv_scale))
    out = Polish(val_before=start_val, val_after=start_val)
    if max_iters <= 0 or not params or not math.isfinite(start_val):
        return out
    best = [p.detach().clone() for p in params]
    # max_eval is generous so that a round ends early only when a tolerance is met
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=ROUND_ITERS, max_eval=ROUND_ITERS * 4,
                            history_size=_HISTORY,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-12,
                            tolerance_change=1e-14)
    evaluations = [0]

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=False)
        model.train()
        loss = _loss(model, train, inv_scale)
        evaluations[0] += 1
        if torch.isfinite(loss):
            loss.backward()
        else:  # a line-search probe left the stable region: make it look bad, not NaN
            loss = torch.full_like(loss, 1e30)
            for p in params:
                p.grad = torch.zeros_like(p)
        return loss

    stale = 0
    while out.iterations < max_iters:
        before = int(opt.state[params[0]].get("n_iter", 0)) if opt.state else 0
        opt.step(closure)
        done_now = int(opt.state[params[0]].get("n_iter", 0)) - before
        out.iterations += done_now
        with torch.no_grad():
            finite = all(bool(torch.isfinite(p).all()) for p in params)
            model.eval()
            v = float(_loss(model, val, inv_scale)) if finite else math.inf
            tr = float(_loss(model, train, inv_scale)) if finite else math.inf
        if not (math.isfinite(v) and math.isfinite(tr)):
            out.diverged = True
            break
        out.curve.append({"iteration": out.iterations, "train": math.sqrt(tr), "val": math.sqrt(v)})
        if v < out.val_after * (1 - _REL_IMPROVEMENT):
            stale = 0
        else:
            stale += 1
        if v < out.val_after:
            out.val_after = v
            for b, p in zip(best, params):
                b.copy_(p.detach())
        if done_now < ROUND_ITERS:  # L-BFGS stopped inside the round: tolerances met
            out.converged = True
            break
        if stale >= _PATIENCE_ROUNDS:
            break
        if deadline is not None and time.perf_counter() >= deadline:
            out.stopped_by_time = True
            break
    out.evaluations = evaluations[0]
    with torch.no_grad():
        for b, p in zip(best, params):
            p.copy_(b)
    return out
