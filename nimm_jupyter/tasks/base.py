"""The Task contract: one modelling problem, its data splits and its mechanistic prior.

A task is plain data (numpy arrays + text), picklable, so it can be shipped once to
isolated worker processes. Candidates never see a :class:`Task`; they get the smaller
:class:`TaskSpec` (sizes, names, scales, constants) built by :meth:`Task.spec`.

Array layout
------------
* ``trajectory`` tasks: ``Split.targets`` is ``(N, T, S)`` (N trajectories, T time points,
  S observed state variables); ``Split.inputs`` is ``(N, T, U)`` exogenous inputs/actions
  known over the whole horizon (U may be 0). ``Task.time`` is ``(T,)``. The model sees the
  first ``Task.context`` steps of the targets and must forecast the remaining
  ``T - context`` steps (a full rollout, not one-step teacher forcing).
* ``tabular`` tasks: ``Split.inputs`` is ``(N, F)`` features and ``Split.targets`` is
  ``(N, Y)``.
* ``Split.groups`` (optional, ``(N,)``) names the unit each row belongs to (patient,
  alloy composition, window start); splits never share a group.
* ``Split.window_start`` (optional, ``(N,)`` int): for samples cut as windows out of longer
  series, the step of its own series where each window starts. Windows of one series that
  start fewer than ``T`` steps apart overlap, so a later window's context holds an earlier
  one's targets: the driver reveals such hidden windows in time order
  (:mod:`nimm_jupyter.execution.reveal`). Set by every window cutter; None otherwise.
* ``Task.scenarios`` (optional): held-out **intervention scenarios**, data under conditions no
  split contains (a dosing policy the simulator never used, a mobility cut). Same layout as a
  split; scored for every ``ok`` node, never used for selection, never shown to a proposer.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class TaskDataError(ValueError):
    """The data cannot become a task; the message names the column/row at fault."""


class TaskKind(str, enum.Enum):
    TRAJECTORY = "trajectory"
    TABULAR = "tabular"


class DataSource(str, enum.Enum):
    """Honesty label: where the numbers come from."""

    REAL = "real"  # measured data from a public origin
    SIMULATED = "simulated"  # a published simulator, reimplemented (e.g. Geng et al. PKPD)
    SYNTHETIC = "synthetic"  # a stand-in we invented because the real data is not available


@dataclass(frozen=True)
class Variable:
    """A named quantity with its unit."""

    name: str
    unit: str = ""
    description: str = ""


@dataclass
class Split:
    inputs: np.ndarray
    targets: np.ndarray
    groups: np.ndarray | None = None
    window_start: np.ndarray | None = None  # (N,) int; see the module docstring

    def __len__(self) -> int:
        return int(self.targets.shape[0])


@dataclass
class Scenario:
    """A held-out intervention scenario: its data and what was changed, for people (never
    for a proposer)."""

    split: Split
    description: str


SPLIT_NAMES = ("train", "val", "test")


@dataclass
class TaskSpec:
    """What a candidate model's constructor receives (``Model(spec)``).

    Everything is in the data's original units; ``target_scale``/``input_scale`` are the
    per-variable standard deviations on the training split, for candidates that want to
    normalise what they feed into a neural network.
    """

    name: str
    kind: str
    input_names: list[str]
    target_names: list[str]
    n_inputs: int
    n_targets: int
    target_scale: Any  # torch.Tensor (n_targets,)
    input_scale: Any  # torch.Tensor (n_inputs,)
    target_mean: Any  # torch.Tensor (n_targets,)
    input_mean: Any  # torch.Tensor (n_inputs,)
    constants: dict[str, Any] = field(default_factory=dict)  # name -> torch.Tensor
    # trajectory only
    context: int = 0
    horizon: int = 0
    time: Any = None  # torch.Tensor (T,)
    dt: float = 1.0


@dataclass
class Task:
    """One modelling problem. See the module docstring for array layouts."""

    name: str
    kind: TaskKind
    description: str  # natural language for the proposer: variables, units, ranges, prior
    source: DataSource
    provenance: str  # where the data comes from and what to cite
    inputs: list[Variable]
    targets: list[Variable]
    train: Split
    val: Split
    test: Split
    prior_code: str  # candidate source of the mechanistic prior (parameters to be fitted)
    prior_omits: str  # what the prior is known to leave out
    hybrid_code: str | None = None  # a hand-written neural-integrated reference candidate
    family: str = "generic"  # building-block family for the offline proposer
    time: np.ndarray | None = None
    context: int = 1
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # how it was built (sizes, seed)
    scenarios: dict[str, Scenario] = field(default_factory=dict)  # held-out interventions

    def __post_init__(self) -> None:
        self.kind = TaskKind(self.kind)
        self.source = DataSource(self.source)
        for name in self.scenarios:
            if not name.isidentifier() or name in SPLIT_NAMES or name.endswith("_one_step"):
                raise TaskDataError(f"scenario name {name!r} must be an identifier that is not "
                                    "a split name (train, val, test) nor end in _one_step")

    # -- views -------------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        return [v.name for v in self.inputs]

    @property
    def target_names(self) -> list[str]:
        return [v.name for v in self.targets]

    def split(self, which: str) -> Split:
        """A split by name, or a scenario's data by its name."""
        if which in SPLIT_NAMES:
            return getattr(self, which)
        if which in self.scenarios:
            return self.scenarios[which].split
        raise ValueError(f"unknown split {which!r}; expected train, val, test"
                         + (f" or a scenario ({', '.join(self.scenarios)})" if self.scenarios else ""))

    def sizes(self) -> dict[str, int]:
        return {s: len(self.split(s)) for s in ("train", "val", "test")}

    def summary(self) -> dict[str, Any]:
        """One-line facts used by ``nimm tasks``."""
        first = self.description.strip().splitlines()[0] if self.description.strip() else ""
        return {
            "name": self.name,
            "kind": self.kind.value,
            "source": self.source.value,
            "splits": self.sizes(),
            "description": first,
        }

    def _scales(self, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flat = arr.reshape(-1, arr.shape[-1]) if arr.size else np.zeros((1, arr.shape[-1]))
        mean = np.nanmean(flat, axis=0) if flat.shape[0] else np.zeros(arr.shape[-1])
        std = np.nanstd(flat, axis=0) if flat.shape[0] else np.ones(arr.shape[-1])
        std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
        return mean.astype(np.float64), std.astype(np.float64)

    def spec(self) -> TaskSpec:
        """The candidate-facing description (torch tensors, float32)."""
        import torch

        y_mean, y_std = self._scales(self.train.targets)
        if self.train.inputs.shape[-1]:
            u_mean, u_std = self._scales(self.train.inputs)
        else:
            u_mean, u_std = np.zeros(0), np.ones(0)
        f32 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
        spec = TaskSpec(
            name=self.name,
            kind=self.kind.value,
            input_names=self.input_names,
            target_names=self.target_names,
            n_inputs=len(self.inputs),
            n_targets=len(self.targets),
            target_scale=f32(y_std),
            input_scale=f32(u_std),
            target_mean=f32(y_mean),
            input_mean=f32(u_mean),
            constants={k: f32(v) for k, v in self.constants.items()},
        )
        if self.kind is TaskKind.TRAJECTORY:
            T = int(self.train.targets.shape[1])
            t = self.time if self.time is not None else np.arange(T, dtype=np.float64)
            spec.context = int(self.context)
            spec.horizon = T - int(self.context)
            spec.time = f32(t)
            spec.dt = float(t[1] - t[0]) if T > 1 else 1.0
        return spec
