"""A whole search driven by the anthropic proposer through the real SDK and a fake API server."""
from __future__ import annotations

import json

import pytest

import nimm_jupyter.tasks as tasks
from nimm_jupyter.modeling.config import TrainConfig
from nimm_jupyter.proposers.anthropic import AnthropicProposer
from nimm_jupyter.search.api import search

from fake_anthropic import FakeAnthropic, Reply
from scripted_search import ScriptedModeller, check_prompts

FAKE_KEY = "sk-ant-test-search-0123456789"
pytestmark = pytest.mark.timeout(240)


def _code_answer(change: str, code: str) -> Reply:
    return Reply.answer(f"Here is the model.\nCHANGE: {change}\n```python\n{code}```\n")


def test_claude_search_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    task = tasks.get("lung_cancer_chemo", n_patients=16)
    strategies = json.dumps([
        {"title": "neural growth-rate correction",
         "description": "an MLP of log-volume corrects the per-volume growth rate"},
        {"title": "mechanistic prior only",
         "description": "fit the exponential growth and log-kill prior as it is"},
    ])
    # once the script is used up, every answer is a valid model (the prior with a new change)
    with FakeAnthropic(default=_code_answer("refit the prior", task.prior_code)) as fake:
        fake.push(
            Reply.answer(f"Two ways to join the network:\n```json\n{strategies}\n```"),
            Reply.error(529),  # overloaded once: retried
            _code_answer("draft with a neural rate correction", task.hybrid_code),
            Reply.answer("I would rather discuss the biology first."),  # no code: a failed node
        )
        proposer = AnthropicProposer(base_url=fake.url, backoff_base=0.01, timeout=20.0)
        res = search(task, budget=4, branches=2, proposer=proposer, run_dir=tmp_path / "run",
                     train=TrainConfig(max_epochs=5), device="cpu").wait()
        requests = list(fake.requests)

    ok = [n for n in res.nodes if n.result is not None and n.result.ok]
    assert len(ok) >= 2
    failed = [n for n in res.nodes if n.state == "failed"]
    assert any("code block" in (n.error or "") for n in failed)
    assert res.tokens > 0 and res.cost > 0
    assert len(requests) >= 5  # strategies, one retried draft, the rest
    journal = (tmp_path / "run" / "journal.sqlite").read_bytes()
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path
    assert FAKE_KEY.encode() not in journal


def _show_json(run_dir, capsys) -> dict:
    import argparse

    from nimm_jupyter.commands import show

    capsys.readouterr()
    assert show.run(argparse.Namespace(run_dir=str(run_dir), json=True)) == 0
    return json.loads(capsys.readouterr().out)


def test_claude_search_prompts_tell_the_truth(tmp_path, monkeypatch, capsys):
    """Strategies, drafts, refinements (one not atomic, one broken), a debug: every recorded
    request is checked against the finished tree."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    task = tasks.get("lung_cancer_chemo", n_patients=16)
    modeller = ScriptedModeller(task.prior_code, task.hybrid_code)

    def respond(body: dict) -> Reply:
        system = "\n".join(b["text"] for b in body["system"])
        return Reply.answer(modeller.answer(system, body["messages"][-1]["content"]),
                            cache_read_input_tokens=1500)

    with FakeAnthropic(responder=respond) as fake:
        proposer = AnthropicProposer(base_url=fake.url, backoff_base=0.01, timeout=20.0)
        res = search(task, budget=9, branches=2, workers=1, proposer=proposer,
                     run_dir=tmp_path / "run", train=TrainConfig(max_epochs=5), device="cpu",
                     # the script answers no distill prompt (tests/test_distill_llm.py does)
                     policy_options={"distill_at": 0}).wait()
        bodies = [r.body for r in fake.requests]

    systems = ["\n".join(b["text"] for b in body["system"]) for body in bodies]
    users = [body["messages"][-1]["content"] for body in bodies]
    assert any(u.startswith("The model below failed") for u in users)  # a debug happened
    seen = check_prompts(systems, users, res.nodes)
    assert seen["effects"] >= 2 and seen["in_progress"] >= 1 and seen["failed"] >= 1
    assert seen["not_atomic"] >= 1 and seen["findings"] >= 1
    rows = {row["id"]: row for row in _show_json(tmp_path / "run", capsys)["nodes"]}
    assert all(row["cache_read_tokens"] == 1500 and row["cache_write_tokens"] == 2000
               and row["uncached_input_tokens"] == 1200 and row["tokens_in"] == 4700
               and row["cost"] > 0 for row in rows.values())
