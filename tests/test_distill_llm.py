"""The LLM side of the distill operator: the ``distill`` prompt (the network's table and the
sparse fit, no test score) and how its answer replaces, or falls back to, the sparse child."""
from __future__ import annotations

import json

import numpy as np
import pytest

from nimm_jupyter.distill import Law
from nimm_jupyter.proposers.anthropic import AnthropicProposer
from nimm_jupyter.proposers.base import NodeView, Proposal
from nimm_jupyter.search.distill_step import _llm_child, table_text

from fake_anthropic import FakeAnthropic, Reply
from test_anthropic_proposer import FAKE_KEY, MODEL_CODE, ctx, metrics

SAMPLES = {"net": (np.linspace(-1.0, 1.0, 50)[:, None], 0.3 - 0.7 * np.linspace(-1.0, 1.0, 50)[:, None])}
LAW = "net(x) = 0.3 - 0.7*x0"


def _view() -> NodeView:
    return NodeView(id=4, branch=1, operator="refine", change="growth law: gompertz",
                    code="class Model: pass  # PARENT-MARKER", status="ok",
                    metrics=metrics(0.0789, test=987.654321))


def _sparse() -> Proposal:
    return Proposal(code="# sparse child", change="distil node 4", meta={
        "formula": {"text": LAW, "latex": "x"}, "distilled_from": 4,
        "removed_network_parameters": 65})


def test_table_text_is_short_and_spread_over_the_inputs():
    text = table_text(SAMPLES, rows=5)
    lines = text.splitlines()
    assert lines[0].startswith("network `net`: 50 rows; x0 in [-1, 1], y0 in [-0.4, 1]")
    assert len(lines) == 3 + 5 and lines[3] == "| -1 | 1 |" and lines[-1] == "| 1 | -0.4 |"


def test_distill_prompt_shows_table_and_law_never_test_scores(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    answer = f"CHANGE: Gompertz growth rate rho*ln(K/V)\n```python\n{MODEL_CODE}```\n"
    with FakeAnthropic() as fake:
        fake.push(Reply.answer(answer))
        p = AnthropicProposer(base_url=fake.url, timeout=2.0, backoff_base=0.001)
        try:
            child = _llm_child(p, ctx(), _view(), SAMPLES, LAW,
                               {"net": Law(1, [{"1": 0.3, "x0": -0.7}], errors=[0.01])}, _sparse())
        finally:
            p.close()
        prompt = json.dumps(fake.requests[-1].body)
    assert "PARENT-MARKER" in prompt and LAW in prompt and "network `net`: 50 rows" in prompt
    assert "987.65" not in prompt and "0.0789" in prompt  # validation shown, test never
    assert child.code.strip() == MODEL_CODE.strip() and child.tokens_in > 0
    assert child.meta["law_by"] == "anthropic" and child.meta["distilled_from"] == 4
    assert child.meta["formula"]["text"].startswith("Gompertz growth rate")
    assert child.meta["sparse_fit"]["text"] == LAW


class _Stub:
    name = "stub"

    def __init__(self, answer):
        self.answer = answer

    def distill(self, *a):
        return self.answer


@pytest.mark.parametrize("answer", [None, Proposal(code=None, change="x", error="overloaded",
                                                   tokens_in=10, tokens_out=2, cost=0.01)])
def test_without_an_llm_answer_the_sparse_child_stands(answer):
    law = {"net": Law(1, [{"1": 0.3}], errors=[0.0])}
    child = _llm_child(_Stub(answer), ctx(), _view(), SAMPLES, LAW, law, _sparse())
    assert child.code == "# sparse child"
    if answer is not None:  # the failed call is still paid for, and said
        assert (child.tokens_in, child.cost, child.meta["llm_error"]) == (10, 0.01, "overloaded")
