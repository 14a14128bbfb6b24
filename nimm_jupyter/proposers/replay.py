"""The replay proposer: answers from a recorded file instead of writing code (demos, tests).

The file is JSON (a list) or JSONL (one object per line). Each record is
``{"operator": "draft"|"refine"|"debug", "strategy": title|null, "change": str, "code": str}``
(optionally ``"description"`` for the strategy); a record ``{"operator": "strategies",
"strategies": [{"title", "description", "key"}, ...]}`` lists strategies explicitly.
:func:`nimm_jupyter.search.recording.record_replay` writes such a file from another run's
journal (through :func:`write_records`).

Answers are deterministic: each request takes the first unused record of its operator whose
strategy matches the branch (falling back to the first unused record of that operator), and
when the records run out the proposal fails with a clear message.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .base import NodeView, Proposal, ProposalContext, Proposer, Strategy

OPERATORS = ("draft", "refine", "debug")
# records a file may hold besides those: a recorded run's distill nodes, which a replayed
# search derives again itself (the distill operator is no proposer call), so never answered
RECORDED_ONLY = ("distill",)


class ReplayError(ValueError):
    pass


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """Parse a replay file (JSON list or JSONL) and check every record."""
    p = Path(path)
    if not p.exists():
        raise ReplayError(f"replay file {p} does not exist")
    text = p.read_text(encoding="utf-8").strip()
    if not text:
        raise ReplayError(f"replay file {p} is empty")
    try:
        if text.startswith("["):
            records = json.loads(text)
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise ReplayError(f"replay file {p} is not JSON/JSONL: {exc}") from None
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise ReplayError(f"replay record {i} in {p} is not an object")
        op = r.get("operator")
        if op == "strategies":
            if not isinstance(r.get("strategies"), list):
                raise ReplayError(f"replay record {i}: 'strategies' must be a list")
            continue
        if op not in OPERATORS + RECORDED_ONLY:
            raise ReplayError(f"replay record {i}: operator must be one of "
                              f"{('strategies',) + OPERATORS + RECORDED_ONLY}, got {op!r}")
        if not isinstance(r.get("code"), str) or not r["code"].strip():
            raise ReplayError(f"replay record {i}: 'code' must be a non-empty string")
    return records


class ReplayProposer(Proposer):
    """Replays recorded proposals (see the module docstring)."""

    name = "replay"

    def __init__(self, path: str | Path, *, seed: int = 0, **_: Any) -> None:
        self.path = str(path)
        self.records = load_records(path)
        self.used: set[int] = set()
        self.model = None

    # -- helpers -------------------------------------------------------------------------
    def _strategy_list(self) -> list[Strategy]:
        out: list[Strategy] = []
        seen: set[str] = set()

        def add(title: str | None, description: str = "", key: str = "") -> None:
            if title and title not in seen:
                seen.add(title)
                out.append(Strategy(title=title, description=description or title, key=key))

        for r in self.records:
            if r["operator"] == "strategies":
                for s in r["strategies"]:
                    add(s.get("title"), s.get("description", ""), s.get("key", ""))
            elif r["operator"] == "draft":
                add(r.get("strategy"), r.get("description", ""))
        return out

    def _take(self, operator: str, strategy: str | None) -> dict[str, Any] | None:
        candidates = [i for i, r in enumerate(self.records)
                      if r["operator"] == operator and i not in self.used]
        matching = [i for i in candidates if self.records[i].get("strategy") == strategy]
        pick = matching[0] if matching else (candidates[0] if candidates else None)
        if pick is None:
            return None
        self.used.add(pick)
        return self.records[pick]

    def _answer(self, operator: str, strategy: str | None) -> Proposal:
        r = self._take(operator, strategy)
        if r is None:
            return Proposal(code=None, change=operator,
                            error=f"replay file {Path(self.path).name} has no {operator} "
                                  "record left")
        return Proposal(code=r["code"], change=r.get("change") or operator,
                        raw="", meta={"replay": True, **(r.get("meta") or {})})

    # -- Proposer API --------------------------------------------------------------------
    def strategies(self, ctx: ProposalContext, k: int, exclude: list[Strategy]) -> list[Strategy]:
        taken = {s.title.strip().lower() for s in exclude}
        return [s for s in self._strategy_list() if s.title.strip().lower() not in taken][:k]

    def draft(self, ctx: ProposalContext, strategy: Strategy | None) -> Proposal:
        return self._answer("draft", strategy.title if strategy else None)

    def refine(self, ctx: ProposalContext, parent: NodeView, history: list[NodeView]) -> Proposal:
        return self._answer("refine", parent.strategy.title if parent.strategy else None)

    def debug(self, ctx: ProposalContext, failed: NodeView) -> Proposal:
        return self._answer("debug", failed.strategy.title if failed.strategy else None)

    def restore(self, nodes: list[NodeView]) -> None:
        """Mark records already used by a resumed run's nodes, so they are not replayed twice."""
        codes = {n.code.strip() for n in nodes if n.code}
        for i, r in enumerate(self.records):
            if r["operator"] != "strategies" and r["code"].strip() in codes:
                self.used.add(i)


def write_records(records: list[dict[str, Any]], out_path: str | Path) -> None:
    """Write ``records`` as a JSONL replay file (what :func:`load_records` reads back)."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
