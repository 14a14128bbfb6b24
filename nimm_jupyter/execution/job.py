"""One job of the :class:`~nimm_jupyter.execution.local.LocalExecutor`, as the driver tracks it:
its pipe's :class:`~.protocol.FrameReader`, its process, what killed it, and what it left.

The executor owns scheduling and limits; this record owns the per-job verdicts: what a
protocol violation means, the scores (computed here, in the driver, from the job's
predictions: see :func:`driver_scores`), where the weights and predictions go, how an
unreported end is classified.
"""
from __future__ import annotations

import math
import os
import shutil
import stat
from dataclasses import dataclass, field

import numpy as np

from ..modeling.harness import not_finite_on_val
from ..modeling.result import EvalResult, SplitScores, Status
from ..modeling.sensitivity import constant_of_key
from ..modeling.scoring import (
    SPLITS, one_step_key, prediction_shape, predictions_file, score_first_step, score_one_step,
    score_predictions, windowed_splits,
)
from ..tasks.base import Task, TaskKind
from .base import EvalRequest, TrainConfig
from .forkserver import classify_exit
from .protocol import REVEAL_BROKEN, FrameReader, ProtocolViolation
from .sandbox import FILE_SIZE_LIMIT, WEIGHTS_FILE

__all__ = ["Job", "driver_scores"]


def driver_scores(task: Task, result: EvalResult, predictions: dict[str, np.ndarray],
                  required: bool = True) -> EvalResult:
    """``result`` with every score the job claimed replaced by the driver's own: RMSE of its
    ``predictions`` against ``task``'s targets (which the job never held), by the harness's
    formulas, the rollout's and, where the job sent them, the teacher-forced one-step
    predictions' (``<split>_one_step``: training's from the ``done`` frame, validation's and
    test's from the sequential reveal of :mod:`.reveal`). The rollouts of windowed splits
    come from the window reveal, and their one-step scores are each window's first forecast
    step (:func:`~..modeling.scoring.score_first_step`).
    An ``ok`` result needs predictions of the right shape for every split
    (:class:`ProtocolViolation` otherwise) unless ``required`` is false (the unchecked probe,
    which trains nothing); a non-finite validation error makes it ``diverged``."""
    for s in SPLITS:
        setattr(result, s, SplitScores())
    result.scenarios = {}
    if result.status is not Status.OK or (not required and not predictions):
        return result
    for name in task.scenarios:  # optional: a job from before scenarios existed sends none
        pred = predictions.get(name)
        if pred is not None:
            if tuple(pred.shape) != prediction_shape(task, name):
                raise ProtocolViolation(f"{name} predictions of shape {tuple(pred.shape)}; "
                                        f"expected {prediction_shape(task, name)}")
            result.scenarios[name] = score_predictions(task, name, pred)
    windowed = windowed_splits(task)
    for s in SPLITS:
        pred = predictions.get(s)
        want = prediction_shape(task, s)
        if pred is None or tuple(pred.shape) != want:
            got = "none" if pred is None else tuple(pred.shape)
            raise ProtocolViolation(f"{s} predictions of shape {got}; expected {want}")
        setattr(result, s, score_predictions(task, s, pred))
        one = predictions.get(one_step_key(s))
        if s in windowed:  # revealed window by window: one step is each window's first
            setattr(result, s, score_first_step(task, s, pred, getattr(result, s)))
        elif one is not None:  # optional: the job sends none for a split it holds no states of
            if task.kind is not TaskKind.TRAJECTORY or tuple(one.shape) != want:
                raise ProtocolViolation(f"{s} one-step predictions of shape {tuple(one.shape)}; "
                                        f"expected {want} (trajectory tasks only)")
            setattr(result, s, score_one_step(task, s, one, getattr(result, s)))
    want = prediction_shape(task, "train")
    for key, sens in predictions.items():  # optional, a proposer's hint: shape-checked only
        if constant_of_key(key) is not None and tuple(sens.shape) != want:
            raise ProtocolViolation(f"{key} of shape {tuple(sens.shape)}; expected {want}")
    if not math.isfinite(result.val.rmse):
        bad = not_finite_on_val(result.loss_curve, result.epochs)
        bad.wall_time, bad.device, bad.seed, bad.restarts = (
            result.wall_time, result.device, result.seed, result.restarts)
        return bad
    return result


@dataclass
class Job:
    request: EvalRequest
    config: TrainConfig
    slot: int
    device: str
    workdir: str  # the driver-side work dir (request, output log, weights)
    reader: FrameReader
    fd: int | None = None
    received: int = 0
    pid: int | None = None
    spawned_at: float | None = None
    deadline: float | None = None
    kill_reason: Status | None = None
    kill_message: str = ""
    exit_code: int | None = None
    exit_known: bool = False
    exited_at: float | None = None
    eof: bool = False
    eof_at: float | None = None
    result: EvalResult | None = None
    result_at: float | None = None
    error: str | None = None
    delivered: bool = False  # the done event was produced (the process may still be exiting)
    predictions_required: bool = True  # False only for the unchecked probe (no training)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # the driver scored these
    cgroup: str | None = None  # the job's memory cgroup (execution.cgroup), where there is one
    reveal_fd: int | None = None  # the driver's (write) end of the job's reveal pipe (.reveal)

    weights_frozen: bool = False  # the weights file was copied when the job committed

    def serve_reveal(self) -> None:
        """Keep the weights as they were at ``commit`` (the job may write its weights
        descriptor later, after it has seen revealed targets), then send the job the true
        steps its one-step predictions have earned so far."""
        if self.reader.committed is not None and not self.weights_frozen:
            self.weights_frozen = True
            src = os.path.join(self.workdir, WEIGHTS_FILE)
            try:
                if _plain_file(src):
                    shutil.copyfile(src, src + COMMITTED)
            except OSError:
                pass
        if self.reveal_fd is not None and self.reader.reveal is not None:
            self.reader.reveal.flush(self.reveal_fd)

    def reveal_overdue(self, now: float) -> str | None:
        """Why the job must be killed for stalling the one-step reveal, or None."""
        return None if self.reader.reveal is None else self.reader.reveal.overdue(now)

    @property
    def reveal_allowance(self) -> int:
        """Output bytes the one-step reveal may add to the job's cap (0 without a reveal)."""
        return 0 if self.reader.reveal is None else self.reader.reveal.output_allowance

    def close_reveal(self) -> None:
        if self.reveal_fd is not None:
            os.close(self.reveal_fd)
            self.reveal_fd = None

    def take_verdict(self, now: float) -> bool:
        """Adopt what the reader decided; True when the job must be killed (a protocol
        violation, which voids any result: the job is ``crashed``)."""
        reader = self.reader
        if reader.result is not None and self.result is None and reader.violation is None:
            try:
                self.result = driver_scores(self.request.task, reader.result, reader.predictions,
                                            self.predictions_required)
                self.predictions, self.result_at = reader.predictions, now
                if self.request.predict_with is not None and self.result.ok:
                    self.result.predictions = dict(reader.predictions)  # what a what-if asked
            except ProtocolViolation as exc:
                reader.violation = str(exc)
        if reader.violation is not None:
            if self.result is None and self.kill_reason is not None:
                return False  # already being killed for time, memory or a cancel
            self.result = None
            self.kill_reason, self.kill_message = Status.CRASHED, (
                f"the evaluation broke the result protocol ({reader.violation}); "
                "its report was discarded")
            return True
        if reader.error is not None and self.error is None:
            self.error = reader.error
        return False

    def collect_weights(self, result: EvalResult) -> str | None:
        """Move the job's weights file to the path the request asked for, if it is a plain
        file of a sane size (not a link a candidate planted); the path, or None."""
        target = self.config.save_weights
        if not (target and result.ok and result.weights_path):
            return None
        src = os.path.join(self.workdir, WEIGHTS_FILE) + (COMMITTED if self.weights_frozen else "")
        try:
            if not _plain_file(src):
                return None
            shutil.move(src, target)
        except OSError:
            return None
        save_predictions(target, self.predictions)
        return target

    def classify(self) -> EvalResult:
        """The result of a job that ended without an accepted report (after a ``commit``,
        without its output's tail: by then it had seen revealed targets)."""
        error = self.error
        if error is None and self.reader.committed is not None:
            error = REVEAL_BROKEN
        return classify_exit(self.exit_code, self.workdir, kill_reason=self.kill_reason,
                             kill_message=self.kill_message, error=error)


COMMITTED = ".committed"  # suffix of the weights the driver copied at the job's commit


def _plain_file(path: str) -> bool:
    """A regular file of a sane size with one link (not a link a candidate planted)."""
    info = os.lstat(path)
    return stat.S_ISREG(info.st_mode) and info.st_size <= FILE_SIZE_LIMIT and info.st_nlink == 1


def save_predictions(weights: str, predictions: dict[str, np.ndarray]) -> None:
    """Keep the val/test predictions the driver scored next to the weights
    (:func:`~nimm_jupyter.modeling.scoring.predictions_file`), so the end-of-search plot
    needs no candidate code, and the teacher-forced one-step predictions on the training
    split and their constant sensitivities, which a proposer may screen residuals against
    (the search hands only those on);
    best effort, a plot is not worth failing a node for."""
    kept = {s: p for s, p in predictions.items()
            if s in ("val", "test", one_step_key("train")) or constant_of_key(s) is not None}
    if not kept:
        return
    try:
        with open(predictions_file(weights), "wb") as f:
            np.savez(f, **kept)
    except OSError:
        pass
