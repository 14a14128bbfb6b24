"""File names inside a run directory: one home, read by the journal and by :class:`~.rundir.RunDir`.

A module of constants only, so that the journal (below ``RunDir``) and light readers such as
export can share them without importing each other.
"""
from __future__ import annotations

JOURNAL_NAME = "journal.sqlite"  # the SQLite journal (nodes, branches, events, costs)
TASK_PICKLE = "task.pkl"  # the task as the search saw it (used when it cannot be rebuilt by name)
LOCK_NAME = "search.lock"  # held by the process running the search
WEIGHTS_DIR = "weights"  # weights/node_N.pt, one file per trained node
