"""The candidate contract check: is this source a trainable ``Model`` for this task?

:func:`check_candidate` runs, in order and stopping at the first failure:

1. ``ast.parse``                                   -> ``syntax_error`` (line, column, text)
2. a static guard on imports and dangerous names   -> ``contract_error`` (line, name)
3. executing the module, finding ``class Model(nn.Module)``
4. ``Model(spec)`` and one forward/backward pass on a tiny batch (2-3 training samples):
   output type, dtype, shape (expected vs got), finiteness, trainable parameters, gradients.

Exceptions raised by candidate code become ``runtime_error`` messages that name the
exception and the candidate line (the source is compiled with filename ``<candidate>``, so
its frames can be picked out of a traceback). The static guard is a convenience that gives
an early, readable error; the real isolation is the sandboxed worker process.
"""
from __future__ import annotations

import ast
import time
import traceback
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..tasks.base import Task, TaskKind, TaskSpec
from .result import Status

__all__ = [
    "ALLOWED_MODULES", "CANDIDATE_FILENAME", "CandidateError", "ContractReport",
    "check_candidate", "load_candidate", "static_check", "describe_exception",
    "candidate_line", "spec_on_device", "example_batch",
]

CANDIDATE_FILENAME = "<candidate>"
ALLOWED_MODULES = ("torch", "math", "numpy", "torchdiffeq", "nimm_jupyter.blocks")
# Allowed roots that a candidate may still not reach into: they spawn processes, load
# native code or download files.
_DENIED_SUBMODULES = ("torch.hub", "torch.utils.cpp_extension", "torch.multiprocessing",
                      "torch.distributed", "torch.utils.data")
_FORBIDDEN_NAMES = frozenset({
    "__import__", "exec", "eval", "open", "compile", "globals", "locals", "vars",
    "breakpoint", "input", "exit", "quit", "__builtins__", "__loader__", "__spec__",
    # raising these would end the evaluating process instead of failing one candidate
    "SystemExit", "KeyboardInterrupt", "GeneratorExit", "BaseException",
})
# Dunder attributes that lead from an ordinary object to interpreter internals.
_FORBIDDEN_ATTRS = frozenset({
    "__globals__", "__builtins__", "__subclasses__", "__bases__", "__base__", "__mro__",
    "__code__", "__closure__", "__dict__", "__getattribute__", "__import__", "__loader__",
    "__spec__", "__self__", "__func__", "__reduce__", "__reduce_ex__", "__traceback__",
    "f_globals", "f_locals", "f_back", "f_builtins", "gi_frame", "tb_frame", "cr_frame",
})
_REFLECTION_CALLS = frozenset({"getattr", "setattr", "delattr", "hasattr"})


class CandidateError(Exception):
    """A candidate fault with the status it maps to and one actionable message."""

    def __init__(self, status: Status, message: str, line: int | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.line = line


@dataclass
class ContractReport:
    """Outcome of :func:`check_candidate`. ``model_class`` is set when the check passed."""

    status: Status
    message: str = ""
    line: int | None = None
    n_parameters: int = 0
    output_shape: tuple[int, ...] | None = None
    seconds: float = 0.0
    model_class: type | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK


# -- tracebacks ----------------------------------------------------------------------------
def candidate_line(exc: BaseException) -> int | None:
    """The innermost line of candidate code in ``exc``'s traceback (None if none)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == CANDIDATE_FILENAME:
            line = frame.lineno
    if line is None and isinstance(exc, SyntaxError) and exc.filename == CANDIDATE_FILENAME:
        line = exc.lineno
    return line


def _line_text(source: str, line: int | None) -> str:
    lines = source.splitlines()
    if line is None or not 1 <= line <= len(lines):
        return ""
    return lines[line - 1].strip()


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_exception(exc: BaseException, source: str, what: str = "") -> str:
    """``"<what>: ValueError: msg (candidate line 12: `y = f(x)`)"`` for an LLM to act on."""
    line = candidate_line(exc)
    where = ""
    if line is not None:
        text = _line_text(source, line)
        where = f" (candidate line {line}: `{_short(text, 120)}`)" if text else f" (candidate line {line})"
    prefix = f"{what}: " if what else ""
    return f"{prefix}{type(exc).__name__}: {_short(str(exc))}{where}"


def _has_candidate_frame(exc: BaseException) -> bool:
    return candidate_line(exc) is not None


# -- static checks -------------------------------------------------------------------------
def _module_allowed(name: str) -> bool:
    if any(name == d or name.startswith(d + ".") for d in _DENIED_SUBMODULES):
        return False
    return any(name == a or name.startswith(a + ".") for a in ALLOWED_MODULES)


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _parse(source: str) -> ast.Module:
    if not isinstance(source, str):
        raise CandidateError(Status.CONTRACT_ERROR,
                             f"candidate source must be a str, got {type(source).__name__}")
    try:
        return ast.parse(source, filename=CANDIDATE_FILENAME)
    except SyntaxError as exc:
        line = exc.lineno
        text = (exc.text or _line_text(source, line)).rstrip("\n").strip()
        col = f", column {exc.offset}" if exc.offset else ""
        shown = f": `{_short(text, 120)}`" if text else ""
        raise CandidateError(Status.SYNTAX_ERROR,
                             f"SyntaxError: {exc.msg} at line {line}{col}{shown}", line) from None


def static_check(source: str) -> ast.Module:
    """Parse ``source`` and apply the import/name guard; returns the AST.

    Raises :class:`CandidateError` (``syntax_error`` or ``contract_error``).
    """
    tree = _parse(source)
    allowed = ", ".join(ALLOWED_MODULES)

    def fail(node: ast.AST, what: str) -> None:
        line = getattr(node, "lineno", None)
        raise CandidateError(Status.CONTRACT_ERROR, f"line {line}: {what}", line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not _module_allowed(alias.name):
                    fail(node, f"import of `{alias.name}` is not allowed; allowed modules: {allowed}")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                fail(node, "relative imports are not allowed; candidates are single files")
            mod = node.module or ""
            if mod == "nimm_jupyter":
                bad = [a.name for a in node.names if a.name != "blocks"]
                if bad:
                    fail(node, f"`from nimm_jupyter import {bad[0]}` is not allowed; "
                               "only `nimm_jupyter.blocks` may be imported")
            elif not _module_allowed(mod):
                fail(node, f"import from `{mod}` is not allowed; allowed modules: {allowed}")
            elif any(a.name == "*" for a in node.names):
                fail(node, f"`from {mod} import *` is not allowed; import names explicitly")
        elif isinstance(node, ast.Name) and node.id in _FORBIDDEN_NAMES:
            fail(node, f"`{node.id}` is not allowed in candidate code")
        elif isinstance(node, ast.Attribute):
            if node.attr in _FORBIDDEN_ATTRS:
                fail(node, f"access to `.{node.attr}` is not allowed in candidate code")
            dotted = _dotted(node)
            if dotted and any(dotted == d or dotted.startswith(d + ".") for d in _DENIED_SUBMODULES):
                fail(node, f"`{dotted}` is not allowed in candidate code")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in _REFLECTION_CALLS and len(node.args) >= 2:
            name = node.args[1]
            if isinstance(name, ast.Constant) and isinstance(name.value, str) \
                    and name.value.startswith("__"):
                fail(node, f"`{node.func.id}(..., {name.value!r})`: dunder access is not allowed")
    return tree


def _model_line(tree: ast.Module) -> int | None:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Model":
            return node.lineno
    return None


def load_candidate(source: str) -> type:
    """Statically check and execute ``source`` in a fresh module; return its ``Model`` class.

    Raises :class:`CandidateError` with the status and message a failed check reports.
    """
    tree = static_check(source)
    module = types.ModuleType("nimm_candidate")
    module.__file__ = CANDIDATE_FILENAME
    code = compile(tree, CANDIDATE_FILENAME, "exec")
    try:
        exec(code, module.__dict__)  # noqa: S102 - the point of this module; guarded above
    except Exception as exc:  # candidate module-level code failed
        raise CandidateError(Status.RUNTIME_ERROR,
                             describe_exception(exc, source, "while loading the module"),
                             candidate_line(exc)) from None
    model = module.__dict__.get("Model")
    line = _model_line(tree)
    if model is None:
        raise CandidateError(Status.CONTRACT_ERROR,
                             "no class named `Model` found; define `class Model(nn.Module)` "
                             "with `__init__(self, spec)` and `forward(...)`")
    if not (isinstance(model, type) and issubclass(model, nn.Module)):
        where = f"line {line}: " if line else ""
        got = model.__name__ if isinstance(model, type) else type(model).__name__
        raise CandidateError(Status.CONTRACT_ERROR,
                             f"{where}`Model` must be a class subclassing torch.nn.Module, got {got}",
                             line)
    return model


# -- the dynamic check ---------------------------------------------------------------------
def spec_on_device(task_or_spec: Task | TaskSpec, device: str | torch.device = "cpu") -> TaskSpec:
    """The task's :class:`TaskSpec` with every tensor moved to ``device``.

    Candidates keep spec tensors as plain attributes (``self.scale = spec.target_scale``),
    which ``Module.to`` does not move, so the spec must live on the device before ``Model(spec)``.
    """
    spec = task_or_spec.spec() if isinstance(task_or_spec, Task) else task_or_spec
    dev = torch.device(device)
    moved = {}
    for name in ("target_scale", "input_scale", "target_mean", "input_mean", "time"):
        value = getattr(spec, name)
        if isinstance(value, torch.Tensor):
            moved[name] = value.to(dev)
    constants = {k: v.to(dev) if isinstance(v, torch.Tensor) else v for k, v in spec.constants.items()}
    out = TaskSpec(**{**spec.__dict__, **moved, "constants": constants})
    return out


def _f32(a: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float32), device=device)


def example_batch(task_or_spec: Task | TaskSpec, n: int = 3,
                  device: str | torch.device = "cpu") -> tuple[tuple[torch.Tensor, ...], tuple[int, ...]]:
    """A tiny forward-pass batch and the expected output shape.

    From a :class:`Task`: the first ``n`` training samples. From a bare :class:`TaskSpec`:
    ``n`` copies of the training means (values a mechanistic model accepts).
    """
    dev = torch.device(device)
    if isinstance(task_or_spec, Task):
        task = task_or_spec
        spec = task.spec()
        n = max(1, min(n, len(task.train)))
        if task.kind is TaskKind.TRAJECTORY:
            y = _f32(task.train.targets[:n], dev)
            u = _f32(task.train.inputs[:n], dev)
            t = spec.time.to(dev)
            C = spec.context
            return (y[:, :C], u, t), (n, y.shape[1] - C, y.shape[2])
        x = _f32(task.train.inputs[:n], dev)
        return (x,), (n, spec.n_targets)
    spec = task_or_spec
    if spec.kind == TaskKind.TRAJECTORY.value:
        T = int(spec.time.shape[0])
        y = spec.target_mean.to(dev).expand(n, spec.context, spec.n_targets).clone()
        u = spec.input_mean.to(dev).reshape(1, 1, -1).expand(n, T, spec.n_inputs).clone()
        return (y, u, spec.time.to(dev)), (n, T - spec.context, spec.n_targets)
    x = spec.input_mean.to(dev).expand(n, spec.n_inputs).clone()
    return (x,), (n, spec.n_targets)


def _kind(task_or_spec: Task | TaskSpec) -> str:
    kind = task_or_spec.kind
    return kind.value if isinstance(kind, TaskKind) else str(kind)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _call_candidate(fn: Any, source: str, what: str, signature_hint: str, *args: Any) -> Any:
    try:
        return fn(*args)
    except CandidateError:
        raise
    except (MemoryError, torch.cuda.OutOfMemoryError):
        raise
    except Exception as exc:
        if isinstance(exc, TypeError) and not _has_candidate_frame(exc):
            # The call itself did not match the candidate's signature.
            raise CandidateError(Status.CONTRACT_ERROR,
                                 f"{what}: TypeError: {_short(str(exc))}; expected {signature_hint}") from None
        raise CandidateError(Status.RUNTIME_ERROR, describe_exception(exc, source, what),
                             candidate_line(exc)) from None


def _first_bad(t: torch.Tensor) -> tuple[str, list[int], int]:
    bad = ~torch.isfinite(t)
    idx = bad.nonzero()[0].tolist()
    value = t[tuple(idx)].item()
    kind = "NaN" if value != value else ("inf" if value > 0 else "-inf")
    return kind, idx, int(bad.sum().item())


def blow_up_text(out: torch.Tensor, spec: TaskSpec, context: int) -> str:
    """Where a rollout ``(B, T - C, S)`` first stops being finite: state, step, time and the
    last finite value before it, so the mechanism (not only a network) can be fixed."""
    bad = ~torch.isfinite(out)
    steps = bad.any(dim=0).any(dim=-1).nonzero()
    k = int(steps[0])
    b, s = (int(i) for i in bad[:, k].nonzero()[0])
    value = float(out[b, k, s])
    kind = "NaN" if value != value else ("inf" if value > 0 else "-inf")
    names = list(spec.target_names)
    name = names[s] if s < len(names) else f"state {s}"
    step = context + k  # index into the trajectory, as in the data
    when = f" (t={float(spec.time[step]):g})" if spec.time is not None else ""
    before = (f"; it was {float(out[b, k - 1, s]):.3g} one step earlier" if k > 0
              and bool(torch.isfinite(out[b, k - 1, s])) else "; already at the first forecast step")
    return (f"the rollout blows up on the training batch at the initial parameters: {name} "
            f"becomes {kind} at step {step}{when}, trajectory {b}{before} "
            f"({int(bad.sum())} non-finite values). Fix the mechanism: bound its rates "
            "(Positive/Bounded), clamp the states, take smaller steps (Dynamics.substeps, "
            "ode_rollout step_size) or use safe_log")


def check_model(model_class: type, source: str, task_or_spec: Task | TaskSpec,
                device: str | torch.device = "cpu", n: int = 3) -> tuple[int, tuple[int, ...]]:
    """Build ``Model(spec)`` and run one forward/backward on a tiny batch.

    Returns ``(trainable parameter count, output shape)``; raises :class:`CandidateError`.
    """
    dev = torch.device(device)
    spec = spec_on_device(task_or_spec, dev)
    model = _call_candidate(model_class, source, "Model(spec) failed",
                            "`def __init__(self, spec)`", spec)
    if not isinstance(model, nn.Module):
        raise CandidateError(Status.CONTRACT_ERROR, "Model(spec) did not return an nn.Module")
    try:
        model = model.to(dev)
    except Exception as exc:
        raise CandidateError(Status.RUNTIME_ERROR,
                             describe_exception(exc, source, f"moving the model to {dev}")) from None
    params = [p for p in model.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in params)
    if n_params == 0:
        raise CandidateError(Status.CONTRACT_ERROR,
                             "Model has no trainable parameters; make mechanistic constants "
                             "trainable with nimm_jupyter.blocks.Positive/Bounded/Real or nn.Parameter")
    args, expected = example_batch(task_or_spec, n, dev)
    kind = _kind(task_or_spec)
    if kind == TaskKind.TRAJECTORY.value:
        hint = "`def forward(self, y_context, u, t)`"
        call = (f"forward(y_context {_shape_text(tuple(args[0].shape))}, "
                f"u {_shape_text(tuple(args[1].shape))}, t {_shape_text(tuple(args[2].shape))})")
        layout = "(B, T - C, S)"
    else:
        hint = "`def forward(self, x)`"
        call = f"forward(x {_shape_text(tuple(args[0].shape))})"
        layout = "(B, Y)"
    model.train()
    out = _call_candidate(model, source, "forward failed", hint, *args)
    if not isinstance(out, torch.Tensor):
        raise CandidateError(Status.CONTRACT_ERROR,
                             f"{call} returned {type(out).__name__}; expected a torch.Tensor "
                             f"of shape {layout} = {_shape_text(expected)}")
    if not out.is_floating_point():
        raise CandidateError(Status.CONTRACT_ERROR,
                             f"{call} returned dtype {out.dtype}; expected a float tensor")
    if tuple(out.shape) != tuple(expected):
        raise CandidateError(Status.CONTRACT_ERROR,
                             f"{call} returned shape {_shape_text(tuple(out.shape))}; expected "
                             f"{layout} = {_shape_text(expected)}")
    if not bool(torch.isfinite(out).all()):
        if kind == TaskKind.TRAJECTORY.value:
            raise CandidateError(Status.CONTRACT_ERROR,
                                 blow_up_text(out.detach(), spec, int(args[0].shape[1])))
        what, idx, count = _first_bad(out.detach())
        raise CandidateError(Status.CONTRACT_ERROR,
                             f"output contains {what} at index {idx} ({count} non-finite values) "
                             "on a tiny training batch at the initial parameters; clamp states, "
                             "bound rates (Positive/Bounded) or use safe_log")
    if not out.requires_grad:
        raise CandidateError(Status.CONTRACT_ERROR,
                             "output does not depend on any trainable parameter (no gradient); "
                             "check for .detach(), torch.no_grad() or .item() in forward")
    try:
        out.float().sum().backward()
    except Exception as exc:
        raise CandidateError(Status.RUNTIME_ERROR,
                             describe_exception(exc, source, "backward failed"),
                             candidate_line(exc)) from None
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    with_grad = [(name, p.grad) for name, p in named if p.grad is not None]
    if not with_grad:
        raise CandidateError(Status.CONTRACT_ERROR,
                             "no parameter receives a gradient from the output; the output must "
                             "be computed from the model's parameters")
    for name, grad in with_grad:
        if not bool(torch.isfinite(grad).all()):
            raise CandidateError(Status.CONTRACT_ERROR,
                                 f"gradient of parameter `{name}` contains NaN/inf at the initial "
                                 "parameters (e.g. sqrt/pow/log at 0 or torch.where over a NaN "
                                 "branch); clamp the argument first")
    return n_params, tuple(out.shape)


def check_candidate(source: str, task: Task | TaskSpec, *, device: str = "cpu",
                    n: int = 3) -> ContractReport:
    """Run the whole contract check; never raises for candidate faults.

    ``task`` is a :class:`Task` (the batch is its first ``n`` training samples) or a bare
    :class:`TaskSpec` (the batch repeats the training means).
    """
    t0 = time.perf_counter()
    try:
        model_class = load_candidate(source)
        with torch.random.fork_rng(devices=[]):
            n_params, shape = check_model(model_class, source, task, device, n)
    except CandidateError as err:
        return ContractReport(err.status, err.message, err.line,
                              seconds=time.perf_counter() - t0)
    except (MemoryError, torch.cuda.OutOfMemoryError) as exc:
        return ContractReport(Status.OUT_OF_MEMORY,
                              f"out of memory during the contract check: {_short(str(exc))}",
                              seconds=time.perf_counter() - t0)
    return ContractReport(Status.OK, "", None, n_params, shape, time.perf_counter() - t0,
                          model_class)
