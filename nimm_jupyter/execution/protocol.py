"""The job protocol, driver side: what the driver accepts from a job child, and nothing else.

A child writes newline-delimited JSON frames on its own pipe (never pickle: the driver must
not unpickle what candidate code could forge), in exactly this order::

    {"kind": "started", ...}            once, when the sandbox is up
    {"kind": "progress", "progress": {name: number}}   any number of times
    {"kind": "done", "result": {...}}   exactly once, last

or a single ``{"kind": "error", "message": ...}`` instead of ``done``. Anything else — a line
that is not JSON, an unknown kind, a frame before ``started``, a second ``done``, any byte after
``done`` or ``error`` — is a protocol violation and the job ends ``crashed``. The result is
accepted only when the pipe has closed (every process of the job is gone), so no frame can
follow it unseen.

:func:`clean_result` turns the ``done`` frame into an :class:`EvalResult` with every field
type-checked and capped: what a candidate reports (parameter names and values, messages) is
untrusted text that goes on into the journal and into the next LLM prompt.

The ``done`` frame of an ``ok`` evaluation also carries ``"predictions": {split: array}``
(:func:`encode_array`), the kept model's outputs for the inputs of each split, and for a
trajectory task ``"train_one_step"`` (its teacher-forced one-step predictions on the one
split whose true states the child holds, :func:`~nimm_jupyter.modeling.scoring.forward_one_step`)
and, for a prior in dynamics form, how those move with each scalar constant
(``"train_one_step_dlog:<name>"``, :mod:`~nimm_jupyter.modeling.sensitivity`).
A trajectory job with a trained model instead sends that report and those predictions in a
``commit`` frame, then ``one_step`` frames, each answered by the driver on a second pipe
(the sequential reveal of :mod:`.reveal`: validation and test one-step predictions without
the job holding their targets; on windowed series first ``windows`` frames, the rollouts of
each window start, answered with the next start's contexts), then an empty ``done``.
Nothing but ``windows`` and ``one_step`` frames and that empty ``done`` may follow a
``commit``: once targets are revealed, the job can change no score, report, parameter or note.
The scores a child claims are parsed here but never trusted: the driver replaces them with its own, computed from these
predictions against targets the child never held (:meth:`.job.Job.take_verdict`).
"""
from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Protocol

import numpy as np

from ..modeling.network_probe import MAX_COLUMNS, MAX_NETWORKS, MAX_ROWS
from ..modeling.result import EvalResult, SplitScores, Status, StopReason
from ..modeling.sensitivity import MAX_CONSTANTS, constant_of_key

__all__ = ["FrameReader", "clean_result", "clean_predictions", "clean_network_samples",
           "clean_text", "ReportLimits", "ProtocolViolation", "encode_array", "decode_array"]


@dataclass(frozen=True)
class ReportLimits:
    """Caps on what a job may report."""

    max_parameters: int = 64
    max_name_chars: int = 64
    max_message_chars: int = 2000
    max_curve_points: int = 20000
    max_notes: int = 16
    max_note_chars: int = 500
    max_frame_bytes: int = 16 << 20  # one line; a longer one is a violation


LIMITS = ReportLimits()
_NAME = re.compile(r"^[A-Za-z0-9_.\[\]()\-+*/^ :,]+$")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_CHILD_STATUSES = frozenset(Status) - {Status.CANCELLED}


# each split's rollout, and the training split's teacher-forced one-step predictions
# (modeling.scoring.one_step_key); those of val and test come only from the reveal (.reveal)
_PREDICTION_KEYS = frozenset({"train", "val", "test", "train_one_step"})


# What a job that ends the reveal without its empty ``done`` is told; its own words (an error
# frame, its output) are dropped because it had seen revealed targets by then.
REVEAL_BROKEN = ("the evaluation ended during the one-step reveal without finishing it (its "
                 "own error text and output are not kept: it had seen revealed targets)")


class ProtocolViolation(ValueError):
    """A frame the protocol does not allow; the job is ``crashed``."""


def clean_text(text: Any, limit: int = LIMITS.max_message_chars) -> str:
    """``text`` as a string without control or direction-override characters, cut to ``limit``."""
    s = _CONTROL.sub("", str(text))
    return s if len(s) <= limit else s[: limit - 14] + " [truncated]"


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if value is None:
            return float("nan")
        raise ProtocolViolation(f"{what} is not a number")
    return float(value)


def _scores(d: Any, targets: frozenset[str] | None, what: str) -> SplitScores:
    if not isinstance(d, dict):
        raise ProtocolViolation(f"{what} scores are not an object")
    per = d.get("per_target") or {}
    if not isinstance(per, dict):
        raise ProtocolViolation(f"{what}.per_target is not an object")
    per_target = {str(k): _number(v, f"{what}.per_target") for k, v in per.items()
                  if targets is None or k in targets}
    return SplitScores(rmse=_number(d.get("rmse"), f"{what}.rmse"),
                       rmse_norm=_number(d.get("rmse_norm"), f"{what}.rmse_norm"),
                       per_target=dict(list(per_target.items())[:LIMITS.max_parameters]))


def _notes(raw: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ProtocolViolation("notes are not a list")
    return [clean_text(n, LIMITS.max_note_chars) for n in raw[:LIMITS.max_notes]]


def _stop_reason(raw: Any) -> StopReason | None:
    if raw is None:
        return None
    try:
        return StopReason(raw)
    except ValueError:
        raise ProtocolViolation("the result has no valid stop_reason") from None


def _flag(raw: Any, what: str) -> bool:
    if raw is None:
        return False
    if not isinstance(raw, bool):
        raise ProtocolViolation(f"{what} is not a boolean")
    return raw


def _parameters(d: Any) -> tuple[dict[str, float], str]:
    """At most ``max_parameters`` named numbers with short printable names; a note if cut."""
    if not isinstance(d, dict):
        raise ProtocolViolation("parameters are not an object")
    out: dict[str, float] = {}
    dropped = 0
    for name, value in d.items():
        ok_name = isinstance(name, str) and 0 < len(name) <= LIMITS.max_name_chars and _NAME.match(name)
        ok_value = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok_name and ok_value and len(out) < LIMITS.max_parameters:
            out[name] = float(value)
        else:
            dropped += 1
    note = (f"{dropped} reported parameter(s) dropped (at most {LIMITS.max_parameters}, names "
            f"of at most {LIMITS.max_name_chars} plain characters, numeric values)") if dropped else ""
    return out, note


def _curve(points: Any) -> list[dict[str, float]]:
    if not isinstance(points, list):
        raise ProtocolViolation("loss_curve is not a list")
    out = []
    for p in points[: LIMITS.max_curve_points]:
        if not isinstance(p, dict):
            raise ProtocolViolation("a loss-curve point is not an object")
        out.append({k: _number(p.get(k), "loss_curve") for k in ("epoch", "train", "val") if k in p})
    return out


_ARRAY_DTYPES = {"float32": np.float32, "float64": np.float64}
_MAX_DIMS = 4


def encode_array(a: np.ndarray) -> dict[str, Any]:
    """``a`` as a frame value: dtype, shape and the raw little-endian bytes in base64 (exact,
    and far smaller and faster than a nested JSON list)."""
    a = np.ascontiguousarray(a)
    if a.dtype.name not in _ARRAY_DTYPES:
        a = a.astype(np.float64)
    return {"dtype": a.dtype.name, "shape": list(a.shape),
            "data": base64.b64encode(a.astype(a.dtype.newbyteorder("<")).tobytes()).decode()}


def decode_array(d: Any, what: str) -> np.ndarray:
    """The float64 array :func:`encode_array` wrote; :class:`ProtocolViolation` if ``d`` is
    not exactly that (no pickle, no object dtype: only a known float type and a byte count
    that matches the shape)."""
    if not isinstance(d, dict) or d.get("dtype") not in _ARRAY_DTYPES:
        raise ProtocolViolation(f"{what} is not an encoded float array")
    shape = d.get("shape")
    if not (isinstance(shape, list) and len(shape) <= _MAX_DIMS
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
        raise ProtocolViolation(f"{what} has no valid shape")
    dtype = np.dtype(_ARRAY_DTYPES[d["dtype"]]).newbyteorder("<")
    try:
        raw = base64.b64decode(d.get("data") or "", validate=True)
    except (TypeError, ValueError):
        raise ProtocolViolation(f"{what} is not base64") from None
    if len(raw) != math.prod(shape) * dtype.itemsize:
        raise ProtocolViolation(f"{what} holds {len(raw)} bytes for shape {tuple(shape)}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(np.float64)


def clean_predictions(d: Any, scenarios: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """The ``done`` frame's predictions as float64 arrays per known split or task
    ``scenarios`` name (:func:`decode_array`), and at most ``MAX_CONSTANTS`` constant
    sensitivities of the training split's one-step predictions
    (:mod:`~nimm_jupyter.modeling.sensitivity`); :class:`ProtocolViolation` if they are not
    that. Shapes against the task are the driver's check."""
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise ProtocolViolation("predictions are not an object of splits")
    sensitivities = {k for k in d if constant_of_key(k) is not None}
    if not set(d) - sensitivities <= _PREDICTION_KEYS | set(scenarios) \
            or len(sensitivities) > MAX_CONSTANTS:
        raise ProtocolViolation("predictions are not an object of splits")
    return {split: decode_array(values, f"{split} predictions") for split, values in d.items()}


_NETWORK_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")


def clean_network_samples(d: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A distill probe's ``networks`` (:mod:`~nimm_jupyter.modeling.network_probe`): per
    network, its module path (a plain dotted name) -> ``{"inputs", "outputs"}``, two finite
    2-D arrays with the same number of rows, within the probe's caps;
    :class:`ProtocolViolation` otherwise."""
    if d is None:
        return {}
    if not isinstance(d, dict) or len(d) > MAX_NETWORKS:
        raise ProtocolViolation("networks are not an object of at most "
                                f"{MAX_NETWORKS} tables")
    out = {}
    for path, table in d.items():
        if not (isinstance(path, str) and len(path) <= LIMITS.max_name_chars
                and _NETWORK_PATH.match(path)) or not isinstance(table, dict):
            raise ProtocolViolation("a network table without a plain module path")
        x = decode_array(table.get("inputs"), f"network {path} inputs")
        y = decode_array(table.get("outputs"), f"network {path} outputs")
        if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(x) > MAX_ROWS \
                or max(x.shape[1], y.shape[1]) > MAX_COLUMNS:
            raise ProtocolViolation(f"network {path} table of shapes {x.shape}, {y.shape}")
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ProtocolViolation(f"network {path} table is not finite")
        out[path] = (x, y)
    return out


def clean_result(d: Any, target_names: Iterable[str] | None = None) -> EvalResult:
    """The ``done`` frame's result, type-checked and capped; :class:`ProtocolViolation` if
    its shape is wrong. Per-target scores are kept only for the task's own target names."""
    if not isinstance(d, dict):
        raise ProtocolViolation("the result is not an object")
    try:
        status = Status(d.get("status"))
    except ValueError:
        raise ProtocolViolation("the result has no valid status") from None
    if status not in _CHILD_STATUSES:
        raise ProtocolViolation(f"a job may not report status {status.value!r}")
    targets = frozenset(target_names) if target_names is not None else None
    params, note = _parameters(d.get("parameters") or {})
    message = clean_text(d.get("message") or "")
    notes = _notes(d.get("notes"))
    if note and status is Status.OK:
        notes.append(clean_text(note, LIMITS.max_note_chars))  # remarks on a run that worked
    elif note:
        message = clean_text(f"{note}; {message}" if message else note)
    weights = d.get("weights_path")
    return EvalResult(
        status=status, message=message,
        train=_scores(d.get("train", {}), targets, "train"),
        val=_scores(d.get("val", {}), targets, "val"),
        test=_scores(d.get("test", {}), targets, "test"),
        loss_curve=_curve(d.get("loss_curve") or []), parameters=params,
        n_parameters=max(0, int(_number(d.get("n_parameters", 0), "n_parameters"))),
        n_network_parameters=max(0, int(_number(d.get("n_network_parameters", 0),
                                                "n_network_parameters"))),
        epochs=max(0, int(_number(d.get("epochs", 0), "epochs"))),
        wall_time=_number(d.get("wall_time", 0.0), "wall_time"),
        device=clean_text(d.get("device") or "cpu", 32),
        seed=int(_number(d.get("seed", 0), "seed")),
        restarts=int(_number(d.get("restarts", 1), "restarts")),
        weights_path=str(weights) if isinstance(weights, str) else None,
        notes=notes, stop_reason=_stop_reason(d.get("stop_reason")),
        grad_norm=_number(d.get("grad_norm"), "grad_norm"),
        still_improving=_flag(d.get("still_improving"), "still_improving"),
        untrained=_flag(d.get("untrained"), "untrained"),
    )


class RevealSide(Protocol):
    """What the reader needs of the driver's side of the one-step reveal
    (:class:`.reveal.Revealer`)."""

    def open(self) -> None: ...

    def accept(self, frame: dict[str, Any]) -> None: ...

    def close(self) -> None: ...

    def summary(self) -> str: ...

    def unfinished(self) -> str | None: ...

    output_allowance: int

    @property
    def spent(self) -> float: ...

    def predictions(self) -> dict[str, np.ndarray]: ...


class FrameReader:
    """Parses one job's pipe; see the module docstring for the rules it enforces."""

    def __init__(self, target_names: Iterable[str] | None = None, scenarios: Iterable[str] = (),
                 reveal: "RevealSide | None" = None):
        self.target_names = list(target_names) if target_names is not None else None
        self.scenarios = tuple(scenarios)  # the task's scenario names: allowed prediction keys
        self.reveal = reveal  # the driver's side of the one-step reveal, when the job has one
        self.buf = bytearray()
        self.started = False
        self.result: EvalResult | None = None
        self.predictions: dict[str, np.ndarray] = {}  # with ``result``: what the driver scores
        self.error: str | None = None
        self.violation: str | None = None
        # the job's report and predictions, sent before the one-step reveal (see .reveal)
        self.committed: tuple[EvalResult, dict[str, np.ndarray]] | None = None

    @property
    def finished(self) -> bool:
        return self.result is not None or self.error is not None or self.violation is not None

    def feed(self, chunk: bytes) -> list[dict[str, float]]:
        """Consume bytes; returns the progress updates they contained (in order)."""
        out: list[dict[str, float]] = []
        self.buf += chunk
        while self.violation is None:
            end = self.buf.find(b"\n")
            if end < 0:
                if len(self.buf) > LIMITS.max_frame_bytes:
                    self.violation = f"a frame longer than {LIMITS.max_frame_bytes} bytes"
                break
            line = bytes(self.buf[:end])
            del self.buf[: end + 1]
            try:
                progress = self._frame(line)
            except ProtocolViolation as exc:
                self.violation = str(exc)
                break
            if progress is not None:
                out.append(progress)
        return out

    def close(self) -> None:
        """The pipe reached EOF: a partial last line is a violation too."""
        if self.buf.strip() and self.violation is None:
            self.violation = "an unterminated frame at the end of the output"

    def _frame(self, line: bytes) -> dict[str, float] | None:
        if self.result is not None or self.error is not None:
            raise ProtocolViolation("a frame after the final result")
        if len(line) > LIMITS.max_frame_bytes:
            raise ProtocolViolation(f"a frame longer than {LIMITS.max_frame_bytes} bytes")
        try:
            frame = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            raise ProtocolViolation("a line that is not a JSON frame") from None
        kind = frame.get("kind") if isinstance(frame, dict) else None
        if kind == "started" and not self.started:
            self.started = True
            return None
        if kind == "error":  # a setup failure may come before "started"; always crashed
            self.error = (REVEAL_BROKEN if self.committed is not None  # it had seen targets
                          else clean_text(frame.get("message") or "unknown error"))
            if self.reveal is not None:
                self.reveal.close()
            return None
        if not self.started:
            raise ProtocolViolation(f"a {kind!r} frame before the job was set up")
        if kind == "commit" and self.reveal is not None and self.committed is None:
            # the report and every rollout prediction, fixed before any target is revealed
            self.committed = (clean_result(frame.get("result"), self.target_names),
                              clean_predictions(frame.get("predictions"), self.scenarios))
            self.reveal.open()
            return None
        if self.committed is not None:  # the reveal: one_step frames, then an empty done
            return self._revealing(kind, frame)
        if kind == "progress":
            values = frame.get("progress")
            if not isinstance(values, dict) or len(values) > 16:
                raise ProtocolViolation("a malformed progress frame")
            return {clean_text(k, 32): _finite(_number(v, "progress")) for k, v in values.items()}
        if kind == "done":
            result = clean_result(frame.get("result"), self.target_names)
            self.predictions = clean_predictions(frame.get("predictions"), self.scenarios)
            result.network_samples = clean_network_samples(frame.get("networks"))
            if self.reveal is not None:
                self.reveal.close()
            self.result = result
            return None
        raise ProtocolViolation(f"an unexpected {kind!r} frame")

    def _revealing(self, kind: Any, frame: dict[str, Any]) -> None:
        """After ``commit`` nothing the job sends can change a score or reach a proposer:
        only ``windows`` and ``one_step`` predictions (each checked before what it earns is
        revealed) and a ``done`` frame that carries nothing."""
        assert self.committed is not None and self.reveal is not None
        if kind in ("one_step", "windows"):
            self.reveal.accept(frame)
            return None
        if kind == "done" and set(frame) == {"kind"}:
            result, predictions = self.committed
            self.reveal.close()
            unfinished = self.reveal.unfinished()  # windowed rollouts incomplete: nothing scored
            if unfinished is not None:
                result = EvalResult.failure(Status.RUNTIME_ERROR, unfinished, seed=result.seed,
                                            restarts=result.restarts, loss_curve=result.loss_curve,
                                            epochs=result.epochs, wall_time=result.wall_time,
                                            device=result.device)
            else:
                result.notes.append(self.reveal.summary())  # the driver's words, not the job's
            result.wall_time += self.reveal.spent  # the evaluation's time includes the reveal
            self.predictions = {**predictions, **self.reveal.predictions()}
            self.result = result
            return None
        raise ProtocolViolation("an unexpected frame during the one-step reveal (only one_step "
                                "or windows frames and an empty done may follow commit)")


def _finite(x: float) -> float:
    return x if math.isfinite(x) else float("nan")
