"""``nimm eval TASK``: train and score one candidate (a reference or a file) in the sandbox.

The evaluation runs in an isolated worker process (see ``nimm_jupyter.execution.local``), the
same way a search runs candidates. The exit status is 0 when the candidate's status is ``ok``
and 1 otherwise; user errors (unknown task, missing file, bad option) exit 2 with one line
on stderr. With ``--json`` stdout holds exactly one JSON object, ``EvalResult.to_dict()``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from ..cli import CLIError
from ..execution.base import EVAL_TIMEOUT_S
from . import parse_options
from .search import add_data_arguments

REFERENCES = ("prior", "neural", "hybrid")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval", help="train and score one candidate in the sandbox",
        description="Train and score one candidate model for TASK (or a CSV file with --csv) "
                    "in an isolated process.")
    add_data_arguments(p)  # the same data options as `nimm search --csv`
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--reference", choices=REFERENCES, help="a reference model of the task")
    which.add_argument("--code", metavar="FILE.py", help="a candidate source file")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--timeout", type=float, default=EVAL_TIMEOUT_S, metavar="S",
                   help="wall-clock limit in seconds; the process is killed after it "
                        f"(default {EVAL_TIMEOUT_S:g})")
    p.add_argument("--memory-mb", type=int, default=4096, metavar="MB",
                   help="memory limit of the worker process (default 4096)")
    p.add_argument("--restarts", type=int, default=1, metavar="K",
                   help="random restarts, best by validation kept (default 1)")
    p.add_argument("--max-epochs", type=int, metavar="N",
                   help="Adam epochs before the L-BFGS polish (default: TrainConfig.max_epochs)")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="CPU threads (default 1)")
    p.add_argument("--save-weights", metavar="PATH", help="save the trained state_dict here")
    p.add_argument("--option", metavar="KEY=VALUE", action="append", default=[],
                   help="task option passed to the task factory, e.g. n_patients=50 (repeatable)")
    p.add_argument("--n-patients", type=int, metavar="N", help="shortcut for --option n_patients=N")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return p




def build_task(name: str, options: dict[str, Any]) -> Any:
    """``tasks.get(name, **options)`` with user errors turned into :class:`CLIError`."""
    from .. import tasks

    # A factory may print while it builds; stdout belongs to the result.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            return tasks.get(name, **options)
        except tasks.UnknownTaskError as exc:
            raise CLIError(str(exc)) from None
        except TypeError as exc:
            if options and "argument" in str(exc):
                raise CLIError(f"task {name!r} does not accept these options "
                               f"({', '.join(options)}): {exc}") from None
            raise
        except (ValueError, FileNotFoundError, OSError) as exc:
            raise CLIError(f"cannot build task {name!r}: {exc}") from None


def candidate_source(args: argparse.Namespace, task: Any) -> tuple[str, str]:
    """(source, label) of the candidate chosen by ``--reference`` or ``--code``."""
    if args.code:
        path = Path(args.code)
        if not path.is_file():
            raise CLIError(f"candidate file {path} does not exist")
        try:
            return path.read_text(), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise CLIError(f"cannot read candidate file {path}: {exc}") from None
    try:
        from ..modeling.references import reference_code
    except ImportError:  # references not installed: the task carries prior and hybrid
        reference_code = None
    try:
        if reference_code is not None:
            return reference_code(task, args.reference), f"reference {args.reference}"
        code = {"prior": task.prior_code, "hybrid": task.hybrid_code}.get(args.reference)
        if not code:
            raise ValueError(f"reference {args.reference!r} is not available for this task")
        return code, f"reference {args.reference}"
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _check_numbers(args: argparse.Namespace) -> None:
    if args.timeout <= 0:
        raise CLIError(f"--timeout must be > 0, got {args.timeout:g}")
    if args.restarts < 1:
        raise CLIError(f"--restarts must be >= 1, got {args.restarts}")
    if args.max_epochs is not None and args.max_epochs < 1:
        raise CLIError(f"--max-epochs must be >= 1, got {args.max_epochs}")
    if args.threads < 1:
        raise CLIError(f"--threads must be >= 1, got {args.threads}")
    if args.memory_mb < 256:
        raise CLIError(f"--memory-mb must be >= 256, got {args.memory_mb}")


def _task(args: argparse.Namespace) -> Any:
    """The task to score on: a built-in one by name, or ``--csv`` with its data options."""
    from .search import csv_task, refuse_data_flags

    if args.csv:
        if args.task:
            raise CLIError("give either a task name or --csv FILE, not both")
        with contextlib.redirect_stdout(sys.stderr):
            return csv_task(args)
    if not args.task:
        raise CLIError("give a task name (see `nimm tasks`) or --csv FILE")
    refuse_data_flags(args)
    options = parse_options(args.option)
    if args.n_patients is not None:
        options["n_patients"] = args.n_patients
    return build_task(args.task, options)


def run(args: argparse.Namespace) -> int:
    from ..modeling.config import TrainConfig
    from ..execution.devices import DeviceError, parse_device
    from ..execution.oneshot import evaluate_isolated

    _check_numbers(args)
    try:
        parse_device(args.device)
    except DeviceError as exc:
        raise CLIError(str(exc)) from None
    task = _task(args)
    source, label = candidate_source(args, task)
    epochs = {} if args.max_epochs is None else {"max_epochs": args.max_epochs}
    config = TrainConfig(seed=args.seed, restarts=args.restarts, threads=args.threads,
                         save_weights=args.save_weights, **epochs)

    live = sys.stderr.isatty() and not args.json

    def progress(p: dict[str, float]) -> None:
        if live:
            print(f"\r  epoch {int(p.get('epoch', 0)):>5}  train {p.get('train', float('nan')):.4g}"
                  f"  val {p.get('val', float('nan')):.4g}   ", end="", file=sys.stderr, flush=True)

    result = evaluate_isolated(task, source, config, timeout=args.timeout,
                               memory_mb=args.memory_mb, device=args.device,
                               threads=args.threads, progress=progress)
    if live:
        print(file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_dict(), default=str))
    else:
        print(format_summary(task, label, result))
    return 0 if result.ok else 1


def _num(x: float) -> str:
    return "nan" if x != x else f"{x:.4g}"


def format_summary(task: Any, label: str, result: Any) -> str:
    """A readable multi-line summary of one evaluation."""
    lines = [
        f"task        {task.name} ({task.kind.value}, {task.source.value})",
        f"candidate   {label}",
        f"status      {result.status.value}",
        f"device      {result.device}   seed {result.seed}   restarts {result.restarts}"
        f"   epochs {result.epochs}   wall {result.wall_time:.2f} s",
    ]
    if result.ok:
        lines.append(f"RMSE        train {_num(result.train.rmse)}   val {_num(result.val.rmse)}"
                     f"   test {_num(result.test.rmse)}   (val normalised {_num(result.val.rmse_norm)})")
        if result.train.rmse_one_step is not None:  # trajectory tasks: teacher-forced one-step
            one = [getattr(result, s).rmse_one_step for s in ("train", "val", "test")]
            lines.append("one-step    " + "   ".join(
                f"{s} {'n/a' if v is None else _num(v)}" for s, v in zip(("train", "val", "test"), one))
                + "   (each step from the true previous ones; val/test revealed step by step)")
        names = list(result.test.per_target) or list(result.val.per_target)
        if names:
            width = max(10, max(len(n) for n in names) + 2)
            lines.append(f"per target  {'':<{width}}{'train':>11}{'val':>11}{'test':>11}")
            for n in names:
                row = [getattr(result, s).per_target.get(n, float("nan")) for s in ("train", "val", "test")]
                lines.append(f"            {n:<{width}}" + "".join(f"{_num(v):>11}" for v in row))
        if result.parameters:
            fitted = ", ".join(f"{k} = {_num(v)}" for k, v in result.parameters.items())
            lines.append(f"fitted      {fitted}")
        lines.append(f"parameters  {result.n_parameters} trainable")
        if result.stop_reason is not None:
            lines.append(f"fit         stopped: {result.stop_reason.value}   gradient norm "
                         f"{_num(result.grad_norm)}   still improving "
                         f"{'yes' if result.still_improving else 'no'}"
                         + ("   UNTRAINED (scores are the starting point's)" if result.untrained else ""))
        if result.weights_path:
            lines.append(f"weights     {result.weights_path}")
    if result.message:
        msg = result.message.strip().replace("\n", "\n            ")
        lines.append(f"message     {msg}")
    for note in result.notes:
        lines.append(f"note        {note}")
    return "\n".join(lines)
