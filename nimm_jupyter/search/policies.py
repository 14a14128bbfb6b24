"""Search policies: given the tree, what should the proposer do next?

All policies share one interface (:class:`Policy.next_action`) and one runner, proposer,
executor and journal; they differ only in which node they expand:

* ``nimmgen`` (default) - branch-level exploration with atomic refinement (NIMMGen): K diverse
  strategies each root a branch; a UCB bandit picks the branch; its best node gets one atomic
  edit; failures are debugged up to a depth cap; stagnant branches are pruned and reseeded.
* ``greedy`` - AIDE-like: a few drafts, then always refine the global best (debug failures).
* ``evolution`` - HDTwinGen-like: refine a random member of the top-k pool.
* ``sampling`` - independent drafts only.

Decisions depend only on the tree and the seed, so a search with a deterministic proposer and
one worker is reproducible, and a resumed search continues where the journal left off.
"""
from __future__ import annotations

import abc
import math
import random
from dataclasses import dataclass, field
from typing import Any

from ..modeling.result import Status
from ..proposers.base import Strategy
from .config import SearchConfig
from .node import Node, NodeState
from .tree import Tree

_DEFAULT = SearchConfig()  # the policies' defaults are the search's


@dataclass
class Action:
    """One request to the proposer."""

    kind: str  # "strategies" | "draft" | "refine" | "debug" | "distill"
    branch: int | None = None  # None for a draft: the runner opens a new branch
    parent: int | None = None
    strategy: Strategy | None = None
    k: int = 0  # strategies to ask for
    exclude: list[Strategy] = field(default_factory=list)


class Policy(abc.ABC):
    name = "base"

    def __init__(self, *, branches: int = _DEFAULT.branches, seed: int = _DEFAULT.seed,
                 debug_depth: int = _DEFAULT.debug_depth, patience: int = _DEFAULT.patience,
                 **options: Any) -> None:
        if branches < 1:
            raise ValueError(f"branches must be >= 1, got {branches}")
        if debug_depth < 0 or patience < 1:
            raise ValueError("debug_depth must be >= 0 and patience >= 1")
        unknown = set(options) - set(self.options)
        if unknown:
            raise ValueError(f"unknown option(s) for policy {self.name!r}: {sorted(unknown)}; "
                             f"it takes {', '.join(sorted(self.options)) or 'none'}")
        self.branches, self.seed = branches, seed
        self.debug_depth, self.patience = debug_depth, patience
        self.opts = {**self.options, **options}

    options: dict[str, Any] = {}

    @abc.abstractmethod
    def next_action(self, tree: Tree, remaining: int) -> Action | None:
        """The next proposer request, or None to wait (for in-flight results) or finish.

        ``remaining`` is how many more nodes the budget allows (>= 1 when called).
        """

    def on_rejected(self, tree: Tree, action: Action, reason: str) -> None:
        """A proposal was dropped as a duplicate (no node was created): a branch whose draft
        repeats another model is pruned (and reseeded); otherwise the rejection counts as an
        expansion without improvement."""
        if action.branch is None or action.branch not in tree.branches:
            return
        if action.kind == "draft" and not tree.branch_nodes(action.branch):
            tree.prune(action.branch, f"draft duplicated an existing model ({reason})")
        else:
            tree.branches[action.branch].rejects += 1

    # -- shared helpers ------------------------------------------------------------------
    def rng(self, tree: Tree) -> random.Random:
        # Seeded by the tree size so a resumed search draws what the original would have.
        return random.Random(f"{self.seed}:{self.name}:{len(tree.nodes)}")

    def debuggable(self, tree: Tree, branches: set[int] | None = None) -> list[Node]:
        """Failed evaluations (not proposal failures) with no debug child yet, under the cap."""
        out = []
        for n in tree.snapshot():
            if n.state is not NodeState.FAILED or n.result is None or not n.code:
                continue
            if n.result.status is Status.CANCELLED or n.debug_depth >= self.debug_depth:
                continue
            if branches is not None and n.branch not in branches:
                continue
            if any(c.operator == "debug" for c in tree.children(n.id)):
                continue
            out.append(n)
        return out

    def draft_count(self, tree: Tree) -> int:
        return sum(n.operator == "draft" for n in tree.snapshot())


class NimmGenPolicy(Policy):
    """Branch-level exploration + atomic refinement (see the module docstring)."""

    name = "nimmgen"
    # distill_at: once at most this many nodes remain, the best hybrid gets a distill child
    # (its networks replaced by sparse laws, search.distill_step); 0 never distils
    options = {"exploration": 1.0, "top": 2, "distill_at": 2}

    def next_action(self, tree: Tree, remaining: int) -> Action | None:
        active = tree.active_branches()
        # 1. The first K strategies (and reseeding after pruning, while budget remains).
        want = self.branches - len(active)
        # (the user's prior, scored as the baseline node 0, does not count as a started search)
        started = any(not n.proposer_meta.get("prior") for n in tree.snapshot())
        if want > 0 and not tree.strategies_exhausted and (remaining >= 2 or not started):
            exclude = [b.strategy for b in tree.branches.values() if b.strategy is not None]
            return Action("strategies", k=want, exclude=exclude)
        # 2. Every new branch starts with a draft of its strategy.
        for b in active:
            if not tree.branch_nodes(b.id):
                return Action("draft", branch=b.id, strategy=b.strategy)
        # 3. Failures get a debug attempt (depth-capped).
        failed = self.debuggable(tree, {b.id for b in active})
        if failed:
            n = failed[0]
            return Action("debug", branch=n.branch, parent=n.id,
                          strategy=tree.branches[n.branch].strategy)
        # 4. Prune stagnant or dead branches; the next call reseeds them.
        if self.prune(tree):
            return self.next_action(tree, remaining)
        # 5. Near the end of the budget, distil the best hybrid into a law (once per node).
        target = self.distill_target(tree, remaining)
        if target is not None:
            return Action("distill", branch=target.branch, parent=target.id)
        # 6. Bandit over branches, refine the chosen branch's best node.
        b = self.choose_branch(tree)
        if b is None:
            return None
        best = tree.branch_best(b)
        assert best is not None
        return Action("refine", branch=b, parent=best.id, strategy=tree.branches[b].strategy)

    def distill_target(self, tree: Tree, remaining: int) -> Node | None:
        """The best hybrid node worth distilling now, or None: one whose networks beat its
        branch's mechanistic parent (:func:`mechanistic_reference`), not yet distilled,
        once at most ``distill_at`` nodes of the budget remain."""
        if remaining > int(self.opts["distill_at"]):
            return None
        distilled = {n.parent for n in tree.snapshot() if n.operator == "distill"}
        hybrids = [n for n in tree.snapshot() if n.ok and n.result is not None
                   and n.result.n_network_parameters > 0 and n.id not in distilled
                   and math.isfinite(n.score)]
        winners = [n for n in hybrids
                   if (ref := mechanistic_reference(tree, n)) is None or n.score < ref.score]
        return min(winners, key=lambda n: (n.score, n.id), default=None)

    def prune(self, tree: Tree) -> bool:
        """Prune one stagnant/dead branch, keeping at least one working branch when no new
        strategies can replace it. Returns whether something was pruned."""
        active = tree.active_branches()
        working = [b for b in active if tree.branch_best(b.id) is not None]
        for b in active:
            nodes = tree.branch_nodes(b.id)
            if not nodes or tree.in_flight(b.id):
                continue
            best = tree.branch_best(b.id)
            if best is None:
                if not self.debuggable(tree, {b.id}):
                    tree.prune(b.id, "no working model after debugging")
                    return True
                continue
            if tree.since_improvement(b.id) >= self.patience:
                others = [w for w in working if w.id != b.id]
                if tree.strategies_exhausted and not others:
                    continue
                tree.prune(b.id, f"no improvement in {self.patience} expansions")
                return True
        return False

    def choose_branch(self, tree: Tree) -> int | None:
        """UCB over branches: reward = best robust score / branch robust score (in (0, 1]),
        plus an exploration bonus that grows for branches expanded less often. Ties go to the
        older branch."""
        scores = self.ucb_scores(tree)
        if not scores:
            return None
        return max(scores, key=lambda bid: (scores[bid], -bid))

    def ucb_scores(self, tree: Tree) -> dict[int, float]:
        """Each active branch's current UCB value (branches without a working model have none)."""
        scored = [(b.id, tree.robust_score(b.id, self.opts["top"]), len(tree.branch_nodes(b.id)))
                  for b in tree.active_branches()]
        scored = [s for s in scored if math.isfinite(s[1])]
        if not scored:
            return {}
        best, total = min(s[1] for s in scored), sum(s[2] for s in scored)
        c = float(self.opts["exploration"])
        return {bid: (best + 1e-12) / (r + 1e-12) + c * math.sqrt(math.log(total + 1) / max(n, 1))
                for bid, r, n in scored}


def mechanistic_reference(tree: Tree, node: Node) -> Node | None:
    """What ``node``'s networks are measured against: its nearest ancestor that trained ok
    without a network, else the user's prior (node 0, when it scored ok), else the best
    network-free model of the search that is not itself a distilled law (a mechanistic
    branch's); None if there is none."""
    def mechanistic(n: Node) -> bool:
        return n.ok and n.result is not None and n.result.n_network_parameters == 0

    parent = tree.nodes.get(node.parent) if node.parent is not None else None
    while parent is not None:
        if mechanistic(parent):
            return parent
        parent = tree.nodes.get(parent.parent) if parent.parent is not None else None
    nodes = tree.snapshot()
    root = next((n for n in nodes if n.proposer_meta.get("prior")), None)
    if root is not None and mechanistic(root):
        return root
    # (a distilled law is network-free too, but it is a hybrid's offspring, not a mechanism)
    return min((n for n in nodes if mechanistic(n) and n.operator != "distill"),
               key=lambda n: (n.score, n.id), default=None)


class GreedyPolicy(Policy):
    """AIDE-like: ``branches`` independent drafts, then refine the global best; debug the
    latest failure first."""

    name = "greedy"

    def next_action(self, tree: Tree, remaining: int) -> Action | None:
        if self.draft_count(tree) < self.branches:
            return Action("draft")
        failed = self.debuggable(tree)
        if failed:
            n = failed[-1]
            return Action("debug", branch=n.branch, parent=n.id)
        best = tree.best()
        if best is None:
            return None if tree.in_flight() else Action("draft")
        return Action("refine", branch=best.branch, parent=best.id)


class EvolutionPolicy(Policy):
    """HDTwinGen-like: keep the top-k pool, refine a random pool member (no debugging)."""

    name = "evolution"
    options = {"pool": 4}

    def next_action(self, tree: Tree, remaining: int) -> Action | None:
        if self.draft_count(tree) < self.branches:
            return Action("draft")
        ok = sorted((n for n in tree.snapshot() if n.ok and math.isfinite(n.score)),
                    key=lambda n: (n.score, n.id))
        pool = ok[: int(self.opts["pool"])]
        if not pool:
            return None if tree.in_flight() else Action("draft")
        parent = self.rng(tree).choice(pool)
        return Action("refine", branch=parent.branch, parent=parent.id)


class SamplingPolicy(Policy):
    """Independent drafts, nothing else (the no-search baseline)."""

    name = "sampling"

    def next_action(self, tree: Tree, remaining: int) -> Action | None:
        return Action("draft")


POLICIES: dict[str, type[Policy]] = {
    p.name: p for p in (NimmGenPolicy, GreedyPolicy, EvolutionPolicy, SamplingPolicy)
}


def make_policy(name: str, **kw: Any) -> Policy:
    """Build a policy by name (``nimmgen``, ``greedy``, ``evolution``, ``sampling``)."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(POLICIES)}")
    return POLICIES[name](**kw)
