"""History from the parent relation, the search-wide memory and the atomicity check."""
from __future__ import annotations

from nimm_jupyter.modeling.result import EvalResult, SplitScores, Status
from nimm_jupyter.proposers.base import Strategy
from nimm_jupyter.proposers.prompts import format_history
from nimm_jupyter.search.history import branch_history, change_count, findings, in_progress
from nimm_jupyter.search.node import Node, NodeState
from nimm_jupyter.search.tree import Tree

BASE = '''import torch


class Model(torch.nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.a = 1.0
        self.b = 2.0

    def forward(self, y, u, t):
        x = y * self.a
        x = x + self.b
        return x
'''


def _ok(score: float) -> EvalResult:
    return EvalResult(status=Status.OK, val=SplitScores(rmse=score * 10, rmse_norm=score),
                      test=SplitScores(rmse=123.456, rmse_norm=12.3456))


def _add(tree: Tree, id: int, parent: int | None, branch: int, change: str, score: float | None,
         operator: str = "refine", state: NodeState = NodeState.DONE, code: str = BASE) -> Node:
    n = Node(id=id, parent=parent, branch=branch, operator=operator, change=change, code=code,
             state=state, result=_ok(score) if score is not None else None)
    return tree.add_node(n)


def _tree() -> Tree:
    tree = Tree()
    tree.add_branch(Strategy("residual", "an MLP on dV/dt"))
    tree.add_branch(Strategy("rate", "a neural rate"))
    _add(tree, 0, None, 0, "draft", 0.40, operator="draft")
    _add(tree, 1, 0, 0, "Widen the MLP to 64", 0.30, code=BASE.replace("1.0", "1.5"))
    _add(tree, 2, 0, 0, "add dose input", 0.50)
    # node 3 refines node 1 (not the latest entry): its effect is vs node 1
    _add(tree, 3, 1, 0, "clamp V", 0.25)
    _add(tree, 4, 1, 0, "remove b", None, state=NodeState.RUNNING)
    _add(tree, 5, None, 1, "draft", 0.60, operator="draft")
    _add(tree, 6, 5, 1, "widen the MLP to 64", 0.55)
    _add(tree, 7, 5, 1, "two edits", 0.70,
         code=BASE.replace("1.0", "3.0").replace("x + self.b", "x - self.b"))
    return tree


def test_history_effects_are_against_each_edits_own_parent():
    entries = {v.id: v for v in branch_history(_tree(), 0)}
    assert entries[3].meta["parent"] == 1 and abs(entries[3].meta["effect"] - (-0.05)) < 1e-12
    assert abs(entries[2].meta["effect"] - 0.10) < 1e-12 and entries[2].meta["parent"] == 0
    assert entries[4].meta["in_progress"] is True and entries[4].meta["effect"] is None
    text = format_history(list(entries.values()))
    assert "node 3 (refine of node 1): clamp V -> val 0.25 (-0.05 vs its parent's 0.3: better)" in text
    assert "node 4 (refine of node 1): remove b -> in progress (not scored yet)" in text
    assert "failed" not in text
    assert "123.456" not in text and "12.35" not in text


def test_memory_groups_the_same_edit_across_branches():
    tree = _tree()
    memory = findings(tree)
    widen = [m for m in memory if "widen the mlp to 64" in m.lower()]
    assert len(widen) == 1
    assert "better in 2, worse in 0 of 2 tries (2 branches)" in widen[0]
    assert any(m.startswith('"add dose input": better in 0, worse in 1 of 1 tries') for m in memory)
    assert not any("remove b" in m for m in memory)  # still running: not a finding yet
    assert in_progress(tree) == ["node 4 (branch 0, refine of node 1): remove b"]


def test_atomicity_counts_separate_changes():
    assert change_count(BASE, BASE) == 0
    assert change_count(BASE, BASE.replace("1.0", "1.5")) == 1
    assert change_count(BASE, BASE.replace("1.0", "3.0").replace("x + self.b", "x - self.b")) == 2
    # a reshaped expression over adjacent lines is one change
    assert change_count(BASE, BASE.replace("x = y * self.a\n        x = x + self.b",
                                           "x = y * self.a * 2\n        x = x + self.b * 2")) == 1
    # unparsable code falls back to diff hunks
    assert change_count(BASE, BASE.replace("self.a = 1.0", "self.a = (").replace(
        "return x", "return x +")) == 2
    entries = {v.id: v for v in branch_history(_tree(), 1)}
    assert entries[7].meta["n_changes"] == 2 and entries[6].meta["n_changes"] == 0
    assert "[NOT atomic: changed 2 separate places]" in format_history([entries[7]])
