"""The openai-compatible proposer through the real ``openai`` SDK against a local fake server."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("openai")

import nimm_jupyter.tasks as tasks  # noqa: E402
from nimm_jupyter.modeling.config import TrainConfig  # noqa: E402
from nimm_jupyter.proposers import make_proposer  # noqa: E402
from nimm_jupyter.proposers.base import NodeView, ProposalContext, Strategy  # noqa: E402
from nimm_jupyter.proposers.chat import MissingAPIKeyError  # noqa: E402
from nimm_jupyter.proposers.openai_compat import OpenAICompatProposer  # noqa: E402
from nimm_jupyter.search.api import search  # noqa: E402

from fake_openai import FakeOpenAI, Step  # noqa: E402
from scripted_search import ScriptedModeller, check_prompts  # noqa: E402

KEY = "sk-test-openai-compat-0123456789"
CODE = "import torch\n\n\nclass Model(torch.nn.Module):\n    pass\n"
ANSWER = f"CHANGE: a residual MLP\n```python\n{CODE}```\n"
pytestmark = pytest.mark.timeout(240)


def ctx() -> ProposalContext:
    return ProposalContext(
        task_name="lung_cancer_chemo", kind="trajectory", description="Tumour volume under chemo.",
        user_notes="", input_names=["dose"], target_names=["V", "C"], units={}, sizes={"train": 8, "val": 4},
        prior_code="class Prior: pass", prior_omits="", interface="forward(y_context, u, t)")


@pytest.fixture
def fake():
    with FakeOpenAI() as server:
        yield server


def make(fake, **kw) -> OpenAICompatProposer:
    return OpenAICompatProposer("local-model", api_key=KEY, base_url=fake.url, backoff_base=0.0, **kw)


@pytest.mark.parametrize("stream", [True, False])
def test_draft_request_answer_and_accounting(fake, stream):
    fake.push(Step(text=ANSWER))
    p = make(fake, stream=stream)
    prop = p.draft(ctx(), Strategy("residual", "an MLP on dV/dt"))
    assert prop.error is None and prop.code == CODE and prop.change == "a residual MLP"
    (rec,) = fake.requests
    body = rec["body"]
    assert body["model"] == "local-model" and body["max_tokens"] == 8000
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "# Task: lung_cancer_chemo" in body["messages"][0]["content"]
    assert rec["headers"]["authorization"] == f"Bearer {KEY}"
    assert prop.meta["usage"] == {"input_tokens": 2000, "output_tokens": 250,
                                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1000}
    assert prop.tokens_in == 3000 and prop.tokens_out == 250
    assert prop.cost == 0.0 and prop.meta["price_known"] is False and p.usage["price_known"] is False


def test_transient_faults_are_retried_and_others_are_not(fake):
    fake.push(Step("error", status=503), Step("error", status=429, retry_after=0.0),
              Step("cut"), Step(text=ANSWER))
    slept: list[float] = []
    p = make(fake, sleep=slept.append)
    prop = p.refine(ctx(), NodeView(1, 0, "draft", "d", CODE, "ok", {"status": "ok"}), [])
    assert prop.error is None and prop.meta["attempts"] == 4 and len(slept) == 3
    assert p.usage["retries"] == 3 and p.usage["requests"] == 4
    fake.push(Step("error", status=400))
    prop = p.draft(ctx(), None)
    assert prop.code is None and "API error 400" in prop.error and prop.meta["attempts"] == 1
    fake.push(*[Step("error", status=500)] * 3)
    prop = make(fake, max_retries=2).draft(ctx(), None)
    assert "gave up after 3 attempts" in prop.error


def test_cut_off_answer_and_key_scrubbing(fake):
    fake.push(Step(text=f"CHANGE: uses {KEY}\nno code", finish_reason="length"))
    prop = make(fake).draft(ctx(), None)
    assert prop.code is None and "max_tokens=8000" in prop.error
    assert KEY not in prop.raw and KEY not in prop.change and "[REDACTED]" in prop.raw


def test_key_only_from_the_environment(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match="OPENAI_API_KEY"):
        OpenAICompatProposer()
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    p = make_proposer("openai", model="m", base_url="http://127.0.0.1:9/v1")
    assert isinstance(p, OpenAICompatProposer) and p.model == "m" and KEY not in repr(p)


def test_whole_search_through_the_openai_compatible_proposer(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    task = tasks.get("lung_cancer_chemo", n_patients=16)
    modeller = ScriptedModeller(task.prior_code, task.hybrid_code)

    def respond(body: dict) -> str:
        system, user = (m["content"] for m in body["messages"])
        return modeller.answer(system, user)

    with FakeOpenAI(responder=respond) as fake:
        proposer = OpenAICompatProposer("local-model", base_url=fake.url, backoff_base=0.0)
        res = search(task, budget=9, branches=2, workers=1, proposer=proposer,
                     run_dir=tmp_path / "run", train=TrainConfig(max_epochs=5), device="cpu",
                     # the script answers no distill prompt (tests/test_distill_llm.py does)
                     policy_options={"distill_at": 0}).wait()
        bodies = [r["body"] for r in fake.requests]
    systems = [b["messages"][0]["content"] for b in bodies]
    users = [b["messages"][1]["content"] for b in bodies]
    seen = check_prompts(systems, users, res.nodes)
    assert seen["effects"] >= 2 and seen["in_progress"] >= 1 and seen["failed"] >= 1
    assert seen["not_atomic"] >= 1 and seen["findings"] >= 1
    # every call is counted (rejected duplicates and the strategies call have no node)
    assert res.tokens == 3250 * len(bodies) and proposer.usage["calls"] == len(bodies)
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    assert json.dumps(bodies).count(KEY) == 0
