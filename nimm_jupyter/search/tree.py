"""The search tree: branches (one integration strategy each) holding nodes, plus diversity checks.

A branch is the subtree under one draft. Its nodes are kept in the flat ``Tree.nodes`` map
(id -> Node); branch statistics are derived from them, so a tree rebuilt from the journal
answers every question the live one did.
"""
from __future__ import annotations

import difflib
import math
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..proposers.base import Strategy
from .node import Node, NodeState
from .states import TextEnum

NEAR_DUPLICATE = 0.95  # code similarity above which two drafts count as the same model


class BranchState(TextEnum):
    ACTIVE = "active"
    PRUNED = "pruned"  # the policy gave up on it (``Branch.note`` says why)


@dataclass
class Branch:
    id: int
    strategy: Strategy | None
    status: BranchState = BranchState.ACTIVE
    note: str = ""  # why it was pruned
    created: float = field(default_factory=time.time)
    rejects: int = 0  # proposals rejected as duplicates since its last improvement

    @property
    def title(self) -> str:
        return self.strategy.title if self.strategy is not None else f"branch {self.id}"

    def to_dict(self) -> dict[str, Any]:
        s = self.strategy
        return {
            "id": self.id, "status": self.status, "note": self.note, "created": self.created,
            "rejects": self.rejects,
            "strategy": None if s is None else {"title": s.title, "description": s.description,
                                                "key": s.key},
        }

    def __post_init__(self) -> None:
        self.status = BranchState(self.status)  # journals store the bare value

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Branch":
        s = d.get("strategy")
        return cls(id=int(d["id"]), strategy=Strategy(**s) if s else None,
                   status=d.get("status", BranchState.ACTIVE), note=d.get("note", ""),
                   created=float(d.get("created", 0.0)), rejects=int(d.get("rejects", 0)))


class Tree:
    """Nodes and branches of one search. Mutated by the runner thread only; reads may come
    from other threads (status, widget), so mutations and snapshots take a lock."""

    def __init__(self) -> None:
        self.nodes: dict[int, Node] = {}
        self.branches: dict[int, Branch] = {}
        self.strategies_exhausted = False  # the proposer had no new strategy to offer
        self.lock = threading.RLock()

    # -- mutation ------------------------------------------------------------------------
    def next_node_id(self) -> int:
        return max(self.nodes, default=-1) + 1

    def next_branch_id(self) -> int:
        return max(self.branches, default=-1) + 1

    def add_node(self, node: Node) -> Node:
        with self.lock:
            if node.id in self.nodes:
                raise ValueError(f"node {node.id} already exists")
            if node.branch not in self.branches:
                raise ValueError(f"node {node.id} names unknown branch {node.branch}")
            if node.parent is not None and node.parent not in self.nodes:
                raise ValueError(f"node {node.id} names unknown parent {node.parent}")
            self.nodes[node.id] = node
        return node

    def add_branch(self, strategy: Strategy | None) -> Branch:
        with self.lock:
            branch = Branch(id=self.next_branch_id(), strategy=strategy)
            self.branches[branch.id] = branch
        return branch

    def prune(self, branch_id: int, note: str) -> Branch:
        with self.lock:
            b = self.branches[branch_id]
            b.status, b.note = BranchState.PRUNED, note
        return b

    # -- queries -------------------------------------------------------------------------
    def snapshot(self) -> list[Node]:
        with self.lock:
            return [self.nodes[i] for i in sorted(self.nodes)]

    def branch_nodes(self, branch_id: int) -> list[Node]:
        with self.lock:
            return [n for i, n in sorted(self.nodes.items()) if n.branch == branch_id]

    def children(self, node_id: int) -> list[Node]:
        with self.lock:
            return [n for i, n in sorted(self.nodes.items()) if n.parent == node_id]

    def active_branches(self) -> list[Branch]:
        return [b for _, b in sorted(self.branches.items()) if b.status is BranchState.ACTIVE]

    def best(self, nodes: Iterable[Node] | None = None) -> Node | None:
        """Lowest validation score among ok nodes (ties: the earlier node)."""
        return lowest_score(self.snapshot() if nodes is None else nodes)

    def answer(self, nodes: Iterable[Node] | None = None) -> Node | None:
        """The node a search hands back: the simplest ok node (fewest trainable parameters)
        whose validation score is within one standard error of the best node's (the
        one-standard-error rule); the best node itself when its score carries no standard
        error. Selection inside the search (:meth:`best`) is not changed by this."""
        return one_se_answer(self.snapshot() if nodes is None else nodes)

    def branch_best(self, branch_id: int) -> Node | None:
        return self.best(self.branch_nodes(branch_id))

    def robust_score(self, branch_id: int, top: int = 2) -> float:
        """Mean of the branch's best ``top`` validation scores: one lucky node is not enough."""
        scores = sorted(n.score for n in self.branch_nodes(branch_id)
                        if n.ok and math.isfinite(n.score))
        return sum(scores[:top]) / len(scores[:top]) if scores else float("inf")

    def since_improvement(self, branch_id: int) -> int:
        """Completed expansions (and rejected proposals) after the branch's best node."""
        nodes = self.branch_nodes(branch_id)
        best = self.best(nodes)
        after = [n for n in nodes if n.completed and (best is None or n.id > best.id)]
        return len(after) + self.branches[branch_id].rejects

    def in_flight(self, branch_id: int | None = None) -> list[Node]:
        nodes = self.snapshot() if branch_id is None else self.branch_nodes(branch_id)
        return [n for n in nodes if not n.state.completed]

    def counts(self) -> dict[str, int]:
        """Nodes by status value (ok, runtime_error, ..., pending, running)."""
        out: dict[str, int] = {}
        for n in self.snapshot():
            out[n.status] = out.get(n.status, 0) + 1
        return out

    def branch_stats(self) -> list[dict[str, Any]]:
        rows = []
        for bid, b in sorted(self.branches.items()):
            nodes = self.branch_nodes(bid)
            best = self.best(nodes)
            rows.append({
                "branch": bid, "strategy": b.title, "status": b.status, "note": b.note,
                "nodes": len(nodes), "ok": sum(n.ok for n in nodes),
                "failed": sum(n.state is NodeState.FAILED for n in nodes),
                "best_node": best.id if best else None,
                "best_val_score": best.score if best else None,
                "best_val_rmse": best.rmse("val") if best else None,
            })
        return rows

    def history(self, branch_id: int, limit: int = 10) -> list[Node]:
        """Edits (refine/debug) of a branch, oldest first, the last ``limit``. In-flight ones
        are included (without metrics) so a proposer does not repeat an edit being tried."""
        edits = [n for n in self.branch_nodes(branch_id) if n.operator != "draft"]
        return edits[-limit:]


# -- diversity ---------------------------------------------------------------------------
_STOP = {"a", "an", "the", "of", "for", "to", "in", "on", "with", "and", "by", "as", "via",
         "neural", "network", "nn", "model", "term", "learned", "learnable", "using"}
_WORD = re.compile(r"[a-z0-9]+")
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+\.?\d*(?:[eE][-+]?\d+)?|\S")


def _words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def similar_strategies(a: Strategy, b: Strategy) -> bool:
    """Near-duplicate strategies: same key, same normalised title, or nearly the same words."""
    if a.key and a.key == b.key:
        return True
    ta, tb = " ".join(_words(a.title)), " ".join(_words(b.title))
    if ta == tb or difflib.SequenceMatcher(None, ta, tb).ratio() > 0.9:
        return True
    da = set(_words(a.title + " " + a.description))
    db = set(_words(b.title + " " + b.description))
    return len(da) >= 4 and len(db) >= 4 and _jaccard(da, db) > 0.8


def diverse_strategies(new: list[Strategy], existing: list[Strategy], k: int) -> list[Strategy]:
    """Up to ``k`` of ``new``, dropping any near-duplicate of ``existing`` or of each other."""
    kept: list[Strategy] = []
    for s in new:
        if len(kept) >= k:
            break
        if not s.title.strip():
            continue
        if any(similar_strategies(s, o) for o in [*existing, *kept]):
            continue
        kept.append(s)
    return kept


def code_tokens(code: str) -> list[str]:
    """Tokens of code without comments and docstring-ish blank noise."""
    lines = [line.split("#", 1)[0] for line in code.splitlines()]
    return _TOKEN.findall("\n".join(lines))


def normalised_code(code: str) -> str:
    return " ".join(code_tokens(code))


def code_similarity(a: str, b: str) -> float:
    """difflib ratio over code tokens (1.0 = the same model up to comments and spacing)."""
    ta, tb = code_tokens(a), code_tokens(b)
    if ta == tb:
        return 1.0
    sm = difflib.SequenceMatcher(None, ta, tb, autojunk=False)
    if sm.real_quick_ratio() < 0.5:  # cheap upper bound: clearly different
        return sm.real_quick_ratio()
    return sm.ratio()


def duplicate_of(code: str, nodes: Iterable[Node], near: float | None = None) -> Node | None:
    """An existing node with the same code up to comments and spacing, or (with ``near``) one
    whose :func:`code_similarity` exceeds ``near``."""
    norm = normalised_code(code)
    for n in nodes:
        if not n.code:
            continue
        if normalised_code(n.code) == norm:
            return n
        if near is not None and code_similarity(code, n.code) > near:
            return n
    return None


def lowest_score(nodes: Iterable[Node]) -> Node | None:
    """The ok node with the lowest validation score (ties: the earlier node)."""
    finite = [n for n in nodes if n.ok and math.isfinite(n.score)]
    return min(finite, key=lambda n: (n.score, n.id)) if finite else None


def one_se_answer(nodes: Iterable[Node]) -> Node | None:
    """:meth:`Tree.answer` over ``nodes``: the fewest trainable parameters among the ok
    nodes scoring within one standard error of the lowest score (ties: lower score, then
    the earlier node)."""
    pool = [n for n in nodes if n.ok and math.isfinite(n.score)]
    best = lowest_score(pool)
    se = best.score_se if best is not None else None
    if best is None or se is None or not math.isfinite(se):
        return best
    near = [n for n in pool if n.score <= best.score + se]
    return min(near, key=lambda n: (n.result.n_parameters, n.score, n.id))
