"""``run_benchmark``: validate, train the missing references, run the grid, aggregate."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..search.results import json_safe
from .aggregate import aggregate
from .config import (
    REFERENCES_CSV, RESULTS_CSV, RESULTS_MD, BenchConfig, BenchError, Log, log_stderr,
)
from .grid import plan_grid, run_grid
from .references import _build_tasks, run_references


@dataclass
class BenchReport:
    """What a benchmark invocation did and where its outputs are."""

    out: Path
    results_csv: Path
    results_md: Path
    references_csv: Path
    plots: list[Path]
    ran: list[str]
    resumed: list[str]
    skipped: list[str]
    errors: list[str]
    references_trained: int
    summary: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return json_safe({
            "out": str(self.out), "results_csv": str(self.results_csv),
            "results_md": str(self.results_md), "references_csv": str(self.references_csv),
            "plots": [str(p) for p in self.plots],
            "runs": {"ran": self.ran, "resumed": self.resumed, "skipped": self.skipped,
                     "errors": self.errors},
            "references_trained": self.references_trained, "summary": self.summary,
        })


def run_benchmark(config: BenchConfig, log: Log = log_stderr, *, run: bool = True) -> BenchReport:
    """Validate, train the missing references, run or resume the grid, then aggregate.

    With ``run=False`` nothing is trained: the outputs are rebuilt from what ``config.out``
    already holds. Interrupting (Ctrl-C) stops the running searches cleanly; calling this
    again continues where it stopped.
    """
    config.validate()
    if run:
        _check_proposer(config.proposer)
    config.out.mkdir(parents=True, exist_ok=True)
    built = _build_tasks(config)
    trained, outcome = 0, {"ran": [], "resumed": [], "skipped": [], "errors": []}
    if run:
        (config.out / "bench.json").write_text(json.dumps(config.to_dict(), indent=1, default=str))
        plan_grid(config)  # refuse a mismatched OUT before training anything
        trained = run_references(config, built, log)
        outcome = run_grid(config, log)
    summary = aggregate(config, built)
    plots = [Path(p) for s in summary.values() for p in s["plots"]]
    return BenchReport(out=config.out, results_csv=config.out / RESULTS_CSV,
                       results_md=config.out / RESULTS_MD,
                       references_csv=config.out / REFERENCES_CSV, plots=plots,
                       ran=outcome["ran"], resumed=outcome["resumed"],
                       skipped=outcome["skipped"], errors=outcome["errors"],
                       references_trained=trained, summary=summary)


def _check_proposer(name: str) -> None:
    """Fail once, before the grid, instead of once per run (e.g. no API key)."""
    from ..proposers.registry import make_proposer

    try:
        make_proposer(name, seed=0)
    except Exception as exc:  # a proposer's constructor may raise its own error types
        raise BenchError(f"cannot use proposer {name!r}: {exc}") from None
