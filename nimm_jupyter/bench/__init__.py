"""The search benchmark behind ``nimm bench``: a resumable grid of searches and references.

For every (task, policy, seed) a normal search runs into ``OUT/runs/<task>/<policy>/seed<k>/``
(its own journal, so ``nimm show``/``open_run`` work on it). A finished run is not repeated;
an interrupted one (stopped, crashed, errored, or short of a raised budget) is resumed from its
journal. The ``prior``, ``neural`` and ``hybrid`` references of every task are trained per
seed with the same :class:`TrainConfig`, isolated like search candidates, and cached in
``OUT/references.csv``. :func:`aggregate` then writes ``results.csv`` (one row per run),
``results.md`` (per-task tables of mean ± standard error next to the NIMM paper's NIMMGen
numbers and what is known of their protocol, paired-t verdicts against the references and
the ``sampling`` floor, and a stability summary) and two plots per task.

Modules: :mod:`.config` (the grid), :mod:`.paper` (the paper's numbers), :mod:`.references`,
:mod:`.grid` (the searches), :mod:`.stats` (mean ± s.e., the paired t-test),
:mod:`.aggregate` (the per-task summary and verdicts), :mod:`.markdown`, :mod:`.plots`,
:mod:`.run` (all of it). Nothing here imports IPython.
"""
from __future__ import annotations

from ..search.policies import POLICIES
from .aggregate import STATUS_COLUMNS, aggregate, best_so_far
from .config import REFERENCES_CSV, RESULTS_CSV, RESULTS_MD, BenchConfig, BenchError, run_dir_for
from .grid import plan_grid, run_grid, run_state
from .markdown import results_markdown
from .paper import PAPER_NIMMGEN, PaperRow, paper_row
from .references import run_references
from .run import BenchReport, run_benchmark

__all__ = [
    "POLICIES", "PAPER_NIMMGEN", "PaperRow", "BenchConfig", "BenchReport", "BenchError",
    "paper_row", "run_benchmark", "run_references", "plan_grid", "run_grid", "aggregate",
    "run_dir_for", "run_state", "best_so_far", "results_markdown",
    "RESULTS_CSV", "RESULTS_MD", "REFERENCES_CSV", "STATUS_COLUMNS",
]
