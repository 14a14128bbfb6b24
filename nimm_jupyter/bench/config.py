"""What one benchmark grid runs: :class:`BenchConfig`, and where its outputs live."""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..modeling.config import TrainConfig
from ..modeling.references import REFERENCES
from ..search.config import SearchConfig
from ..search.policies import POLICIES
from ..tasks import accepts_option

RESULTS_CSV, RESULTS_MD, REFERENCES_CSV = "results.csv", "results.md", "references.csv"
Log = Callable[[str], None]
_SEARCH = SearchConfig()  # the defaults a benchmark shares with a single search


class BenchError(ValueError):
    """A benchmark could not be set up or continued (the message says what is wrong)."""


@dataclass
class BenchConfig:
    """One benchmark grid. ``seeds`` is a count: seeds ``0 .. seeds-1``.

    ``workers`` evaluations run at once, as that many searches side by side (each search
    evaluates one node at a time, so a policy's decisions and a seed's result do not depend
    on ``workers``). ``options`` go to every task whose factory takes them; ``task_options``
    (task -> options) to one task and win over ``options``.
    """

    tasks: list[str]
    out: Path
    policies: list[str] = field(default_factory=lambda: list(POLICIES))
    seeds: int = 3
    budget: int = 8
    proposer: str = "offline"
    workers: int = 1
    max_epochs: int | None = None
    branches: int = _SEARCH.branches
    device: str = _SEARCH.device
    options: dict[str, Any] = field(default_factory=dict)
    task_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    eval_timeout: float = _SEARCH.eval_timeout
    references: tuple[str, ...] = REFERENCES

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.tasks = list(self.tasks)
        self.policies = list(self.policies)

    def validate(self) -> None:
        """Raise :class:`BenchError` naming the first bad setting."""
        from .. import tasks as registry

        if not self.tasks:
            raise BenchError("no tasks given")
        known = registry.list_tasks()
        for t in self.tasks:
            if t not in known:
                raise BenchError(f"unknown task {t!r}; available: {', '.join(known)}")
        if not self.policies:
            raise BenchError("no policies given")
        for p in self.policies:
            if p not in POLICIES:
                raise BenchError(f"unknown policy {p!r}; choose from {', '.join(POLICIES)}")
        for name, values in (("tasks", self.tasks), ("policies", self.policies)):
            if len(set(values)) != len(values):
                raise BenchError(f"{name} are listed more than once: {', '.join(values)}")
        for ref in self.references:
            if ref not in REFERENCES:
                raise BenchError(f"unknown reference {ref!r}; choose from {', '.join(REFERENCES)}")
        checks = (("seeds", self.seeds, 1), ("budget", self.budget, 1),
                  ("workers", self.workers, 1), ("branches", self.branches, 1))
        for name, value, low in checks:
            if not isinstance(value, int) or value < low:
                raise BenchError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.max_epochs is not None and self.max_epochs < 1:
            raise BenchError(f"max_epochs must be >= 1, got {self.max_epochs}")
        if self.eval_timeout <= 0:
            raise BenchError(f"eval_timeout must be > 0, got {self.eval_timeout}")
        for t in self.task_options:
            if t not in self.tasks:
                raise BenchError(f"task option given for {t!r}, which is not among the "
                                 f"benchmark's tasks ({', '.join(self.tasks)})")
        for key in self.options:
            if not any(accepts_option(t, key) for t in self.tasks):
                raise BenchError(f"option {key!r} is accepted by none of the tasks "
                                 f"({', '.join(self.tasks)})")

    def options_for(self, task: str) -> dict[str, Any]:
        """The task options one task is built with."""
        opts = {k: v for k, v in self.options.items() if accepts_option(task, k)}
        opts.update(self.task_options.get(task, {}))
        return opts

    def train_config(self, seed: int) -> TrainConfig:
        """The training settings of every candidate and reference of ``seed``."""
        if self.max_epochs is not None:
            return TrainConfig(seed=seed, max_epochs=self.max_epochs)
        return TrainConfig(seed=seed)

    def search_config(self, policy: str, seed: int) -> SearchConfig:
        """The settings of the grid cell's search (one evaluation at a time: a lane)."""
        return SearchConfig(budget=self.budget, branches=self.branches, policy=policy,
                            proposer=self.proposer, workers=1, device=self.device, seed=seed,
                            train=self.train_config(seed), eval_timeout=self.eval_timeout)

    def seed_list(self) -> list[int]:
        return list(range(self.seeds))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["out"] = str(self.out)
        d["references"] = list(self.references)
        return d


def log_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_dir_for(out: str | Path, task: str, policy: str, seed: int) -> Path:
    """Where the search of one grid cell lives."""
    return Path(out) / "runs" / task / policy / f"seed{seed}"
