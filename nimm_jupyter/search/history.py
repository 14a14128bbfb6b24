"""What a proposer is told about earlier edits: history from the parent relation, a
search-wide memory of findings and what is still being evaluated.

Every effect is measured against the edit's *own* parent (the runner refines any node of a
branch, not just the latest), and a node that has not finished is "in progress", never a
failure. Only validation scores are used; test scores never leave the tree.
"""
from __future__ import annotations

import ast
import difflib
import math
import re
from collections import defaultdict

from ..proposers.base import NodeView
from .node import Node
from .tree import Tree

MAX_FINDINGS = 12  # the memory is a short list: the most frequent edits first
MERGE_GAP = 2  # changed line runs this close together count as one hunk


def change_count(parent_code: str, code: str) -> int:
    """How many separate things ``code`` changes in ``parent_code`` (0 when identical).

    First the hunks of the line diff, where runs closer than ``MERGE_GAP`` unchanged lines
    merge (a reshaped expression over a few lines is one change). When there are several
    and both versions parse, the count is capped by the number of changed runs of
    statements in an AST diff, so edits inside one statement count once.
    """
    a, b = parent_code.splitlines(), code.splitlines()
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    hunks, gap = 0, MERGE_GAP + 1
    for tag, i1, i2, _, _ in ops:
        if tag == "equal":
            gap = i2 - i1
            continue
        if gap > MERGE_GAP:
            hunks += 1
        gap = 0
    if hunks <= 1:
        return hunks
    statements = _changed_statements(parent_code, code)
    return hunks if statements is None else min(hunks, max(statements, 1))


def _changed_statements(parent_code: str, code: str) -> int | None:
    """Number of innermost function/class-level statements whose AST differs (None: unparsable)."""
    try:
        old, new = _statement_dumps(ast.parse(parent_code)), _statement_dumps(ast.parse(code))
    except SyntaxError:
        return None
    diff = difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()
    return sum(1 for tag, *_ in diff if tag != "equal")


def _statement_dumps(tree: ast.Module) -> list[str]:
    out: list[str] = []

    def walk(body: list[ast.stmt], prefix: str) -> None:
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                walk(stmt.body, f"{prefix}{stmt.name}.")
            else:
                out.append(prefix + ast.dump(stmt))

    walk(tree.body, "")
    return out


def _score(n: Node | None) -> float | None:
    return n.score if n is not None and n.ok and math.isfinite(n.score) else None


def history_view(tree: Tree, n: Node) -> NodeView:
    """``n`` as a history entry: its parent, its effect vs that parent, how many changes."""
    parent = tree.nodes.get(n.parent) if n.parent is not None else None
    before, after = _score(parent), _score(n)
    effect = after - before if after is not None and before is not None else None
    strategy = tree.branches[n.branch].strategy if n.branch in tree.branches else None
    return n.view(strategy, meta={
        "parent": n.parent, "parent_score": before, "effect": effect,
        "improved": effect is not None and effect < 0,
        "in_progress": not n.state.completed,
        "n_changes": change_count(parent.code, n.code) if parent is not None and n.code else None,
    })


def branch_history(tree: Tree, branch_id: int) -> list[NodeView]:
    """The branch's edits, oldest first, as history entries."""
    return [history_view(tree, n) for n in tree.history(branch_id)]


_WORDS = re.compile(r"[a-z0-9_.]+")


def _edit_key(change: str) -> str:
    return " ".join(_WORDS.findall(change.lower()))[:120]


def findings(tree: Tree) -> list[str]:
    """The search-wide memory: each finished refinement's change with its effect vs its own
    parent, grouped by (normalised) change text across branches, most tried first."""
    groups: dict[str, list[tuple[int, float | None, bool]]] = defaultdict(list)
    labels: dict[str, str] = {}
    for n in tree.snapshot():
        if n.operator != "refine" or not n.state.completed or n.parent is None:
            continue
        key = _edit_key(n.change)
        if not key:
            continue
        labels.setdefault(key, n.change.strip()[:160])
        before, after = _score(tree.nodes.get(n.parent)), _score(n)
        effect = after - before if after is not None and before is not None else None
        groups[key].append((n.branch, effect, n.ok))
    lines = []
    for key, rows in sorted(groups.items(), key=lambda kv: (-len(kv[1]), labels[kv[0]])):
        better = sum(1 for _, e, _ in rows if e is not None and e < 0)
        worse = sum(1 for _, e, _ in rows if e is not None and e >= 0)
        failed = sum(1 for _, _, ok in rows if not ok)
        effects = [e for _, e, _ in rows if e is not None]
        branches = len({b for b, _, _ in rows})
        parts = [f"better in {better}", f"worse in {worse}"] + ([f"failed in {failed}"] if failed else [])
        mean = f"; mean effect {sum(effects) / len(effects):+.3g}" if effects else ""
        lines.append(f"\"{labels[key]}\": {', '.join(parts)} of {len(rows)} tries "
                     f"({branches} branch{'es' if branches != 1 else ''}){mean}")
    return lines[:MAX_FINDINGS]


def in_progress(tree: Tree) -> list[str]:
    """Nodes proposed but not finished yet, so a proposer does not propose the same again."""
    return [f"node {n.id} (branch {n.branch}, {n.operator} of "
            f"{'node ' + str(n.parent) if n.parent is not None else 'the prior'}): "
            f"{n.change.strip()[:160] or '(no description)'}"
            for n in tree.snapshot() if not n.state.completed]
