"""Trained weights inside the job: the distill probe (a trained candidate's networks,
sampled as numbers) and :func:`predict_trained` (a what-if: the trained model's predictions
on a task whose inputs the user changed, no training).

A ``distill`` child replaces a network by a closed-form law fitted to what the network does.
What it does is measured here, in the jailed job (the candidate's code never runs in the
driver): the parent's source is checked like any candidate, its trained ``state_dict`` is
loaded, and one forward pass over the *training* split records, by forward hooks, the inputs
and outputs of every :func:`~nimm_jupyter.blocks.mlp` module (a trajectory model calls its
network at every solver stage, so each call is one row). The job holds no validation or test
targets, and the probe reads only the training split's inputs and context anyway.

The tables are capped (rows subsampled evenly, at most :data:`MAX_NETWORKS` networks of at
most :data:`MAX_COLUMNS` inputs and outputs) and leave through the job protocol as arrays.
"""
from __future__ import annotations

import io
import time

import numpy as np
import torch
from torch import nn

from ..blocks import MLP, network_parameters, param_memo
from ..tasks.base import Task
from .config import TrainConfig
from .contract import check_candidate, describe_exception, spec_on_device
from .result import EvalResult, Status
from .scoring import SPLITS, count_trainable, predict, split_data

__all__ = ["NetworkTable", "sample_networks", "predict_trained", "MAX_ROWS", "MAX_NETWORKS",
           "MAX_COLUMNS"]

MAX_ROWS = 4000  # per network: enough for a sparse fit over a few dozen terms
MAX_NETWORKS = 4
MAX_COLUMNS = 16  # with MAX_ROWS: at most ~6 MB of frame, well inside the protocol's cap

NetworkTable = dict[str, tuple[np.ndarray, np.ndarray]]  # module path -> (inputs, outputs)


def _record(model: nn.Module) -> tuple[dict[str, list[tuple[torch.Tensor, torch.Tensor]]], list]:
    calls: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, MLP) and len(calls) < MAX_NETWORKS:
            rows = calls.setdefault(name, [])

            def hook(_m: nn.Module, args: tuple, out: torch.Tensor, rows=rows) -> None:
                x = args[0] if args else None
                if isinstance(x, torch.Tensor) and isinstance(out, torch.Tensor):
                    rows.append((x.detach().reshape(-1, x.shape[-1]),
                                 out.detach().reshape(-1, out.shape[-1])))
            handles.append(module.register_forward_hook(hook))
    return calls, handles


def _table(rows: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[np.ndarray, np.ndarray]:
    x = torch.cat([r[0] for r in rows]).double().cpu().numpy()
    y = torch.cat([r[1] for r in rows]).double().cpu().numpy()
    keep = np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1)
    x, y = x[keep], y[keep]
    if len(x) > MAX_ROWS:  # evenly over the whole pass: every trajectory and time keeps a share
        idx = np.linspace(0, len(x) - 1, MAX_ROWS).round().astype(int)
        x, y = x[idx], y[idx]
    return x[:, :MAX_COLUMNS], y[:, :MAX_COLUMNS]


def _trained_model(task: Task, source: str, state: bytes, config: TrainConfig
                   ) -> tuple[nn.Module | None, EvalResult | None]:
    """``source``'s model with the trained ``state`` loaded (eval mode), or the failure."""
    device = torch.device(config.device)
    report = check_candidate(source, task, device=str(device))
    if not report.ok:
        return None, EvalResult.failure(report.status, report.message)
    try:
        model = report.model_class(spec_on_device(task, device)).to(
            device=device, dtype=getattr(torch, config.dtype))
        model.load_state_dict(torch.load(io.BytesIO(state), map_location=device,
                                         weights_only=True))
    except Exception as exc:  # noqa: BLE001 - a candidate fault is a status
        return None, EvalResult.failure(Status.RUNTIME_ERROR,
                                        describe_exception(exc, source, "loading the weights"))
    model.eval()
    return model, None


def predict_trained(task: Task, source: str, state: bytes, config: TrainConfig
                    ) -> tuple[EvalResult, dict[str, np.ndarray]]:
    """Predictions of the trained model (``state``) on every split and scenario of ``task``,
    without training: what a what-if asks of a searched node. The driver scores them."""
    t0 = time.perf_counter()
    model, failure = _trained_model(task, source, state, config)
    if model is None:
        assert failure is not None
        failure.wall_time = time.perf_counter() - t0
        return failure, {}
    names = list(SPLITS) + list(task.scenarios)
    try:
        preds = {s: predict(model, task, s) for s in names}
    except Exception as exc:  # noqa: BLE001 - a candidate fault is a status
        return EvalResult.failure(Status.RUNTIME_ERROR,
                                  describe_exception(exc, source, "predicting")), {}
    result = EvalResult(status=Status.OK, n_parameters=count_trainable(model),
                        n_network_parameters=network_parameters(model),
                        wall_time=time.perf_counter() - t0, device=config.device)
    return result, preds


def sample_networks(task: Task, source: str, state: bytes, config: TrainConfig
                    ) -> tuple[EvalResult, NetworkTable]:
    """Load ``state`` (a ``state_dict`` the harness saved for ``source``) and record every
    network's inputs and outputs along ``task``'s training split. An ``ok`` result with no
    network is a valid answer (an empty table); candidate faults come back as statuses."""
    t0 = time.perf_counter()
    device = torch.device(config.device)

    def done(result: EvalResult) -> EvalResult:
        result.wall_time, result.device = time.perf_counter() - t0, str(device)
        return result

    model, failure = _trained_model(task, source, state, config)
    if model is None:
        assert failure is not None
        return done(failure), {}
    try:
        calls, handles = _record(model)
        data = split_data(task, "train", device, getattr(torch, config.dtype))
        with torch.no_grad(), param_memo():
            model(*data.args)
        for h in handles:
            h.remove()
    except Exception as exc:  # noqa: BLE001 - a candidate fault is a status
        return done(EvalResult.failure(Status.RUNTIME_ERROR,
                                       describe_exception(exc, source, "sampling the networks"))), {}
    tables = {name: _table(rows) for name, rows in calls.items() if rows}
    result = EvalResult(status=Status.OK, n_parameters=count_trainable(model),
                        n_network_parameters=network_parameters(model))
    result.notes = [f"sampled {len(t[0])} rows of network {name!r}" for name, t in tables.items()]
    return done(result), tables
