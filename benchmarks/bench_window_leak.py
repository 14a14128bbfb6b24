"""How many validation/test targets a job could hold before it predicts them (not a test).

For each task: the share of validation and test targets (steps after the context) that
occur among the hidden splits' values the job holds *before its prediction of that target*,
counted two ways: ``values`` (each target value, ``np.isin`` on values rounded to 9
decimals, the measure docs/SECURITY.md first quoted) and ``steps`` (each target step's whole
state vector, all S values at once, among the held steps' vectors):

* ``all contexts``: what every job was given before the window reveal (every hidden
  window's context; the figure docs/SECURITY.md quoted);
* ``window reveal``: what it holds now: the task it is given
  (:func:`~nimm_jupyter.modeling.scoring.without_targets`) plus the contexts the driver's
  :class:`~nimm_jupyter.execution.reveal.Revealer` has sent before that window's stage
  (driven here with zero predictions). Tasks without windows (the lung tasks) are not
  window-revealed; their figure is the contexts they are given.

Value matching also counts coincidences (equal values that are not the same observation,
such as zero doses or small integer counts: most of these tasks are integer counts); a
whole step's vector (50 states, 19-20 patches) coincides only when it is the same
observation, so ``steps`` is the leak count (for S = 1 or 2 it can still coincide).

Usage: ``NIMM_DATA_DIR=... python benchmarks/bench_window_leak.py [task ...]``.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from nimm_jupyter import tasks
from nimm_jupyter.execution.protocol import decode_array, encode_array
from nimm_jupyter.execution.reveal import Revealer
from nimm_jupyter.modeling.scoring import HIDDEN_SPLITS, window_stages, without_targets

DEFAULT = ("influenza_usa", "covid_bogota_synthetic", "covid_medellin_synthetic",
           "mrsa_virginia_synthetic", "lung_cancer_chemo")


def _share(found: int, total: int) -> str:
    return f"{100.0 * found / max(total, 1):.1f}%"


def _rounded(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).ravel()
    return np.round(a[np.isfinite(a)], 9)


def _rows(a: np.ndarray) -> set[bytes]:
    """Every fully observed step of ``a`` (..., S) as the bytes of its rounded vector."""
    a = np.round(np.asarray(a, dtype=np.float64).reshape(-1, np.shape(a)[-1]), 9)
    return {r.tobytes() for r in a[np.isfinite(a).all(axis=1)]}


class Counter:
    """Targets found among held values, per split, both ways (see the module docstring)."""

    def __init__(self) -> None:
        self.found = {s: [0, 0] for s in HIDDEN_SPLITS}
        self.total = {s: [0, 0] for s in HIDDEN_SPLITS}

    def add(self, split: str, target: np.ndarray, values: np.ndarray, rows: set[bytes]) -> None:
        flat = _rounded(target)
        self.found[split][0] += int(np.isin(flat, values).sum())
        self.total[split][0] += flat.size
        steps = np.round(target.reshape(-1, target.shape[-1]), 9)
        self.found[split][1] += sum(r.tobytes() in rows for r in steps)
        self.total[split][1] += len(steps)

    def shares(self) -> dict[str, str]:
        return {s: " / ".join(_share(f, t) for f, t in zip(self.found[s], self.total[s]))
                for s in HIDDEN_SPLITS}


def all_contexts(task) -> dict[str, str]:
    """Each hidden split's targets found in that split's contexts (the old view)."""
    C = task.context
    count = Counter()
    for s in HIDDEN_SPLITS:
        y = np.asarray(task.split(s).targets)
        count.add(s, y[:, C:], _rounded(y[:, :C]), _rows(y[:, :C]))
    return count.shares()


def window_reveal(task) -> dict[str, str]:
    """Each hidden split's targets found among the values the job holds of the hidden
    splits just before it predicts them (given, plus revealed so far)."""
    C = task.context
    hidden = without_targets(task)
    held = [np.asarray(hidden.split(s).targets, dtype=np.float64) for s in HIDDEN_SPLITS]
    count = Counter()
    stages = window_stages(task)
    if not stages:  # no windows: what it is given is all it holds before the one-step reveal
        values, rows = np.concatenate([_rounded(h) for h in held]), set().union(*map(_rows, held))
        for s in HIDDEN_SPLITS:
            count.add(s, np.asarray(task.split(s).targets)[:, C:], values, rows)
    reveal = Revealer(task)
    reveal.open()
    H, S = task.val.targets.shape[1] - C, task.val.targets.shape[2]
    for start, idx in stages:
        values, rows = np.concatenate([_rounded(h) for h in held]), set().union(*map(_rows, held))
        for s, sel in idx.items():
            count.add(s, np.asarray(task.split(s).targets)[sel][:, C:], values, rows)
        reveal.accept({"kind": "windows", "start": start, "predictions": {
            s: encode_array(np.zeros((len(sel), H, S))) for s, sel in idx.items()}})
        for line in bytes(reveal.outbox).splitlines():
            held += [decode_array(enc, "contexts") for enc in json.loads(line)["contexts"].values()]
        reveal.outbox.clear()
    return count.shares()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tasks", nargs="*", default=list(DEFAULT))
    args = ap.parse_args()
    print("| task | windows | all contexts: val values / steps, test values / steps | "
          "window reveal: the same |")
    print("|---|---|---|---|")
    for name in args.tasks:
        task = tasks.get(name)
        before, now = all_contexts(task), window_reveal(task)
        n = len(window_stages(task))
        print(f"| {name} | {n or 'none'}{' starts' if n else ''} | {before['val']}, "
              f"{before['test']} | {now['val']}, {now['test']} |")


if __name__ == "__main__":
    main()
