"""A bounded view of a task's training data for a proposer's prompt.

Per-variable summary statistics, how often each input is non-zero (dosing frequency) and,
for trajectory tasks, a few representative training trajectories: the ones with the
median, lowest and highest final value of the first target, at most ``MAX_POINTS`` time
points each, with their input schedule. Only the training split is shown; validation and
test data never reach a prompt. The text is capped at ``MAX_CHARS``.
"""
from __future__ import annotations

import numpy as np

from ..tasks.base import Task

MAX_CHARS = 4000
MAX_COLUMNS = 24  # variables with summary statistics, per block
N_EXAMPLES = 3  # representative trajectories: median, lowest and highest final value
MAX_POINTS = 12  # time points shown per trajectory (and input events per input)
MAX_EXAMPLE_VARS = 4  # targets (and inputs) shown per trajectory


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
        return text[: max_chars - 40].rsplit("\n", 1)[0] + "\n(data view cut to stay short)"
    if task.kind.value == "trajectory" and len(train):
        head, *examples = example_trajectories(task)
        fits = [e for e in examples if len(text) + len(head) + len(e) + 2 <= max_chars]
        fits = [e for i, e in enumerate(fits)  # whole trajectories only, while they fit
                if len(text) + len(head) + sum(map(len, fits[:i + 1])) + i + 2 <= max_chars]
        if fits:
            text = "\n".join([text, head.replace("{shown}", str(len(fits))), *fits])
    return text


def representative(final: np.ndarray, k: int = N_EXAMPLES) -> list[tuple[int, str]]:
    """(index, why) of up to ``k`` samples: median, lowest, highest ``final`` (stable ties)."""
    order = np.argsort(np.where(np.isfinite(final), final, np.inf), kind="stable")
    n_finite = int(np.isfinite(final).sum())
    if n_finite == 0:
        return [(int(order[0]), "first")]
    picks = [(int(order[(n_finite - 1) // 2]), "median"), (int(order[0]), "lowest"),
             (int(order[n_finite - 1]), "highest")]
    out: list[tuple[int, str]] = []
    for i, why in picks[:k]:
        if all(i != j for j, _ in out):
            out.append((i, why))
    return out


def _row(values: np.ndarray) -> str:
    return ", ".join(_g(float(v)) for v in values)


def _schedule(name: str, times: np.ndarray, values: np.ndarray, shown: np.ndarray) -> str:
    """An input as its events (time: value) when it is sparse, else at the shown points."""
    events = np.flatnonzero(np.isfinite(values) & (values != 0))
    if len(events) <= MAX_POINTS and len(events) < len(values):
        if not len(events):
            return f"  {name}: 0 throughout"
        return (f"  {name} non-zero at (time=value): "
                + ", ".join(f"{_g(float(times[i]))}={_g(float(values[i]))}" for i in events))
    return f"  {name}: {_row(values[shown])}"


def example_trajectories(task: Task) -> list[str]:
    """A header (with ``{shown}`` for how many follow) and one text block per representative
    training trajectory, subsampled to at most ``MAX_POINTS`` time points."""
    train = task.train
    targets = np.asarray(train.targets, dtype=np.float64)
    inputs = np.asarray(train.inputs, dtype=np.float64)
    n, T = targets.shape[:2]
    times = (np.asarray(task.time, dtype=np.float64) if task.time is not None
             else np.arange(T, dtype=np.float64))
    shown = np.unique(np.linspace(0, T - 1, min(T, MAX_POINTS)).round().astype(int))
    first = task.target_names[0]
    more = [f"first {MAX_EXAMPLE_VARS} of {len(names)} {what}" for what, names in
            (("targets", task.target_names), ("inputs", task.input_names))
            if len(names) > MAX_EXAMPLE_VARS]
    head = (f"Representative training trajectories ({{shown}} of {n}, by final {first}; "
            f"{len(shown)} of {T} time points{'; ' + ', '.join(more) if more else ''}; "
            f"3 significant digits):\n  time: {_row(times[shown])}")
    blocks = []
    for i, why in representative(targets[:, -1, 0]):
        lines = [f"- trajectory {i} ({why} final {first}):"]
        lines += [f"  {name}: {_row(targets[i, shown, j])}"
                  for j, name in enumerate(task.target_names[:MAX_EXAMPLE_VARS])]
        lines += [_schedule(name, times, inputs[i, :, j], shown)
                  for j, name in enumerate(task.input_names[:MAX_EXAMPLE_VARS])]
        blocks.append("\n".join(lines))
    return [head, *blocks]
