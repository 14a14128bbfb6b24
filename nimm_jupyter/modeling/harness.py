"""The evaluation harness: one candidate source + one task -> one :class:`EvalResult`.

The harness, never the candidate, owns the data, the loss and the optimiser: it checks the
candidate's contract, trains it (Adam in :mod:`.training`, then the L-BFGS polish of
:mod:`.polish`), reports how the fit ended (stop reason, gradient norm, still improving,
untrained) and scores the kept weights on every split (:mod:`.scoring`). Candidate faults
never raise: they come back as an :class:`EvalResult` with a status.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

import numpy as np

from ..blocks import Dynamics, SolverStepLimit, network_parameters
from ..tasks.base import Task
from .config import TrainConfig
from .contract import CandidateError, check_candidate, describe_exception, load_candidate, spec_on_device
from .polish import Polish, polish, train_grad_norm
from .result import EvalResult, Status, StopReason
from .sensitivity import sensitivity_predictions
from .scoring import (
    MAX_VECTOR_PARAMS, SPLITS, count_trainable, forward_chunks, mechanistic_parameters, predict,
    score_predictions, SplitData, split_data, split_scores, forward_one_step, one_step_key,
    windowed_splits,
    one_step_scores, sq_err_norm,
)
from ..tasks.base import TaskKind
from ..tasks.splits import holdout_indices
from .training import (
    DIVERGED_HINT, MAX_RECOVERIES, Fit, Progress, ProgressFn, build_copy, fit_restarts, seed_all,
)

__all__ = [
    "evaluate", "fit_and_predict", "fit_keeping_model", "Predictions", "not_finite_on_val", "load_trained", "predict", "score_predictions", "mechanistic_parameters",
    "MAX_RECOVERIES", "MAX_VECTOR_PARAMS",
]


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    if not n:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)



def load_trained(task: Task, source: str, weights_path: str, device: str = "cpu") -> nn.Module:
    """Rebuild a candidate and load the weights :func:`evaluate` saved (eval mode)."""
    model_class = load_candidate(source)
    dev = torch.device(device)
    model = model_class(spec_on_device(task, dev)).to(dev)
    state = torch.load(weights_path, map_location=dev, weights_only=True)
    model.load_state_dict(state)
    model.eval()
    return model



# -- convergence report ----------------------------------------------------------------------
POLISHED_COPIES = 3  # restarts: L-BFGS polishes copy 0 and the best copies by Adam's score


def _polish_best(fit: Fit, k: int, data: dict[str, SplitData], inv_scale: torch.Tensor,
                 config: TrainConfig, deadline: float | None
                 ) -> tuple[int, nn.Module, Polish | None]:
    """Polish copy 0 and the best of the other copies after Adam (at most
    :data:`POLISHED_COPIES`); returns the copy best on validation afterwards, its module and
    its polish. Copy 0 is the model a single run trains, so restarts never end worse on
    validation than one run; the best Adam copy need not polish best."""
    if fit.stopped_by_time or config.polish_iters <= 0:
        return k, fit.module(k), None
    usable = [c for c in range(len(fit.best_val))
              if fit.failures[c] is None and math.isfinite(fit.best_val[c])]
    ranked = sorted(usable, key=lambda c: fit.best_val[c])[:POLISHED_COPIES]
    best: tuple[int, nn.Module, Polish] | None = None
    for c in dict.fromkeys(([0] if 0 in usable else []) + ranked):
        model = fit.module(c)
        pol = polish(model, data["fit"], data["hold"], inv_scale, config.polish_iters, deadline)
        if best is None or pol.val_after < best[2].val_after:
            best = (c, model, pol)
        if pol.stopped_by_time:
            break
    assert best is not None  # k is usable, so ranked is not empty
    return best


def _holdout(task: Task, train: SplitData, config: TrainConfig,
             notes: list[str]) -> tuple[SplitData, SplitData, torch.Tensor]:
    """The training split cut into what the model is fitted on and the hold-out it stops on
    (:func:`~nimm_jupyter.tasks.splits.holdout_indices`), plus the hold-out's sample indices
    in ``train``; a note when none could be carved."""
    horizon = train.target.shape[1] if task.kind is TaskKind.TRAJECTORY else 0
    fit_idx, hold_idx, how = holdout_indices(task.train, config.holdout,
                                             windows=task.kind is TaskKind.TRAJECTORY,
                                             horizon=horizon)
    as_index = lambda i: torch.as_tensor(i, dtype=torch.long, device=train.target.device)  # noqa: E731
    if len(fit_idx) == len(hold_idx) == train.n:
        notes.append(how)
        return train, train, as_index(hold_idx)
    return train.take(as_index(fit_idx)), train.take(as_index(hold_idx)), as_index(hold_idx)


def _report(result: EvalResult, model: nn.Module, fit: Fit, k: int, pol: Polish | None,
            train: SplitData, inv_scale: torch.Tensor, config: TrainConfig,
            notes: list[str]) -> list[dict[str, float]]:
    """Record on ``result`` why training stopped; returns the loss curve (Adam's validated
    epochs, then one point per L-BFGS round)."""
    curve = list(fit.curves[k])
    if fit.stopped_by_time:
        reason = StopReason.TIME_LIMIT
    else:
        reason = StopReason.PATIENCE if fit.patience_hit[k] else StopReason.EPOCH_CAP
    if pol is not None:
        last = curve[-1]["epoch"] if curve else 0
        curve += [{"epoch": last + i + 1, "train": c["train"], "val": c["val"]}
                  for i, c in enumerate(pol.curve)]
        if pol.iterations:
            notes.append(f"L-BFGS polish{f' (kept copy {k})' if len(fit.best_val) > 1 else ''}: "
                         f"{pol.iterations} iterations ({pol.evaluations} loss evaluations), "
                         f"hold-out rmse_norm {math.sqrt(pol.val_before):.4g} -> "
                         f"{math.sqrt(pol.val_after):.4g}"
                         + ("; it left the stable region and the best weights were kept"
                            if pol.diverged else ""))
        if pol.iterations and not pol.diverged:
            reason = (StopReason.CONVERGED if pol.converged else StopReason.TIME_LIMIT
                      if pol.stopped_by_time else StopReason.EPOCH_CAP
                      if pol.iterations >= config.polish_iters else StopReason.PATIENCE)
    result.stop_reason = reason
    result.still_improving = reason in (StopReason.EPOCH_CAP, StopReason.TIME_LIMIT) \
        and _still_falling(curve)
    if result.still_improving:
        notes.append(f"training stopped ({reason.value}) while the validation error was still "
                     "falling: a larger budget may score better")
    result.grad_norm = train_grad_norm(model, train, inv_scale)
    return curve


def _still_falling(curve: list[dict[str, float]]) -> bool:
    """The best validation error of the last quarter of ``curve`` beats the rest by 0.1%."""
    vals = [c["val"] for c in curve if math.isfinite(c["val"])]
    cut = len(vals) - max(1, len(vals) // 4)
    return cut > 0 and min(vals[cut:]) < min(vals[:cut]) * (1 - 1e-3)


def _initial_parameters(model_class: type, spec: object, device: torch.device,
                        seed: int, k: int) -> dict[str, float]:
    """The mechanistic parameters copy ``k`` started from (empty if they cannot be read)."""
    try:
        return mechanistic_parameters(build_copy(model_class, spec, device, seed, k))
    except Exception:  # the fitted report notes the failure; the flag just cannot use it
        return {}


def _flag_untrained(result: EvalResult, initial: dict[str, float], never_improved: bool,
                    notes: list[str]) -> None:
    """Set ``result.untrained`` when the fit kept its starting point (``never_improved``: Adam's
    best epoch was 0 and the polish did not improve either) or no mechanistic parameter moved
    (relative change < 1e-4)."""
    moved = [abs(v - initial[n]) > 1e-4 * max(abs(initial[n]), 1e-12)
             for n, v in result.parameters.items() if n in initial]
    if never_improved or (moved and not any(moved)):
        result.untrained = True
        notes.append("untrained: " + ("no mechanistic parameter moved from its starting value"
                                      if moved and not any(moved) else
                                      "the starting weights were never improved on validation")
                     + "; the scores are those of the starting point (check starting values, "
                     "scales and whether validation error rises from the first step)")


# -- evaluate --------------------------------------------------------------------------------
def _classify(exc: BaseException, source: str) -> EvalResult:
    if isinstance(exc, CandidateError):
        return EvalResult.failure(exc.status, exc.message)
    text = str(exc)
    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)) or "out of memory" in text \
            or "can't allocate memory" in text:
        return EvalResult.failure(Status.OUT_OF_MEMORY,
                                  describe_exception(exc, source, "out of memory during training")
                                  + "; use fewer hidden units or a shorter rollout")
    if isinstance(exc, SolverStepLimit):
        return EvalResult.failure(Status.DIVERGED, describe_exception(exc, source, "ODE solve")
                                  + "; the dynamics became stiff: " + DIVERGED_HINT
                                  + ", or use a fixed-step method")
    return EvalResult.failure(Status.RUNTIME_ERROR, describe_exception(exc, source, "during training"))


Predictions = dict[str, np.ndarray]  # split -> predictions in original units (see predict)


def evaluate(task: Task, source: str, config: TrainConfig | None = None,
             progress: ProgressFn | None = None) -> EvalResult:
    """Check, train and score one candidate on ``task``; always returns an :class:`EvalResult`.

    ``progress`` receives ``{"epoch", "train", "val"}`` (normalised RMSE) at most every
    :data:`PROGRESS_INTERVAL` seconds and once at the end. Bad ``config`` values (not
    candidate faults) raise ``ValueError``.
    """
    return fit_and_predict(task, source, config, progress)[0]


def fit_and_predict(task: Task, source: str, config: TrainConfig | None = None,
                    progress: ProgressFn | None = None) -> tuple[EvalResult, Predictions]:
    """:func:`evaluate`, also returning the kept model's predictions on every split (empty
    unless the result is ``ok``). The scores cover only the targets ``task`` holds: a job
    gets a task without validation or test targets (:func:`~.scoring.without_targets`) and the driver
    scores the predictions itself."""
    result, preds, _model = fit_keeping_model(task, source, config, progress)
    return result, preds


def fit_keeping_model(task: Task, source: str, config: TrainConfig | None = None,
                      progress: ProgressFn | None = None
                      ) -> tuple[EvalResult, Predictions, nn.Module | None]:
    """:func:`fit_and_predict`, also returning the kept model (eval mode; None unless the
    result is ``ok``): a job keeps it in memory for the sequential one-step reveal
    (:mod:`nimm_jupyter.execution.reveal`)."""
    if config is None:
        config = TrainConfig()
    if int(config.restarts) < 1:
        raise ValueError(f"config.restarts must be >= 1, got {config.restarts}")
    if config.max_epochs < 0 or config.patience < 1:
        raise ValueError(f"need max_epochs >= 0 and patience >= 1, got {config.max_epochs}, {config.patience}")
    if config.batch_size is not None and config.batch_size < 1:
        raise ValueError(f"config.batch_size must be None or >= 1, got {config.batch_size}")
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"config.device is {config.device!r} but CUDA is not available")

    t0 = time.perf_counter()
    deadline = t0 + config.time_limit if config.time_limit else None

    def done(result: EvalResult) -> EvalResult:
        result.wall_time = time.perf_counter() - t0
        result.device, result.seed = str(device), int(config.seed)
        result.restarts = int(config.restarts)  # as asked; a note says when fewer were trained
        return result

    with _torch_threads(config.threads):
        seed_all(int(config.seed))
        report = check_candidate(source, task, device=str(device))
        if not report.ok:
            return done(EvalResult.failure(report.status, report.message)), {}, None
        try:
            result, preds, model = _evaluate(task, source, report.model_class, config, device,
                                             deadline, Progress(progress))
            return done(result), preds, model if result.ok else None
        except Exception as exc:
            return done(_classify(exc, source)), {}, None


def _evaluate(task: Task, source: str, model_class: type, config: TrainConfig,
              device: torch.device, deadline: float | None, progress: Progress
              ) -> tuple[EvalResult, Predictions, nn.Module | None]:
    spec = spec_on_device(task, device)
    inv_scale = (1.0 / spec.target_scale).to(device)
    dtype = getattr(torch, config.dtype)
    data = {s: split_data(task, s, device, dtype) for s in ("train", "val", "test")}
    notes: list[str] = []
    data["fit"], data["hold"], hold_index = _holdout(task, data["train"], config, notes)
    seed_all(int(config.seed))
    fit = fit_restarts(model_class, spec, data["fit"], data["hold"], inv_scale, config,
                        device, deadline, progress)

    notes += [fit.note] if fit.note.startswith("restarts:") else []
    K = len(fit.best_val)
    k = fit.best_index()
    if K > 1:
        per_copy = ", ".join("nan" if not math.isfinite(v) else f"{math.sqrt(v):.4g}" for v in fit.best_val)
        path = "batched with vmap" if fit.path == "vmap" else "one after another (sequential)"
        notes.append(f"restarts: {K} copies trained {path}"
                     + (f" because {fit.note}" if fit.note else "")
                     + (f"; best copy {k}" if k is not None else "")
                     + f"; val rmse_norm per copy: {per_copy}")
    failed = [j for j in range(len(fit.failures)) if fit.failures[j]]
    if k is None:
        reason = next((f for f in fit.failures if f), "validation loss was never finite; "
                      + DIVERGED_HINT)
        result = EvalResult.failure(Status.DIVERGED, reason)
        result.loss_curve = fit.curves[0]
        result.epochs = fit.epochs
        return result, {}, None
    if failed and K > 1:
        notes.append(f"{len(failed)} of {K} copies diverged: {fit.failures[failed[0]]}")
    if fit.stopped_by_time:
        notes.append(f"stopped at the time limit ({config.time_limit:g} s) after {fit.epochs} "
                     f"epochs; scored the best weights (epoch {fit.best_epoch[k]})")

    k, model, pol = _polish_best(fit, k, data, inv_scale, config, deadline)
    result = EvalResult(status=Status.OK)
    curve = _report(result, model, fit, k, pol, data["fit"], inv_scale, config, notes)
    polished = pol is not None and pol.improved
    initial = _initial_parameters(model_class, spec, device, int(config.seed), k)
    model.eval()
    scale = spec.target_scale
    preds: Predictions = {}
    held_back = windowed_splits(task)  # in a job: contexts hidden, predicted window by window
    with torch.no_grad():
        for s in SPLITS:
            if s in held_back and data[s].count == 0:  # after commit (execution/reveal.py)
                continue
            pred = forward_chunks(model, data[s])
            setattr(result, s, split_scores(pred, data[s], scale, task.target_names,
                                            task.input_names))
            preds[s] = pred.cpu().numpy()  # the model's dtype: exact, half the bytes
            if s == "train":  # the hold-out is part of it: its error needs no second forward
                hold_mse = float(sq_err_norm(pred[hold_index], data["hold"], inv_scale))
            if task.kind is TaskKind.TRAJECTORY and data[s].count > 0:  # true states held
                try:
                    one = forward_one_step(model, data[s])
                except Exception as exc:  # the rollout's scores stand without it
                    notes.append(describe_exception(exc, source, f"one-step prediction on {s}"))
                    continue
                setattr(result, s, dataclasses.replace(getattr(result, s), **one_step_scores(
                    one, data[s], scale, task.target_names)))
                preds[one_step_key(s)] = one.cpu().numpy()
                # the proposer's hint, ranked on for mechanisms only (a model with a network
                # is never the reference of a ranking)
                if s == "train" and isinstance(model, Dynamics) and not network_parameters(model):
                    preds.update(sensitivity_predictions(model, data[s]))
        for name in task.scenarios:  # scored by the driver, never by the job
            preds[name] = forward_chunks(model, split_data(task, name, device, dtype)).cpu().numpy()
    # the job holds no validation targets: its own check is on the hold-out (the driver
    # checks the validation split on the predictions)
    if not math.isfinite(hold_mse) or (data["val"].count and not math.isfinite(result.val.rmse)):
        return not_finite_on_val(fit.curves[k], fit.epochs), {}, None
    result.loss_curve = curve
    result.epochs = int(fit.curves[k][-1]["epoch"]) if fit.curves[k] else 0  # Adam epochs
    result.n_parameters = count_trainable(model)
    result.n_network_parameters = network_parameters(model)
    try:
        result.parameters = mechanistic_parameters(model)
    except Exception as exc:  # reporting parameters must not discard a trained model
        notes.append(describe_exception(exc, source, "mechanistic_parameters() failed"))
    _flag_untrained(result, initial, fit.best_epoch[k] == 0 and not polished, notes)
    if config.save_weights:
        path = os.fspath(config.save_weights)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        torch.save(model.state_dict(), path)
        result.weights_path = path
    if result.loss_curve:
        last = result.loss_curve[-1]
        progress(last["epoch"], last["train"], last["val"], final=True)
    result.notes = [n[:2000] for n in notes]
    return result, preds, model


def not_finite_on_val(loss_curve: list[dict[str, float]] | None = None, epochs: int = 0) -> EvalResult:
    """The ``diverged`` result of a model whose kept weights predict non-finite validation
    error (the harness's check, and the driver's when it scores a job's predictions)."""
    return EvalResult.failure(Status.DIVERGED, "validation RMSE is not finite with the best "
                              f"weights; {DIVERGED_HINT}", loss_curve=loss_curve or [],
                              epochs=epochs)
