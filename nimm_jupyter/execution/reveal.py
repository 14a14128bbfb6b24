"""The sequential reveal: teacher-forced one-step predictions on the validation and test
splits from a job that never holds their targets (issues 15 and 16).

A one-step prediction of step ``s`` needs the true states ``0..s-1`` as input, and those are
the split's targets, which never enter a job (:data:`~..modeling.scoring.HIDDEN_SPLITS`).
So, after training, the job (still jailed, its kept model in memory) and the driver take
turns, one step at a time, every trajectory of a split batched together. On the result pipe
the job first sends ``commit``: its whole report and every rollout prediction (what the
``done`` frame carries otherwise) and closes its weights descriptor (the driver keeps the
weights file as it is at that moment, :meth:`.job.Job.serve_reveal`); only then does the
reveal start, so nothing the job learns from it can change a score, the weights, the
parameters or a note. Then the message pair, once per step::

    job -> driver, on the result pipe:
        {"kind": "one_step", "split": "val", "step": s, "prediction": (N, S) array}
    driver -> job, on the reveal pipe (only after that prediction was accepted):
        {"kind": "reveal", "split": "val", "step": s, "states": (N, S) array}

and finally an empty ``{"kind": "done"}``. The job predicts step ``s`` with
:func:`~..modeling.scoring.predict_step` from the context it was given (steps ``0..C-1``)
plus the steps revealed so far; the driver checks the frame (the expected split and step, an
encoded float array of shape ``(N, S)``, the frame cap of :mod:`.protocol`) and only then
sends the true step ``s`` (NaN where it is unobserved). So a candidate never sees a target
before it has committed its prediction of it: the best it can do with what it was sent is
what the true previous states allow. The order is fixed by the driver: every hidden split in
:data:`HIDDEN_SPLITS` order, steps ``C..T-1``; the last step of a split is never revealed.
Anything else after ``commit`` (a progress frame, a ``done`` with content, a step out of
order) is a protocol violation (``crashed``), and no text the job sends after ``commit`` is
kept (its error messages and output are replaced by the driver's words): it may carry
revealed targets.

Time: from ``commit`` on, every next frame (``one_step`` or ``done``) must come within
:data:`STEP_TIMEOUT_S`, and the job's own wall-clock limit still applies: a job that stops
answering ends ``timeout``, never as a hang. An empty ``done`` before the sequence ends closes
the phase (the model failed on a longer context): the splits not completed have no one-step
scores, and the driver's note (:meth:`Revealer.summary`) says where it stopped. Collected
predictions go to :func:`~.job.driver_scores` as ``<split>_one_step``, exactly like the
training split's (which the job computes itself, holding those states).

What one-step means per task kind: a tabular task has no rollout (its one-step RMSE is the
plain RMSE; no reveal). A trajectory task with one trajectory per unit (patients) is
revealed per sample as above: step ``s`` is predicted from the trajectory's own true steps
before it (its time origin unchanged).

Windowed series (:func:`~..modeling.scoring.windowed_splits`: samples cut out of longer
series, ``Split.window_start``) take the **window reveal** instead, before any one-step
step. Their windows overlap (stride 1), so a later window's context holds an earlier one's
targets; the job is given only the contexts of the windows that start first
(:func:`~..modeling.scoring.without_targets`). Then, for every window start step ``a`` in
time order (:func:`~..modeling.scoring.window_stages`; every series and both hidden splits
of one start together)::

    job -> driver:  {"kind": "windows", "start": a, "predictions": {split: (n, H, S)}}
    driver -> job:  {"kind": "contexts", "start": a', "contexts": {split: (n', C, S)}}

the job sends the rollout of every window starting at ``a`` and only then does the driver
send the contexts of the windows starting at the next start ``a'``: values at steps
``a' .. a'+C-1``, all before the earliest target not yet predicted (``a' + C``). These
rollouts are what the driver scores (RMSE, ``by_horizon``, standard error, ...), and each
window's one-step prediction is its first forecast step (predicted from the true steps
before it: :func:`~..modeling.scoring.score_first_step`). A per-step one-step reveal is not
run on such splits: revealing step ``s`` of one window would reveal a later step of the
window that started one step earlier, before its prediction. The training split's one-step
scores stay teacher-forced within each window (the job holds those states).
A job that ends the window reveal early (its model raised on a later window) is a
``runtime_error`` in the driver's words: its rollout of those splits is incomplete.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from typing import Any, Callable

import numpy as np

from ..modeling.scoring import (HIDDEN_SPLITS, one_step_key, prediction_shape, window_stages,
                                windowed_splits)
from ..tasks.base import Task, TaskKind
from .protocol import ProtocolViolation, decode_array, encode_array

__all__ = ["Revealer", "answer_reveals", "reveal_pipe", "STEP_TIMEOUT_S", "reveal_steps",
           "reveal_needed"]

STEP_TIMEOUT_S = 60.0  # between two frames of the reveal: one forward pass of one split
_PIPE_BYTES = 1 << 20  # a reveal frame of a large split fits in one write where allowed
_F_SETPIPE_SZ = 1031


def reveal_steps(task: Task) -> list[tuple[str, int]]:
    """The one-step ``(split, step)`` pairs the job predicts, in order (empty for tabular
    tasks, empty splits and windowed splits, which take the window reveal)."""
    if task.kind is not TaskKind.TRAJECTORY:
        return []
    C = int(task.context)
    windowed = windowed_splits(task)
    out = []
    for split in HIDDEN_SPLITS:
        n, T = np.shape(task.split(split).targets)[:2]
        if n and split not in windowed:
            out += [(split, s) for s in range(C, T)]
    return out


def reveal_needed(task: Task) -> bool:
    """True when a job with a trained model of ``task`` takes part in a reveal."""
    return bool(window_stages(task) or reveal_steps(task))


def _b64_len(n_floats: int) -> int:
    """Characters of ``n_floats`` float64 values in base64, plus a frame's keys."""
    return 4 * (8 * n_floats + 2) // 3 + 256


def reveal_pipe() -> tuple[int, int]:
    """``(read end for the job, non-blocking write end for the driver)`` of a reveal pipe."""
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, _F_SETPIPE_SZ, _PIPE_BYTES)
    except OSError:  # over the system's pipe-max-size: writes are buffered (Revealer.flush)
        pass
    os.set_blocking(w, False)
    return r, w


class Revealer:
    """The driver's side of one job's reveal: checks each ``one_step`` frame, queues the
    true step it has earned, keeps the predictions, and knows when the job is late."""

    def __init__(self, task: Task, step_timeout: float | None = None):
        self.task = task
        self.stages = window_stages(task)  # the window reveal comes first
        self.steps = reveal_steps(task)
        self.step_timeout = STEP_TIMEOUT_S if step_timeout is None else float(step_timeout)
        self.stage_pos = 0
        self.pos = 0
        self.outbox = bytearray()  # reveal frames not yet written to the job
        self.collected: dict[str, list[np.ndarray]] = {}
        self.windows = {s: np.full(prediction_shape(task, s), np.nan)
                        for s in windowed_splits(task)}  # the rollouts, filled stage by stage
        self.due: float | None = None  # when the next frame must have come (monotonic)
        self.opened_at: float | None = None
        self.closed_at: float | None = None
        # what the windows and one_step frames may add to the job's output cap: every
        # prediction as float64 in base64, plus the frames' keys
        n_s = {split: int(np.prod(np.shape(task.split(split).targets)[::2]))
               for split, _ in self.steps}
        self.output_allowance = (sum(_b64_len(n_s[split]) for split, _ in self.steps)
                                 + sum(_b64_len(w.size) for w in self.windows.values())
                                 + 256 * len(self.stages) * max(1, len(self.windows)))

    def open(self) -> None:
        """The job committed its report and predictions: the reveal starts, and the first
        prediction is due."""
        self.opened_at = time.monotonic()
        self.due = self.opened_at + self.step_timeout

    def accept(self, frame: dict[str, Any]) -> None:
        """Take one ``windows`` or ``one_step`` frame; :class:`ProtocolViolation` unless it is
        the expected one, with predictions of the expected shapes. The messages quote
        nothing the job sent (it may have seen revealed targets)."""
        if self.stage_pos < len(self.stages):
            self._accept_windows(frame)
        else:
            self._accept_step(frame)
        self.due = time.monotonic() + self.step_timeout

    def _accept_windows(self, frame: dict[str, Any]) -> None:
        start, idx = self.stages[self.stage_pos]
        got = frame.get("predictions")
        if (frame.get("kind") != "windows" or frame.get("start") != start
                or isinstance(frame.get("start"), bool)
                or not isinstance(got, dict) or set(got) != set(idx)):
            raise ProtocolViolation(f"an unexpected frame in the window reveal (expected the "
                                    f"rollout of the {', '.join(idx)} windows that start at "
                                    f"step {start})")
        preds = {}
        for split, rows in idx.items():
            want = (len(rows),) + self.windows[split].shape[1:]
            try:
                pred = decode_array(got[split], "a window rollout")
            except ProtocolViolation:
                pred = None
            if pred is None or pred.shape != want:
                raise ProtocolViolation(f"the rollout of the {split} windows that start at step "
                                        f"{start} is not an encoded float array of shape {want}")
            preds[split] = pred
        for split, rows in idx.items():
            self.windows[split][rows] = preds[split]
        self.stage_pos += 1
        if self.stage_pos < len(self.stages):  # earned: the contexts of the next start
            nxt, rows_of = self.stages[self.stage_pos]
            C = int(self.task.context)
            contexts = {split: encode_array(np.asarray(self.task.split(split).targets,
                                                       dtype=np.float64)[rows, :C])
                        for split, rows in rows_of.items()}
            msg = {"kind": "contexts", "start": nxt, "contexts": contexts}
            self.outbox += (json.dumps(msg) + "\n").encode()

    def _accept_step(self, frame: dict[str, Any]) -> None:
        if self.pos >= len(self.steps):
            raise ProtocolViolation("a one_step frame after the last step of the reveal")
        split, step = self.steps[self.pos]
        if (frame.get("kind") != "one_step" or frame.get("split") != split
                or frame.get("step") != step or isinstance(frame.get("step"), bool)):
            raise ProtocolViolation(f"a one_step frame out of order (expected {split} step {step})")
        truth = np.asarray(self.task.split(split).targets, dtype=np.float64)
        try:
            pred = decode_array(frame.get("prediction"), "a one-step prediction")
        except ProtocolViolation:
            pred = None
        if pred is None or pred.shape != (truth.shape[0], truth.shape[2]):
            raise ProtocolViolation(f"the one-step prediction of {split} step {step} is not an "
                                    f"encoded float array of shape {(truth.shape[0], truth.shape[2])}")
        self.collected.setdefault(split, []).append(pred)
        self.pos += 1
        if step < truth.shape[1] - 1:  # earned: the true step it has just predicted
            msg = {"kind": "reveal", "split": split, "step": step,
                   "states": encode_array(truth[:, step])}
            self.outbox += (json.dumps(msg) + "\n").encode()

    def close(self) -> None:
        """The job sent its final frame: nothing more is due."""
        self.due = None
        self.outbox.clear()
        self.closed_at = time.monotonic()

    @property
    def spent(self) -> float:
        """Seconds from ``commit`` to the end of the reveal (so far)."""
        now = time.monotonic()
        return (self.closed_at or now) - (self.opened_at or now)

    def summary(self) -> str:
        """The note the driver adds to a committed result: how far the reveal got, its time."""
        spent = self.spent
        windows = (f"window reveal: {len(self.stages)} window starts of "
                   f"{', '.join(self.windows)} (one-step = each window's first forecast step)"
                   if self.stages else "")
        if self.pos == len(self.steps) and self.stage_pos == len(self.stages):
            steps = (f"one-step reveal: {len(self.steps)} steps of "
                     f"{', '.join(dict.fromkeys(s for s, _ in self.steps))}" if self.steps else "")
            return f"{'; '.join(p for p in (windows, steps) if p)} in {spent:.2f} s"
        if self.stage_pos < len(self.stages):
            return self.unfinished() or ""
        split, step = self.steps[self.pos]
        return (f"one-step reveal stopped by the job at {split} step {step} after {spent:.2f} s "
                "(its model failed on a longer context; see the output log): no one-step "
                "scores for the splits it did not finish")

    def unfinished(self) -> str | None:
        """Why the job's windowed rollouts are incomplete (it ended the window reveal
        early), or None: the driver's words, since the job had seen revealed values."""
        if self.stage_pos >= len(self.stages):
            return None
        start, idx = self.stages[self.stage_pos]
        return (f"the window reveal stopped after {self.stage_pos} of {len(self.stages)} window "
                f"starts: the model failed on the {', '.join(idx)} windows that start at step "
                f"{start} (its own error text is not kept: it had seen revealed values)")

    def flush(self, fd: int) -> None:
        """Write what the pipe takes now (non-blocking); a job that is gone takes nothing."""
        while self.outbox:
            try:
                n = os.write(fd, self.outbox)
            except BlockingIOError:
                return
            except OSError:  # the job has exited (EPIPE): its end is decided elsewhere
                self.outbox.clear()
                return
            del self.outbox[:n]

    def overdue(self, now: float) -> str | None:
        """Why the job is late in the reveal, or None."""
        if self.due is None or now <= self.due:
            return None
        if self.stage_pos < len(self.stages):
            start, idx = self.stages[self.stage_pos]
            what = f"its rollout of the {', '.join(idx)} windows that start at step {start}"
        elif self.pos < len(self.steps):
            split, step = self.steps[self.pos]
            what = f"its one-step prediction of {split} step {step}"
        else:
            what = "its result after the last one-step prediction"
        phase = "window" if self.stage_pos < len(self.stages) else "one-step"
        return (f"stopped answering the {phase} reveal: {what} did not come within "
                f"{self.step_timeout:g} s; the process group was killed")

    def predictions(self) -> dict[str, np.ndarray]:
        """``<split>_one_step`` ``(N, T-C, S)`` for every split whose every step came, and
        the rollout of every windowed split once every window start came."""
        C = int(self.task.context)
        out = dict(self.windows) if self.stage_pos == len(self.stages) else {}
        for split, preds in self.collected.items():
            if len(preds) == np.shape(self.task.split(split).targets)[1] - C:
                out[one_step_key(split)] = np.stack(preds, axis=1)
        return out


# -- the job's side -------------------------------------------------------------------------
class _Lines:
    """Newline-delimited JSON frames read (blocking) from the reveal pipe."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buf = bytearray()

    def next(self) -> dict[str, Any]:
        while b"\n" not in self.buf:
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                raise EOFError("the driver closed the reveal pipe")
            self.buf += chunk
        end = self.buf.index(b"\n")
        line = bytes(self.buf[:end])
        del self.buf[: end + 1]
        return json.loads(line)


def answer_reveals(model: Any, task: Task, reveal_fd: int,
                   send: Callable[[dict[str, Any]], None], device: Any, dtype: Any) -> str | None:
    """The job's side: the window reveal (:func:`_answer_windows`), then every step of
    :func:`reveal_steps` predicted with ``model`` and sent, each true step read from
    ``reveal_fd`` once earned. Returns a note when the phase ended early (the model failed;
    its rollout scores stand without one-step ones)."""
    import torch

    from ..modeling.scoring import predict_step, split_data

    lines = _Lines(reveal_fd)
    model.eval()
    failed = _answer_windows(model, task, lines, send, device, dtype)
    if failed:
        return failed
    known: dict[str, torch.Tensor] = {}
    data: dict[str, Any] = {}
    for split, step in reveal_steps(task):
        if split not in data:
            data[split] = split_data(task, split, device, dtype)
            known[split] = data[split].args[0]  # the context steps the job was given
        _, u, t = data[split].args
        try:
            with torch.no_grad():
                pred = predict_step(model, known[split], u, t)[:, 0]
        except Exception as exc:  # noqa: BLE001 - a candidate fault: say it, keep the rollout
            return f"one-step reveal stopped at {split} step {step}: {type(exc).__name__}: {exc}"[:500]
        send({"kind": "one_step", "split": split, "step": step,
              "prediction": encode_array(pred.detach().cpu().numpy())})
        if step < t.shape[0] - 1:
            frame = lines.next()
            if frame.get("kind") != "reveal" or (frame.get("split"), frame.get("step")) != (split, step):
                raise ProtocolViolation(f"the driver revealed {frame.get('split')!r} step "
                                        f"{frame.get('step')!r}; expected {split!r} step {step}")
            states = torch.as_tensor(decode_array(frame.get("states"), "revealed states"),
                                     dtype=known[split].dtype, device=known[split].device)
            known[split] = torch.cat([known[split], states[:, None]], dim=1)
    return None


def _answer_windows(model: Any, task: Task, lines: _Lines,
                    send: Callable[[dict[str, Any]], None], device: Any, dtype: Any) -> str | None:
    """The job's side of the window reveal: the rollout of the windows of each start in
    time order, from the contexts it was given (the first start's) or sent (each next
    start's, once the previous rollouts went out). A note when the model failed."""
    import torch

    from ..modeling.scoring import rollout, split_data

    stages = window_stages(task)
    data = {s: split_data(task, s, device, dtype) for s in windowed_splits(task)}
    contexts = {s: d.args[0].clone() for s, d in data.items()}  # NaN but the first start's
    for k, (start, idx) in enumerate(stages):
        preds = {}
        try:
            with torch.no_grad():
                for split, rows in idx.items():
                    r = torch.as_tensor(rows, device=contexts[split].device)
                    _, u, t = data[split].args
                    out = rollout(model, contexts[split][r], u[r], t)
                    preds[split] = encode_array(out.detach().cpu().numpy())
        except Exception as exc:  # noqa: BLE001 - a candidate fault; the driver says so
            return f"window reveal stopped at start {start}: {type(exc).__name__}: {exc}"[:500]
        send({"kind": "windows", "start": start, "predictions": preds})
        if k + 1 == len(stages):
            break
        nxt, rows_of = stages[k + 1]
        frame = lines.next()
        got = frame.get("contexts")
        if frame.get("kind") != "contexts" or frame.get("start") != nxt or not isinstance(got, dict) \
                or set(got) != set(rows_of):
            raise ProtocolViolation(f"the driver sent {frame.get('kind')!r} for start "
                                    f"{frame.get('start')!r}; expected the contexts of start {nxt}")
        for split, rows in rows_of.items():
            ctx = torch.as_tensor(decode_array(got[split], "revealed contexts"),
                                  dtype=contexts[split].dtype, device=contexts[split].device)
            contexts[split][torch.as_tensor(rows, device=ctx.device)] = ctx
    return None
