"""One candidate in the search tree: its code, where it came from and how it scored."""
from __future__ import annotations

import difflib
import time
from dataclasses import dataclass, field
from typing import Any

from ..modeling.result import EvalResult
from ..proposers.base import NodeView, Strategy
from .states import TextEnum

OPERATORS = ("draft", "refine", "debug", "distill")  # distill: search.distill_step


class NodeState(TextEnum):
    """A node's lifecycle: pending -> running -> done | failed."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"

    @property
    def completed(self) -> bool:
        return self in (NodeState.DONE, NodeState.FAILED)


PROPOSAL_ERROR = "proposal_error"  # status shown for a node whose proposer produced no code


def unified_diff(parent_code: str, code: str, parent_id: int | None = None) -> str:
    """The unified diff of ``code`` against its parent (empty for a draft)."""
    if parent_id is None:
        return ""
    lines = difflib.unified_diff(
        parent_code.splitlines(keepends=True), code.splitlines(keepends=True),
        fromfile=f"node_{parent_id}.py", tofile="candidate.py",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


@dataclass
class Node:
    """A candidate model in the tree. ``state`` follows pending -> running -> done | failed.

    ``failed`` means the evaluation ended with a non-ok status, or the proposer produced no
    code (then ``error`` says why and ``result`` is None).
    """

    id: int
    parent: int | None
    branch: int
    operator: str
    strategy: str | None = None  # the branch strategy's title
    change: str = ""
    diff: str = ""
    code: str = ""
    state: NodeState = NodeState.PENDING
    result: EvalResult | None = None
    error: str = ""  # proposal failure message (the evaluation's is in result.message)
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    debug_depth: int = 0
    proposer_meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.operator not in OPERATORS:
            raise ValueError(f"node operator must be one of {OPERATORS}, got {self.operator!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        # Every assignment of ``state`` (construction, journals' bare values, later updates)
        # goes through the enum, so ``node.state`` is always a NodeState.
        if name == "state" and not isinstance(value, NodeState):
            try:
                value = NodeState(value)
            except ValueError:
                states = tuple(s.value for s in NodeState)
                raise ValueError(f"node state must be one of {states}, got {value!r}") from None
        super().__setattr__(name, value)

    # -- derived -------------------------------------------------------------------------
    @property
    def completed(self) -> bool:
        return self.state.completed

    @property
    def ok(self) -> bool:
        return self.result is not None and self.result.ok

    @property
    def status(self) -> str:
        """Evaluation status value, ``proposal_error``, or the lifecycle state if not finished."""
        if self.result is not None:
            return self.result.status.value
        if self.state is NodeState.FAILED:
            return PROPOSAL_ERROR
        return self.state.value

    @property
    def score(self) -> float:
        """Normalised validation RMSE; ``inf`` unless evaluated ok."""
        return self.result.score if self.result is not None else float("inf")

    @property
    def score_se(self) -> float | None:
        """Bootstrap standard error of :attr:`score` (None when not computed)."""
        return self.result.val.rmse_norm_se if self.ok else None

    @property
    def message(self) -> str:
        if self.result is not None and self.result.message:
            return self.result.message
        return self.error

    def rmse(self, split: str) -> float:
        if self.result is None:
            return float("nan")
        return float(getattr(self.result, split).rmse)

    def view(self, strategy: Strategy | None = None, meta: dict[str, Any] | None = None) -> NodeView:
        """The proposer's view: no test scores, no weights path."""
        metrics = self.result.for_proposer() if self.result is not None else {
            "status": self.status, "message": self.error,
        }
        return NodeView(
            id=self.id, branch=self.branch, operator=self.operator, change=self.change,
            code=self.code, status=self.status, metrics=metrics, strategy=strategy,
            meta={**self.proposer_meta, **(meta or {})},
        )

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["result"] = self.result.to_dict() if self.result is not None else None
        d["proposer_meta"] = dict(self.proposer_meta)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Node":
        d = dict(d)
        if d.get("result") is not None:
            d["result"] = EvalResult.from_dict(d["result"])
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})

    def summary(self) -> dict[str, Any]:
        """A flat row for tables: ids, lineage, status and RMSEs (test included: for people)."""
        r = self.result
        return {
            "id": self.id, "parent": self.parent, "branch": self.branch,
            "operator": self.operator, "strategy": self.strategy, "change": self.change,
            "state": self.state, "status": self.status,
            "train_rmse": self.rmse("train"), "val_rmse": self.rmse("val"),
            "test_rmse": self.rmse("test"),
            "val_score": self.score if r is not None and r.ok else float("nan"),
            "val_score_se": self.score_se,
            "n_parameters": r.n_parameters if r is not None else None,
            "message": self.message,
        }

