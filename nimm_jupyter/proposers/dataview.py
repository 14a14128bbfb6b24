"""A bounded view of a task's training data for a proposer's prompt.

Per-variable summary statistics, how often each input is non-zero (dosing frequency), and a
few representative trajectories (downsampled) or rows. Only the training split is shown;
validation and test data never reach a prompt. The text is capped at ``MAX_CHARS``.
"""
from __future__ import annotations

import numpy as np

from ..tasks.base import Split, Task

MAX_CHARS = 4000
N_EXAMPLES = 3  # trajectories (low / median / high final value of the first target) or rows
N_POINTS = 8  # time points kept per example trajectory
MAX_COLUMNS = 24  # variables with summary statistics, per block
MAX_SHOWN = 4  # variables per example trajectory (a task may have dozens of targets)


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


def _examples(task: Task, split: Split) -> list[str]:
    n = len(split)
    if n == 0:
        return []
    if task.kind.value == "trajectory":
        final = split.targets[:, -1, 0]
        order = np.argsort(np.where(np.isfinite(final), final, np.inf), kind="stable")
        picks = sorted({int(order[int(q * (n - 1))]) for q in (0.1, 0.5, 0.9)})[:N_EXAMPLES]
        t_len = split.targets.shape[1]
        steps = sorted({int(round(k)) for k in np.linspace(0, t_len - 1, min(N_POINTS, t_len))})
        time = task.time if task.time is not None else np.arange(t_len)
        shown = "" if len(task.target_names) <= MAX_SHOWN else f", first {MAX_SHOWN} targets"
        out = [f"Example trajectories{shown} (steps {steps} of {t_len}; t = "
               f"{', '.join(_g(float(time[k])) for k in steps)}):"]
        for i in picks:
            row = []
            for j, name in enumerate(task.target_names[:MAX_SHOWN]):
                row.append(f"{name} = " + ", ".join(_g(float(split.targets[i, k, j])) for k in steps))
            for j, name in enumerate(task.input_names[:MAX_SHOWN]):
                u = split.inputs[i, :, j]
                on = np.flatnonzero(u != 0)
                if on.size > 0.6 * u.size:  # a continuous input: its values, like a target
                    row.append(f"{name} = " + ", ".join(_g(float(u[k])) for k in steps))
                    continue
                row.append(f"{name} non-zero at steps {on[:12].tolist()}"
                           + (f" (+{on.size - 12} more)" if on.size > 12 else "")
                           + (f", values {', '.join(_g(float(u[k])) for k in on[:4])}" if on.size else ""))
            out.append(f"- trajectory {i}: " + "; ".join(row))
        return out
    picks = np.linspace(0, n - 1, min(N_EXAMPLES + 2, n)).astype(int)
    names = task.input_names + task.target_names
    out = [f"Example rows ({', '.join(names)}):"]
    for i in picks:
        values = [*split.inputs[i].tolist(), *split.targets[i].tolist()]
        out.append("- " + ", ".join(_g(float(v)) for v in values))
    return out


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
    lines += _examples(task, train)
    text = "\n".join(lines)
    if len(text) > max_chars:
        text = text[: max_chars - 40].rsplit("\n", 1)[0] + "\n(data view cut to stay short)"
    return text
