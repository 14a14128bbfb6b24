"""A scripted modeller for fake LLM servers, and the checks on what a search's prompts said.

``ScriptedModeller.answer(system, user)`` reads a prompt the way a model would (which
operation, the parent's code) and answers realistically: strategies, drafts, one-change
refinements, one refinement that changes two things, one that breaks the syntax, and a debug
fix. ``check_prompts`` compares every recorded prompt with the finished search's tree.
"""
from __future__ import annotations

import json
import re
from typing import Any

from nimm_jupyter.proposers.dataview import MAX_CHARS

STRATEGIES = [
    {"title": "neural growth-rate correction",
     "description": "an MLP of log-volume corrects the per-volume growth rate"},
    {"title": "mechanistic prior only",
     "description": "fit the exponential growth and log-kill prior as it is"},
]
# (old, new, CHANGE line): single edits that exist in the prior and in the hybrid
EDITS = [
    ("Positive(0.02)       # growth rate", "Positive(0.025)      # growth rate",
     "raise the initial growth rate rho to 0.025"),
    ("Positive(0.3)", "Positive(0.25)", "lower the initial elimination rate k_el to 0.25"),
    ("Positive(0.02)    # chemo kill", "Positive(0.03)    # chemo kill",
     "raise the initial chemo kill beta_c to 0.03"),
    ("clamp=(0.0, 1e6)", "clamp=(0.0, 1e5)", "tighten the state clamp to 1e5"),
    ("Positive(0.02)       # growth rate", "Positive(0.015)      # growth rate",
     "lower the initial growth rate rho to 0.015"),
]
BROKEN = ("dV = V * rate\n", "dV = V * rate +\n")  # a refinement that does not parse
FIX = ("dV = V * rate +\n", "dV = V * rate.clamp(max=1.0)\n")  # ... and its debug fix
_CODE = re.compile(r"```python\n(.*?)```", re.S)


def _answer(change: str, code: str) -> str:
    return f"My reasoning is short.\nCHANGE: {change}\n```python\n{code.rstrip()}\n```\n"


class ScriptedModeller:
    """Answers prompts of one search on ``lung_cancer_chemo``."""

    def __init__(self, prior_code: str, hybrid_code: str) -> None:
        self.prior, self.hybrid = prior_code, hybrid_code
        self.refines = 0
        self.sent: set[str] = set()

    def answer(self, system: str, user: str) -> str:
        if "DISTINCT" in user:
            return f"Two ways:\n```json\n{json.dumps(STRATEGIES)}\n```"
        if user.startswith("Write the first model"):
            if "Strategy for this branch: neural growth-rate" in user:
                return _answer("draft with a neural growth-rate correction", self.hybrid)
            return _answer("the prior as it is", self.prior)
        code = _CODE.search(user)
        assert code is not None, "a refine/debug prompt without the parent's code"
        parent = code.group(1)
        if user.startswith("The model below failed"):
            return _answer("complete the dV expression and cap the growth rate", parent.replace(*FIX))
        self.refines += 1
        if self.refines == 2:  # one answer that changes two places at once
            new = parent
            for old, rep, _ in EDITS[1:4:2]:
                new = new.replace(old, rep)
            return self._send("lower k_el and tighten the clamp", new)
        if self.refines == 3:
            return self._send("add a saturation term to dV", parent.replace(*BROKEN))
        for old, rep, change in EDITS:
            new = parent.replace(old, rep)
            if old in parent and new not in self.sent:
                return self._send(change, new)
        return self._send("widen nothing", parent + "\n# unchanged\n")

    def _send(self, change: str, code: str) -> str:
        self.sent.add(code)
        return _answer(change, code)


_ENTRY = re.compile(r"^- node (\d+) \((\w+)(?: of node (\d+))?\): (.*?) -> (.*)$", re.M)
_VAL = re.compile(r"^val (\S+) \(([-+]\S+) vs its parent's (\S+): (better|worse|no change)\)$")


def check_prompts(system_texts: list[str], user_texts: list[str], nodes: list[Any]) -> dict[str, int]:
    """Assert the prompts told the truth about ``nodes`` (the finished tree); returns counts
    of what was seen so a caller can assert the search exercised it."""
    by_id = {n.id: n for n in nodes}
    seen = {"entries": 0, "effects": 0, "in_progress": 0, "failed": 0, "not_atomic": 0,
            "findings": 0}
    for text in system_texts:
        assert "euler_rollout(step: Callable" in text and "class Bounded(init: float, low: float" in text
        assert "Adam at learning rate" in text and "at most 5 epochs" in text
        view = text.split("## The training data", 1)[1]
        assert "Training split:" in view and len(view) <= MAX_CHARS + 200
    for text in user_texts:
        assert "failed: running" not in text and "failed: pending" not in text
        if not text.startswith("Refine"):
            continue
        # the parent's score with its bootstrap standard error over the validation trajectories
        assert re.search(r"standard error of about [0-9.e+-]+ \(\d+ validation trajectories\)",
                         text), text
        history = text.split("## Earlier edits", 1)[1].split("## What the search has learnt", 1)[0]
        for m in _ENTRY.finditer(history):
            node_id, parent = int(m.group(1)), m.group(3)
            node = by_id[node_id]
            seen["entries"] += 1
            assert parent is not None and int(parent) == node.parent, m.group(0)
            outcome = m.group(5)
            if "NOT atomic" in m.group(4):
                seen["not_atomic"] += 1
            if outcome.startswith("in progress"):
                seen["in_progress"] += 1
            elif outcome.startswith("failed: "):
                seen["failed"] += 1
                assert not node.ok and outcome.split()[1] == node.status, m.group(0)
            else:
                seen["effects"] += 1
                if not by_id[node.parent].ok:  # a debug fix: nothing to compare with
                    assert outcome == f"val {node.score:.4g} (its parent has no score to compare with)"
                    continue
                v = _VAL.match(outcome)
                assert v is not None, m.group(0)
                before = by_id[node.parent].score
                assert abs(float(v.group(1)) - node.score) <= 1e-3 * node.score, m.group(0)
                assert abs(float(v.group(3)) - before) <= 1e-3 * before, m.group(0)
                assert abs(float(v.group(2)) - (node.score - before)) <= 1e-2 * abs(node.score - before) + 1e-12
                assert (v.group(4) == "better") == (node.score < before), m.group(0)
        memory = text.split("## What the search has learnt", 1)[1].split("## Still being", 1)[0]
        seen["findings"] += len(re.findall(r"better in \d+, worse in \d+.* of \d+ tries", memory))
    # no test metric anywhere
    shown = {f"{x:.4g}" for n in nodes if n.result is not None
             for x in (n.result.train.rmse, n.result.val.rmse, n.result.train.rmse_norm,
                       n.result.val.rmse_norm)}
    secret = {f"{x:.4g}" for n in nodes if n.result is not None
              for x in (n.result.test.rmse, n.result.test.rmse_norm)} - shown
    for text in system_texts + user_texts:
        assert "test_rmse" not in text and '"test"' not in text
        for s in secret:
            assert not re.search(rf"(?<![\d.]){re.escape(s)}(?![\d])", text), s
    return seen
