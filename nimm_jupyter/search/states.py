"""How a search run stands (:class:`RunState`) and why it ended (:class:`StopReason`).

Both are str-valued (:class:`TextEnum`), so they compare equal to the strings that journals
written before these enums hold, and JSON, SQLite and f-strings see the bare value.
"""
from __future__ import annotations

import enum


class TextEnum(str, enum.Enum):
    """A str-valued enum whose ``str()`` and ``format()`` give the value (``enum.StrEnum``
    does this from Python 3.11; the package still supports 3.10)."""

    __str__ = str.__str__
    __format__ = str.__format__


class RunState(TextEnum):
    """A run's lifecycle: created -> running -> completed | stopped | error."""

    CREATED = "created"
    RUNNING = "running"
    COMPLETED = "completed"  # a budget or limit ended it
    STOPPED = "stopped"  # asked to stop, interrupted, or its executor was lost
    ERROR = "error"  # the search itself failed
    INTERRUPTED = "interrupted"  # journaled as running, but no process holds the run (read-time only)


class StopReason(TextEnum):
    """Why a run ended. ``EXECUTOR_LOST`` and ``ERROR`` are stored with a detail appended
    (``"error: ValueError: ..."``, see :meth:`with_detail`); :meth:`of` reads either form."""

    BUDGET = "budget"
    TIME_LIMIT = "time_limit"
    MAX_TOKENS = "max_tokens"
    MAX_COST = "max_cost"
    NO_NEW_PROPOSALS = "no_new_proposals"  # every recent proposal duplicated a node
    EXHAUSTED = "exhausted"  # the policy has nothing left to do
    STOPPED = "stopped"
    EXECUTOR_LOST = "cluster_lost"  # the value journals have always stored
    ERROR = "error"

    def with_detail(self, detail: str, limit: int = 500) -> str:
        """The stored text: ``"<value>: <detail>"`` cut to ``limit`` characters."""
        return f"{self.value}: {detail}"[:limit]

    @classmethod
    def of(cls, text: str | None) -> "StopReason | None":
        """The reason a stored text names (with or without a detail), or None."""
        if not text:
            return None
        head = text.split(":", 1)[0]
        try:
            return cls(head)
        except ValueError:
            return None
