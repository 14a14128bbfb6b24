"""Record a finished run as a replay file, so the replay proposer can repeat its proposals.

It reads the run's journal (this layer's) and writes the replay format that
:mod:`nimm_jupyter.proposers.replay` defines, so the proposers layer never reads a journal.
"""
from __future__ import annotations

from pathlib import Path

from ..proposers.replay import write_records
from .journal import Journal


def record_replay(run_dir: str | Path, out_path: str | Path) -> int:
    """Write every proposed node of a run (in id order) as a JSONL replay file.

    The first line lists the run's branch strategies. Returns the number of node records.
    """
    journal = Journal.for_run(run_dir, readonly=True)
    try:
        branches = journal.load_branches()
        nodes = journal.load_nodes()
    finally:
        journal.close()
    by_branch = {b.id: b for b in branches}
    # only strategies that got a draft: a branch pruned before its draft has nothing to replay
    drafted = {n.branch for n in nodes if n.operator == "draft" and n.code}
    lines = [{"operator": "strategies", "strategies": [
        {"title": b.strategy.title, "description": b.strategy.description, "key": b.strategy.key}
        for b in branches if b.strategy is not None and b.id in drafted]}]
    for n in nodes:
        if not n.code:
            continue
        b = by_branch.get(n.branch)
        lines.append({
            "operator": n.operator, "strategy": n.strategy, "change": n.change, "code": n.code,
            "description": b.strategy.description if b is not None and b.strategy else "",
            "node": n.id, "parent": n.parent, "status": n.status,
            "meta": n.proposer_meta,
        })
    write_records(lines, out_path)
    return len(lines) - 1
