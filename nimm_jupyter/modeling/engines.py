"""Training engines: K copies of one candidate behind one interface, and the Adam that steps
them. :class:`SingleEngine` wraps a plain module (K = 1); :class:`VmapEngine` trains K copies
as one batched computation (``torch.func.stack_module_state`` + ``functional_call`` +
``vmap``). Both expose parameters as ``(K, ...)`` tensors so one training loop serves both.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..blocks import Real, param_memo
from .scoring import SplitData, sq_err_norm

__all__ = ["SingleEngine", "VmapEngine", "StackedAdam", "clip_grads_", "step_scales"]


class SingleEngine:
    """One plain module (K = 1); parameters exposed as (1, ...) views for the shared loop."""

    path = "single"

    def __init__(self, model: nn.Module, inv_scale: torch.Tensor):
        self.K = 1
        self.model = self.base = model
        self.inv_scale = inv_scale
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.trainable = [p for _, p in named]
        self.params = [p.detach().unsqueeze(0) for p in self.trainable]

    def loss(self, data: SplitData) -> torch.Tensor:
        self.model.train()
        with param_memo():
            pred = self.model(*data.args)
        return sq_err_norm(pred, data, self.inv_scale).reshape(1)

    def grads(self, loss: torch.Tensor) -> list[torch.Tensor]:
        gs = torch.autograd.grad(loss.sum(), self.trainable, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g.unsqueeze(0) for p, g in zip(self.params, gs)]

    @torch.no_grad()
    def eval_loss(self, data: SplitData) -> torch.Tensor:
        self.model.eval()
        with param_memo():
            pred = self.model(*data.args)
        return sq_err_norm(pred, data, self.inv_scale).reshape(1)

    def keep(self, idx: torch.Tensor) -> None:
        raise AssertionError("a single copy is never dropped")

    @torch.no_grad()
    def module(self, weights: list[torch.Tensor], copy: int) -> nn.Module:
        for p, w in zip(self.trainable, weights):
            p.copy_(w)
        return self.model


class VmapEngine:
    """K copies of one architecture trained as one batched computation."""

    path = "vmap"

    def __init__(self, models: list[nn.Module], inv_scale: torch.Tensor):
        from torch.func import functional_call, stack_module_state, vmap

        self.K = len(models)
        self.models = models
        self.inv_scale = inv_scale
        self.base = models[0]
        params, buffers = stack_module_state(models)
        trainable = {n for n, p in models[0].named_parameters() if p.requires_grad}
        self.stacked = {n: v.detach().clone().requires_grad_(n in trainable) for n, v in params.items()}
        self.buffers = {n: v.detach().clone() for n, v in buffers.items()}
        self.names = [n for n in self.stacked if n in trainable]
        self.params = [self.stacked[n] for n in self.names]

        def one(p: dict, b: dict, *args: torch.Tensor) -> torch.Tensor:
            with param_memo():
                return functional_call(self.base, (p, b), args)

        self._vmapped: dict[int, Callable] = {}
        self._make = lambda n_args: vmap(one, in_dims=(0, 0) + (None,) * n_args,
                                         randomness="different")

    def _predict(self, data: SplitData) -> torch.Tensor:
        fn = self._vmapped.get(len(data.args))
        if fn is None:
            fn = self._vmapped[len(data.args)] = self._make(len(data.args))
        return fn(self.stacked, self.buffers, *data.args)

    def loss(self, data: SplitData) -> torch.Tensor:
        self.base.train()
        return sq_err_norm(self._predict(data), data, self.inv_scale)

    def grads(self, loss: torch.Tensor) -> list[torch.Tensor]:
        gs = torch.autograd.grad(loss.sum(), self.params, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, gs)]

    @torch.no_grad()
    def eval_loss(self, data: SplitData) -> torch.Tensor:
        self.base.eval()
        return sq_err_norm(self._predict(data), data, self.inv_scale)

    def keep(self, idx: torch.Tensor) -> None:
        """Continue with the copies at positions ``idx`` only."""
        self.stacked = {n: v.detach()[idx].clone().requires_grad_(v.requires_grad)
                        for n, v in self.stacked.items()}
        self.buffers = {n: v[idx].clone() for n, v in self.buffers.items()}
        self.params = [self.stacked[n] for n in self.names]
        self.K = int(idx.numel())

    @torch.no_grad()
    def module(self, weights: list[torch.Tensor], copy: int) -> nn.Module:
        # models[copy] still holds its initial frozen parameters and buffers (the batched
        # forward never writes them back); only the trained parameters are copied in.
        model = self.models[copy]
        named = dict(model.named_parameters())
        for n, w in zip(self.names, weights):
            named[n].copy_(w)
        return model


class StackedAdam:
    """Adam over (K, ...) parameters with a per-copy learning rate and step count.

    Adam is elementwise, so this is exactly K independent Adams; per-copy state lets one copy
    restart from its best weights (moments reset, lr halved) while the others carry on.
    """

    def __init__(self, params: list[torch.Tensor], lr: torch.Tensor,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 scales: list[float] | None = None):
        self.params = params
        self.lr = lr
        # per-tensor step multiplier: a Real parameter of magnitude 150 moves as fast, relative
        # to its size, as one of magnitude 1 (Adam's steps are otherwise ~lr in absolute terms)
        self.scales = scales if scales is not None else [1.0] * len(params)
        self.b1, self.b2 = betas
        self.eps = eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = torch.zeros_like(lr)

    @staticmethod
    def _view(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return x.reshape((-1,) + (1,) * (like.dim() - 1))

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor], active: torch.Tensor) -> None:
        a = active.to(self.t.dtype)
        self.t += a
        t = self.t.clamp_min(1.0)
        step_size = self.lr * a / (1 - self.b1 ** t)
        bc2_sqrt = torch.sqrt(1 - self.b2 ** t)
        for p, g, m, v, scale in zip(self.params, grads, self.m, self.v, self.scales):
            keep = self._view(active, p)
            g = torch.where(keep, g, 0.0)
            m.copy_(torch.where(keep, m * self.b1 + g * (1 - self.b1), m))
            v.copy_(torch.where(keep, v * self.b2 + g * g * (1 - self.b2), v))
            denom = v.sqrt() / self._view(bc2_sqrt, p) + self.eps
            step = self._view(step_size, p) * m / denom
            p.sub_(step if scale == 1.0 else step * scale)

    def keep(self, idx: torch.Tensor, params: list[torch.Tensor]) -> None:
        """Continue with the copies at positions ``idx`` (now stored in ``params``)."""
        self.params = params
        self.m = [m[idx].clone() for m in self.m]
        self.v = [v[idx].clone() for v in self.v]
        self.t = self.t[idx].clone()
        self.lr = self.lr[idx].clone()

    @torch.no_grad()
    def reset(self, copies: torch.Tensor) -> None:
        for m, v in zip(self.m, self.v):
            keep = self._view(copies, m)
            m.copy_(torch.where(keep, 0.0, m))
            v.copy_(torch.where(keep, 0.0, v))
        self.t.copy_(torch.where(copies, 0.0, self.t))


def step_scales(model: nn.Module, names: list[str]) -> list[float]:
    """Adam step multipliers for the trainable tensors ``names`` of ``model``: the initial
    magnitude (at least 1) for :class:`~nimm_jupyter.blocks.Real` values, 1 for the rest
    (Positive and Bounded are trained in log/logit space, where steps are already relative)."""
    real = {f"{path}.raw": m.raw for path, m in model.named_modules()
            if isinstance(m, Real) and path}
    return [max(1.0, float(real[n].detach().abs().max())) if n in real and real[n].numel() else 1.0
            for n in names]


def clip_grads_(grads: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Clip each copy's gradient to ``max_norm`` in place; returns the per-copy norms."""
    K = grads[0].shape[0] if grads else 1
    if not grads:
        return torch.zeros(K)
    sq = sum(g.reshape(K, -1).pow(2).sum(1) for g in grads)
    norms = sq.sqrt()
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.reshape((-1,) + (1,) * (g.dim() - 1)))
    return norms
