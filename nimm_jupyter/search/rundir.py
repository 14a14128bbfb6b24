"""A search's run directory: where its journal, task, weights and lock live, and how to read
them back.

Layout (one home for every name)::

    <run_dir>/journal.sqlite        the SQLite journal (nodes, branches, events, costs)
    <run_dir>/task.pkl              the pickled Task, for tasks a fresh process cannot rebuild
    <run_dir>/weights/node_N.pt     the state_dict the harness saved for node N
    <run_dir>/weights/node_N.pred.npz  the val/test predictions the driver scored for it
                                    and its one-step predictions on the training split
                                    (named by ``modeling.scoring.predictions_file``)
    <run_dir>/search.lock           held while a process searches the run

:class:`RunDir` is the only code that knows this layout; the search API, ``nimm show``,
export, the summary and the widget go through it.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SearchError

if TYPE_CHECKING:  # kept light: the journal and nodes pull in torch, which export avoids
    import torch

    from ..tasks.base import Task
    from .journal import Journal
    from .node import Node

from .layout import JOURNAL_NAME, LOCK_NAME, TASK_PICKLE, WEIGHTS_DIR

__all__ = ["JOURNAL_NAME", "LOCK_NAME", "TASK_PICKLE", "WEIGHTS_DIR", "RunDir", "TaskRecipe"]


@dataclass(frozen=True)
class TaskRecipe:
    """How a run's task is rebuilt: by registry name and options, or from the run's pickle."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    pickle: Path | None = None  # set: unpickle this file instead of calling the registry

    def build(self) -> "Task":
        """The task. Unpickling runs code from the file: only open run dirs you trust."""
        if self.pickle is not None:
            with open(self.pickle, "rb") as fh:
                return pickle.load(fh)
        from .. import tasks

        return tasks.get(self.name, **self.options)


@dataclass(frozen=True)
class RunDir:
    """One run directory. Cheap to create; nothing is read until a method asks."""

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    # -- paths -----------------------------------------------------------------------------
    @property
    def journal_path(self) -> Path:
        return self.path / JOURNAL_NAME

    @property
    def task_pickle(self) -> Path:
        return self.path / TASK_PICKLE

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_NAME

    def lock_held(self) -> bool:
        """Whether a live process holds the run's lock (the OS drops it when that process
        dies, however it dies). Only tests the lock: never creates or changes the file."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no advisory locks: assume it may be alive
            return True
        try:
            fh = open(self.lock_path, "r")
        except OSError:
            return False  # no lock file: nobody ever held it
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            fh.close()  # closing also drops the shared lock we may have taken
        return False

    def weights_path(self, node_id: int) -> Path:
        """Where the search saves node ``node_id``'s trained weights."""
        return self.path / WEIGHTS_DIR / f"node_{node_id}.pt"

    def node_weights(self, node: "Node") -> Path:
        """The weights file of ``node``: the one its result records (a relative record is
        looked up in the run dir first), else :meth:`weights_path`. It may not exist."""
        recorded = node.result.weights_path if node.result is not None else None
        if not recorded:
            return self.weights_path(node.id)
        p = Path(recorded)
        if not p.is_absolute() and ((self.path / p).exists() or not p.exists()):
            p = self.path / p
        return p.resolve()

    # -- journal ---------------------------------------------------------------------------
    def has_journal(self) -> bool:
        return self.journal_path.exists()

    def open_journal(self, *, readonly: bool = False) -> "Journal":
        """The run's journal (``readonly``: a reader's connection, also while it runs)."""
        from .journal import Journal, JournalError

        try:
            return Journal.for_run(self.path, readonly=readonly)
        except JournalError:
            if readonly and not self.journal_path.exists():  # damaged: its own message
                raise SearchError(f"no search journal in {self.path} "
                                  f"(expected {self.journal_path})") from None
            raise

    # -- task ------------------------------------------------------------------------------
    def save_task(self, task: "Task") -> Path:
        """Pickle ``task`` next to the journal (user tasks a fresh process cannot rebuild)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.task_pickle, "wb") as fh:
            pickle.dump(task, fh)
        return self.task_pickle

    def task_recipe(self, name: str, options: dict[str, Any] | None = None,
                    source: str = "registry") -> TaskRecipe:
        """How to rebuild the run's task: its pickle when there is one (``source="pickle"``
        requires it), else the registry's ``name`` with ``options``."""
        if source == "pickle" or self.task_pickle.exists():
            if not self.task_pickle.exists():
                raise SearchError(f"run {self.path} used a user task but "
                                  f"{self.task_pickle.name} is missing")
            return TaskRecipe(name, dict(options or {}), self.task_pickle.resolve())
        return TaskRecipe(name, dict(options or {}))

    def load_task(self, name: str, options: dict[str, Any] | None = None,
                  source: str = "registry") -> "Task":
        """The run's task (see :meth:`task_recipe`)."""
        return self.task_recipe(name, options, source).build()

    # -- models ----------------------------------------------------------------------------
    def load_model(self, task: "Task", node: "Node", *, train: dict[str, Any] | None = None,
                   device: str = "cpu", refit: bool = True) -> "torch.nn.Module":
        """The trained ``torch.nn.Module`` of ``node``, in eval mode.

        Loaded from the node's saved weights; when they are missing and ``refit`` is true,
        the node is retrained with the harness and ``train`` (the run's training settings)
        and the weights saved where they were expected. This executes the candidate's code
        in this process, with the user's rights, network and environment (no sandbox): an
        explicit step, never taken by a search or its summary (which plots the predictions
        the sandboxed job returned, :func:`~nimm_jupyter.modeling.scoring.predictions_file`).
        Load only runs you trust.
        Raises :class:`SearchError` when the node has no code, no weights (``refit=False``)
        or its retraining fails.
        """
        from ..modeling.config import TrainConfig
        from ..modeling import harness

        if not node.code:
            raise SearchError(f"node {node.id} has no code ({node.message or node.status})")
        weights = self.node_weights(node)
        if not weights.exists():
            if not refit:
                raise SearchError(f"node {node.id} has no saved weights in {self.path}")
            cfg = dict(train or {})
            cfg.update(save_weights=str(weights), device=device)
            weights.parent.mkdir(parents=True, exist_ok=True)
            res = harness.evaluate(task, node.code, TrainConfig(**cfg))
            if not res.ok:
                raise SearchError(f"refitting node {node.id} failed: "
                                  f"{res.status.value}: {res.message}")
        return harness.load_trained(task, node.code, str(weights), device)
