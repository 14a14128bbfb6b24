"""How a trained model's one-step predictions move with each of its scalar constants.

For a trajectory model with scalar :class:`~nimm_jupyter.blocks.Param` constants (a prior in
dynamics form: ``self.k = Positive(2.0)``), :func:`one_step_sensitivity` gives, per
constant ``k``, ``d ŷ / d log k`` of the teacher-forced one-step predictions on the split it
is given, ``(N, T-C, S)``, by a central difference of ``k`` scaled by ``1 +- EPS``. A job
computes it for a ``blocks.Dynamics`` model without networks on the training split (the only one whose true states it holds) and sends it
with the one-step predictions; the driver keeps it beside them, and the offline proposer
ranks which constant should saturate in which variable, ``k -> k / (1 + c * v)``
(:mod:`nimm_jupyter.proposers.offline.constant_ranking`): to first order that moves the
prediction by ``(d ŷ / d log k) * (-log(1 + c * v))``. Numbers only: no candidate code runs in
the driver to get them. A constant at 0 has sensitivity 0 (scaling it changes nothing), which
is what a multiplicative change of it would do too.
"""
from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

from ..blocks import Param
from .scoring import SplitData, forward_one_step

__all__ = ["one_step_sensitivity", "sensitivity_predictions", "sensitivity_key",
           "constant_of_key", "MAX_CONSTANTS"]

EPS = 1e-3  # relative step of the central difference (float32 predictions: ~1e-4 relative)
MAX_CONSTANTS = 16  # a model with more scalar constants reports the first 16
_PREFIX = "train_one_step_dlog:"
_KEY = re.compile(r"^train_one_step_dlog:([A-Za-z_][A-Za-z0-9_.]{0,63})$")


def sensitivity_key(name: str) -> str:
    """The predictions key of constant ``name``'s sensitivity (beside ``train_one_step``)."""
    return _PREFIX + name


def constant_of_key(key: str) -> str | None:
    """The constant a predictions key is the sensitivity of, or None for any other key."""
    m = _KEY.match(key)
    return m.group(1) if m else None


def _constants(model: nn.Module) -> list[tuple[str, Param]]:
    """The model's scalar Param submodules (attribute path, module), in definition order."""
    out = []
    for name, module in model.named_modules():
        if name and isinstance(module, Param) and module.raw.numel() == 1 \
                and constant_of_key(sensitivity_key(name)) == name:
            out.append((name, module))
    return out[:MAX_CONSTANTS]


def one_step_sensitivity(model: nn.Module, data: SplitData) -> dict[str, np.ndarray]:
    """``{constant: d(one-step prediction)/d(log constant)}``, each ``(N, T-C, S)``; a
    constant whose scaled value its parametrisation cannot take (a Bounded one at its bound)
    is left out. The model's weights are restored after each constant."""
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for name, module in _constants(model):
            raw = module.raw
            kept = raw.detach().clone()
            value = module.value().detach()
            preds = []
            try:
                for factor in (1 + EPS, 1 - EPS):
                    raw.copy_(module._inverse(value * factor))
                    preds.append(forward_one_step(model, data))
            except (ValueError, RuntimeError):  # e.g. Positive at 0, Bounded at its edge
                continue
            finally:
                raw.copy_(kept)
            d = (preds[0] - preds[1]) / (2 * EPS)
            if torch.isfinite(d).any():
                out[name] = d.cpu().numpy()
    return out


def sensitivity_predictions(model: nn.Module, data: SplitData) -> dict[str, np.ndarray]:
    """:func:`one_step_sensitivity` under its predictions keys; empty when the model fails
    on the scaled constants (a hint is not worth failing a trained model for)."""
    try:
        return {sensitivity_key(k): v for k, v in one_step_sensitivity(model, data).items()}
    except Exception:  # noqa: BLE001 - candidate code: any fault just means no hint
        return {}
