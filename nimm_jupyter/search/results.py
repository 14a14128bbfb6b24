"""Typed results of a search: :class:`SearchResult` and :func:`open_run`.

A :class:`SearchResult` is a snapshot of a search, live (``Search.result``) or read back from
a run directory's journal (:func:`open_run`). Export, the summary, the widget and the CLI
read these fields rather than guessing at attributes.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..tasks.base import Task
from .errors import SearchError
from .journal import JournalError
from .node import Node
from .rundir import RunDir
from .states import RunState
from .tree import lowest_score

if TYPE_CHECKING:
    import torch

__all__ = ["SearchResult", "json_safe", "open_run"]


@dataclasses.dataclass
class SearchResult:
    """A snapshot of a search: every node, the best one, counts, tokens, cost, stop reason."""

    run_id: str
    run_dir: Path
    task_name: str
    best: Node | None
    nodes: list[Node]
    counts: dict[str, int]
    tokens: int
    cost: float
    wall_time: float
    stop_reason: str | None
    status: str  # running | completed | stopped | error | interrupted (its process died)
    branches: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    _task: Task | None = dataclasses.field(default=None, repr=False)

    @property
    def rundir(self) -> RunDir:
        """The run directory this result was journaled in."""
        return RunDir(self.run_dir)

    @property
    def task(self) -> Task:
        """The task, rebuilt from the run directory when not at hand."""
        if self._task is None:
            s = self.settings
            self._task = self.rundir.load_task(s.get("task_name", self.task_name),
                                               s.get("task_options") or {},
                                               s.get("task_source", "registry"))
        return self._task

    def node(self, node_id: int) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(f"run {self.run_id} has no node {node_id}")

    def table(self) -> Any:
        """One row per node (pandas DataFrame when pandas is installed, else list of dicts)."""
        cols = ("id", "parent", "branch", "operator", "strategy", "change", "state", "status",
                "train_rmse", "val_rmse", "test_rmse")
        rows = [{k: n.summary()[k] for k in cols} for n in self.nodes]
        try:
            import pandas as pd
        except ImportError:
            return rows
        df = pd.DataFrame(rows, columns=list(cols))
        df["parent"] = df["parent"].astype("Int64")  # roots have no parent, not NaN floats
        return df.set_index("id", drop=False)

    def load_model(self, node: int | Node | None = None, device: str = "cpu",
                   refit: bool = True) -> "torch.nn.Module":
        """The trained ``torch.nn.Module`` of ``node`` (default: the best): from its saved
        weights, or (``refit``) retrained with the search's settings when they are missing.
        Runs the candidate's code in this process with your rights: load runs you trust."""
        n = self.best if node is None else (node if isinstance(node, Node) else self.node(node))
        if n is None:
            raise SearchError(f"run {self.run_id} has no successfully evaluated node yet")
        if not n.code:  # before the task is rebuilt: the clearer error
            raise SearchError(f"node {n.id} has no code ({n.message or n.status})")
        return self.rundir.load_model(self.task, n, train=self.settings.get("train"),
                                      device=device, refit=refit)

    def what_if(self, node: int | Node | None = None, trajectory: int = 0, split: str = "test",
                **changes: Any) -> Any:
        """Node ``node``'s (default: the best) forecast of one trajectory under a changed
        input schedule (``scale=``, ``shift=``, ``zero=``, ``inputs=``, ``against=``), beside
        its forecast under the observed one, computed in jailed jobs from its saved weights:
        :func:`~nimm_jupyter.search.whatif.sandbox_what_if` (a DataFrame)."""
        from .whatif import sandbox_what_if

        n = self.best if node is None else node
        if n is None:
            raise SearchError(f"run {self.run_id} has no successfully evaluated node yet")
        return sandbox_what_if(self, n.id if isinstance(n, Node) else int(n), trajectory, split,
                               **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (the ``--json`` output of ``nimm search``/``show``)."""
        return {
            "run_id": self.run_id, "run_dir": str(self.run_dir), "task": self.task_name,
            "status": self.status, "stop_reason": self.stop_reason,
            "best": _best_dict(self.best), "best_rule": ANSWER_RULE,
            "lowest_val": _best_dict(lowest_score(self.nodes)), "counts": dict(self.counts),
            "tokens": self.tokens, "cost": self.cost, "wall_time": self.wall_time,
            "branches": json_safe(self.branches),
            "nodes": [json_safe(n.summary()) for n in self.nodes],
        }


# what "best" in to_dict() is (Tree.answer); "lowest_val" is the node the search selects on
ANSWER_RULE = ("the simplest ok node (fewest trainable parameters) whose validation score is "
               "within one standard error of the lowest one (the one-standard-error rule; the "
               "lowest itself when its score has no standard error); lowest_val is the node "
               "with the lowest validation score")


def json_safe(obj: Any) -> Any:
    """``obj`` with non-finite floats as None (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def _best_dict(n: Node | None) -> dict[str, Any] | None:
    if n is None:
        return None
    r = n.result
    return json_safe({
        "id": n.id, "branch": n.branch, "operator": n.operator, "strategy": n.strategy,
        "change": n.change, "val_rmse": n.rmse("val"), "test_rmse": n.rmse("test"),
        "train_rmse": n.rmse("train"), "val_score": n.score, "val_score_se": n.score_se,
        "parameters": dict(r.parameters) if r is not None else {},
        "n_parameters": r.n_parameters if r is not None else 0,
        "n_network_parameters": r.n_network_parameters if r is not None else 0,
        "weights": r.weights_path if r is not None else None,
    })


def open_run(run_dir: str | Path) -> SearchResult:
    """Read a run directory's journal (read-only; works while the search is running)."""
    rd = RunDir(run_dir)
    journal = rd.open_journal(readonly=True)
    try:
        row = journal.search_row()
        tree = journal.load_tree()
        totals = journal.totals()
        elapsed = float(journal.get_meta("elapsed", 0.0) or 0.0)
    except JournalError as exc:  # created but never initialised (a start that died at once)
        raise SearchError(f"cannot open {rd.path}: {exc}") from None
    finally:
        journal.close()
    nodes = tree.snapshot()
    status = row["status"]
    if status == RunState.RUNNING and not rd.lock_held():
        status = RunState.INTERRUPTED  # the journal says running, but its process is gone
    return SearchResult(
        run_id=row["run_id"], run_dir=rd.path, task_name=row["task_name"], best=tree.answer(nodes),
        nodes=nodes, counts=tree.counts(), tokens=totals["tokens_in"] + totals["tokens_out"],
        cost=totals["cost"], wall_time=elapsed, stop_reason=row["stop_reason"],
        status=status, branches=tree.branch_stats(), settings=row["settings"],
    )
