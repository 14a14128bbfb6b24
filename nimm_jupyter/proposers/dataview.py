"""A bounded view of a task's training data for a proposer's prompt.

Per-variable summary statistics and how often each input is non-zero (dosing frequency).
Only the training split is shown; validation and test data never reach a prompt. The text
is capped at ``MAX_CHARS``. Example trajectories or rows are left out for now: raw values
at any useful precision coincide by chance with simulator constants that
tests/test_prompts_reveal_no_answer.py forbids in a prompt (e.g. a normalised volume 0.028
equal to the true chemo kill rate).
"""
from __future__ import annotations

import numpy as np

from ..tasks.base import Task

MAX_CHARS = 4000
MAX_COLUMNS = 24  # variables with summary statistics, per block


def _g(x: float) -> str:
    return f"{x:.3g}" if np.isfinite(x) else "n/a"


def _stats_line(name: str, values: np.ndarray) -> str:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return f"- {name}: no finite values"
    nonzero = float(np.mean(v != 0))
    return (f"- {name}: min {_g(v.min())}, mean {_g(v.mean())}, max {_g(v.max())}, "
            f"std {_g(v.std())}, non-zero in {nonzero:.0%} of entries")


def _columns(block: np.ndarray, names: list[str]) -> list[str]:
    flat = block.reshape(-1, block.shape[-1]) if block.size else block.reshape(0, len(names))
    lines = [_stats_line(name, flat[:, j]) for j, name in enumerate(names[:MAX_COLUMNS])]
    if len(names) > MAX_COLUMNS:
        lines.append(f"- ({len(names) - MAX_COLUMNS} more not shown: {', '.join(names[MAX_COLUMNS:])})")
    return lines


def data_view(task: Task, max_chars: int = MAX_CHARS) -> str:
    """Summary of the training split, at most ``max_chars`` characters."""
    train = task.train
    lines = [f"Training split: {len(train)} "
             f"{'trajectories' if task.kind.value == 'trajectory' else 'rows'}"]
    if task.kind.value == "trajectory":
        t_len = train.targets.shape[1]
        lines[0] += (f" of {t_len} time points; the model sees the first {task.context} and "
                     f"forecasts the remaining {t_len - task.context}")
    if train.groups is not None:
        lines[0] += f"; {len(np.unique(train.groups))} groups"
    lines.append("Targets (over all trajectories and time points):" if task.kind.value == "trajectory"
                 else "Targets:")
    lines += _columns(train.targets, task.target_names)
    if task.input_names:
        lines.append("Inputs:")
        lines += _columns(train.inputs, task.input_names)
    text = "\n".join(lines)
    if len(text) > max_chars:
        text = text[: max_chars - 40].rsplit("\n", 1)[0] + "\n(data view cut to stay short)"
    return text
