"""The Claude proposer driven through the real ``anthropic`` SDK against a local fake server."""
from __future__ import annotations

import json
import socket
import time
from importlib import resources

import pytest

from fake_anthropic import FakeAnthropic, Recorded, Reply
from nimm_jupyter.proposers import prompts
from nimm_jupyter.proposers.anthropic import (
    DEFAULT_MODEL,
    STREAM_ENDED_EARLY,
    AnthropicProposer,
    MissingAPIKeyError,
)
from nimm_jupyter.proposers.base import NodeView, Proposal, ProposalContext, Strategy
from nimm_jupyter.proposers.extract import NO_CODE_ERROR
from nimm_jupyter.proposers.pricing import PRICES, call_cost, price_for

pytestmark = pytest.mark.timeout(60)

FAKE_KEY = "sk-ant-test-XXXX"

MODEL_CODE = (
    "import torch\nfrom torch import nn\nfrom nimm_jupyter.blocks import Positive\n\n\n"
    "class Model(nn.Module):\n    def __init__(self, spec):\n        super().__init__()\n"
    "        self.rho = Positive(0.01)\n\n    def forward(self, y_context, u, t):\n"
    "        return y_context[:, -1:].expand(-1, t.shape[0] - y_context.shape[1], -1) * self.rho()\n"
)
ANSWER = f"I will add a residual.\n\nCHANGE: add a residual MLP on dV/dt\n```python\n{MODEL_CODE}```\n"


@pytest.fixture
def fake():
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    return FAKE_KEY


@pytest.fixture
def make(fake, key):
    made: list[AnthropicProposer] = []

    def build(**kw) -> AnthropicProposer:
        kw.setdefault("base_url", fake.url)
        kw.setdefault("timeout", 1.0)
        kw.setdefault("backoff_base", 0.001)
        kw.setdefault("max_retries", 4)
        p = AnthropicProposer(**kw)
        made.append(p)
        return p

    yield build
    for p in made:
        p.close()


def ctx() -> ProposalContext:
    return ProposalContext(
        task_name="lung_cancer_chemo", kind="trajectory",
        description="Tumour volume V under chemotherapy concentration C; Gompertz growth.",
        user_notes="Focus on the chemo kill term.", input_names=["dose"], target_names=["V", "C"],
        units={"V": "cm^3", "C": "mg/L"}, sizes={"train": 40, "val": 10, "test": 10},
        prior_code="class Prior: pass  # gompertz", prior_omits="immune response",
        interface="def forward(self, y_context, u, t): ...  # INTERFACE-MARKER",
    )


def metrics(val: float, test: float = 987.654321, status: str = "ok", message: str = "") -> dict:
    return {
        "status": status, "message": message,
        "train": {"rmse": 0.5, "rmse_norm": 0.05, "per_target": {"V": 0.61, "C": 0.02}},
        "val": {"rmse": val * 10, "rmse_norm": val, "per_target": {"V": 0.777, "C": 0.031}},
        "test": {"rmse": test, "rmse_norm": test / 10, "per_target": {"V": test}},
        "test_rmse": test,
        "parameters": {"rho": 0.0123, "K": 9876.5}, "n_parameters": 321, "epochs": 50,
        "loss_curve": [{"epoch": 0, "train": 1.0, "val": 1.1}, {"epoch": 1, "train": 0.4, "val": 0.45}],
    }


def node(id: int, change: str, val: float, code: str = MODEL_CODE, status: str = "ok", **kw) -> NodeView:
    return NodeView(id=id, branch=1, operator=kw.pop("operator", "refine"), change=change, code=code,
                    status=status, metrics=metrics(val, status=status, **kw),
                    strategy=Strategy("Residual on dV", "MLP added to dV/dt", "residual-dv"))


def sent_key(rec: Recorded) -> str | None:
    # The SDK sends the key as x-api-key (1.x) or as a bearer token (2.x).
    if "x-api-key" in rec.headers:
        return rec.headers["x-api-key"]
    auth = rec.headers.get("authorization", "")
    return auth[len("Bearer "):] if auth.startswith("Bearer ") else None


def user_text(rec: Recorded) -> str:
    return rec.body["messages"][-1]["content"]


def assert_no_key(p: Proposal | None, *extra: str) -> None:
    blob = json.dumps(p.__dict__, default=str) if p is not None else ""
    for text in (blob, *extra):
        assert FAKE_KEY not in text and "sk-ant-" not in text


# -- success paths -------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [True, False])
def test_success_extracts_code_change_tokens_and_cost(fake, make, stream):
    fake.push(Reply.answer(ANSWER, input_tokens=1200, output_tokens=300,
                           cache_creation_input_tokens=2000, cache_read_input_tokens=500))
    p = make(stream=stream)
    prop = p.draft(ctx(), Strategy("Residual on dV", "An MLP adds to dV/dt", "residual-dv"))
    assert prop.error is None
    assert prop.code == MODEL_CODE
    assert prop.change == "add a residual MLP on dV/dt"
    assert prop.tokens_in == 1200 + 2000 + 500 and prop.tokens_out == 300
    price = PRICES[DEFAULT_MODEL]
    expected = (1200 * price.input + 300 * price.output + 2000 * price.cache_write
                + 500 * price.cache_read) / 1e6
    assert prop.cost == pytest.approx(expected)
    assert prop.meta["usage"]["cache_read_input_tokens"] == 500 and prop.meta["price_known"]
    assert prop.meta["attempts"] == 1 and prop.meta["stop_reason"] == "end_turn"
    assert prop.raw == ANSWER
    assert p.usage["calls"] == 1 and p.usage["cost_usd"] == pytest.approx(expected)
    assert p.usage["cache_creation_input_tokens"] == 2000

    (rec,) = fake.requests
    assert rec.path == "/v1/messages"
    assert sent_key(rec) == FAKE_KEY
    assert rec.body["model"] == DEFAULT_MODEL
    assert bool(rec.body.get("stream")) is stream
    assert rec.body["max_tokens"] == 8000 and "temperature" not in rec.body
    system = rec.body["system"]
    assert isinstance(system, list) and system[-1]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in system[0]
    task_block = system[-1]["text"]
    assert "Gompertz growth" in task_block and "INTERFACE-MARKER" in task_block
    assert "class Prior" in task_block and "V [cm^3]" in task_block
    assert "Residual on dV" in user_text(rec)
    assert_no_key(prop)


def test_model_and_temperature_are_sent(fake, make):
    p = make(model="claude-haiku-4-5", temperature=0.3, max_tokens=1234)
    prop = p.draft(ctx(), None)
    body = fake.requests[0].body
    assert body["model"] == "claude-haiku-4-5" and body["temperature"] == 0.3 and body["max_tokens"] == 1234
    assert prop.meta["model"] == "claude-haiku-4-5"
    assert prop.cost == pytest.approx(call_cost("claude-haiku-4-5", 1200, 300, 2000, 0).usd)


@pytest.mark.parametrize("stream", [True, False])
def test_thinking_blocks_are_not_part_of_the_answer(fake, make, stream):
    reply = Reply.answer(ANSWER)
    reply.thinking = "Let me think about class Model carefully. CHANGE: secret plan"
    fake.push(reply)
    prop = make(stream=stream).draft(ctx(), None)
    assert prop.error is None and prop.code == MODEL_CODE and prop.raw == ANSWER
    assert prop.change == "add a residual MLP on dV/dt"


def test_cumulative_usage_over_calls(fake, make):
    p = make()
    for _ in range(3):
        p.draft(ctx(), None)
    assert p.usage["calls"] == 3 and p.usage["requests"] == 3
    assert p.usage["input_tokens"] == 3 * 1200 and p.usage["output_tokens"] == 3 * 300
    assert p.usage["cost_usd"] == pytest.approx(3 * call_cost(DEFAULT_MODEL, 1200, 300, 2000, 0).usd)


def test_unknown_model_costs_zero_with_flag(fake, make):
    p = make(model="claude-imaginary-9")
    prop = p.draft(ctx(), None)
    assert prop.error is None and prop.code is not None
    assert prop.cost == 0.0 and prop.meta["price_known"] is False
    assert p.usage["price_known"] is False and prop.tokens_out == 300


# -- retries ---------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [429, 529, 500, 502, 503])
@pytest.mark.parametrize("stream", [True, False])
def test_transient_status_then_success(fake, make, status, stream):
    fake.push(Reply.error(status), Reply.answer(ANSWER))
    p = make(stream=stream)
    prop = p.draft(ctx(), None)
    assert prop.error is None and prop.code == MODEL_CODE
    assert len(fake.requests) == 2 and prop.meta["attempts"] == 2
    assert p.usage["retries"] == 1 and p.usage["requests"] == 2
    assert all(sent_key(r) == FAKE_KEY for r in fake.requests)


def test_retry_after_is_respected_and_capped(fake, make):
    slept: list[float] = []
    fake.push(Reply.error(429, retry_after=7), Reply.error(429, retry_after=120), Reply.answer(ANSWER))
    p = make(sleep=slept.append, retry_after_max=30.0)
    prop = p.draft(ctx(), None)
    assert prop.error is None
    assert slept == [7.0, 30.0]


def test_backoff_grows_exponentially_with_jitter(fake, make):
    slept: list[float] = []
    fake.push(*[Reply.error(500)] * 4, Reply.answer(ANSWER))
    p = make(sleep=slept.append, backoff_base=1.0, backoff_max=5.0)
    assert p.draft(ctx(), None).error is None
    assert len(slept) == 4
    for attempt, s in enumerate(slept):
        cap = min(5.0, 2.0 ** attempt)
        assert 0.5 * cap <= s <= cap


def test_persistent_overload_gives_error_after_max_retries(fake, make):
    fake.push(*[Reply.error(529)] * 10)
    p = make(max_retries=3)
    prop = p.draft(ctx(), None)
    assert prop.code is None and prop.error is not None
    assert "529" in prop.error and "overloaded" in prop.error.lower() and "4 attempts" in prop.error
    assert len(fake.requests) == 4 and prop.meta["attempts"] == 4
    assert prop.tokens_in == 0 and prop.cost == 0.0
    assert p.usage["errors"] == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_other_client_errors_are_not_retried(fake, make, status):
    fake.push(Reply.error(status, message=f"bad request, key {FAKE_KEY} rejected"))
    p = make()
    prop = p.refine(ctx(), node(3, "widen", 0.2), [])
    assert len(fake.requests) == 1
    assert prop.code is None and str(status) in prop.error
    assert_no_key(prop)
    assert "[REDACTED]" in prop.error


@pytest.mark.parametrize("stream", [True, False])
def test_hanging_response_times_out_then_retries(fake, make, stream):
    fake.push(Reply.hang(10), Reply.answer(ANSWER))
    p = make(stream=stream, timeout=1.0)
    t0 = time.monotonic()
    prop = p.draft(ctx(), None)
    assert prop.error is None and prop.code == MODEL_CODE
    assert len(fake.requests) == 2
    assert time.monotonic() - t0 < 5


def test_persistent_hang_reports_timeout(fake, make):
    fake.push(Reply.hang(10), Reply.hang(10))
    p = make(max_retries=1, timeout=0.5)
    prop = p.draft(ctx(), None)
    assert prop.code is None and "timed out" in prop.error and len(fake.requests) == 2


@pytest.mark.parametrize("clean_end", [False, True], ids=["connection-dropped", "no-message-stop"])
def test_truncated_stream_then_success(fake, make, clean_end):
    fake.push(Reply.truncate(ANSWER, chunks_before_cut=2, clean_end=clean_end), Reply.answer(ANSWER))
    p = make(stream=True)
    prop = p.draft(ctx(), None)
    assert prop.error is None and prop.code == MODEL_CODE
    assert len(fake.requests) == 2 and prop.meta["attempts"] == 2


@pytest.mark.parametrize("clean_end", [False, True], ids=["connection-dropped", "no-message-stop"])
def test_persistently_truncated_stream_is_an_error_not_a_crash(fake, make, clean_end):
    fake.push(*[Reply.truncate(ANSWER, clean_end=clean_end)] * 3)
    p = make(stream=True, max_retries=2)
    prop = p.draft(ctx(), None)
    assert prop.code is None and STREAM_ENDED_EARLY in prop.error
    assert len(fake.requests) == 3


def test_truncated_plain_response_then_success(fake, make):
    fake.push(Reply.truncate(ANSWER), Reply.answer(ANSWER))
    p = make(stream=False)
    prop = p.draft(ctx(), None)
    assert prop.error is None and prop.code == MODEL_CODE and len(fake.requests) == 2


def test_unreachable_server_is_an_error(key):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = AnthropicProposer(base_url=f"http://127.0.0.1:{port}", timeout=1.0, max_retries=1, backoff_base=0.001)
    try:
        prop = p.draft(ctx(), None)
    finally:
        p.close()
    assert prop.code is None and "connection error" in prop.error and "2 attempts" in prop.error
    assert_no_key(prop)


# -- answers without code, strategies, prompts ----------------------------------------------

@pytest.mark.parametrize("stream", [True, False])
def test_answer_without_code_is_a_clear_failure(fake, make, stream):
    fake.push(Reply.answer("CHANGE: nothing\nI think the model is already fine."))
    p = make(stream=stream)
    prop = p.refine(ctx(), node(4, "x", 0.3), [])
    assert prop.code is None and prop.error == NO_CODE_ERROR
    assert prop.tokens_out == 300 and prop.cost > 0  # the call was still paid for
    assert "already fine" in prop.raw and prop.change == "nothing"


def test_truncated_code_block_is_returned_flagged(fake, make):
    cut = ANSWER.rsplit("```", 1)[0].rstrip()[:-10]
    fake.push(Reply("answer", text=cut, stop_reason="max_tokens"),
              Reply("answer", text="CHANGE: x\nLet me first", stop_reason="max_tokens"))
    p = make()
    prop = p.draft(ctx(), None)
    assert prop.code is not None and prop.meta["truncated"] is True
    assert prop.meta["stop_reason"] == "max_tokens"
    prop = p.draft(ctx(), None)
    assert prop.code is None and prop.error.startswith(NO_CODE_ERROR) and "max_tokens=8000" in prop.error


def test_strategies_k_distinct_and_exclusions_in_prompt(fake, make):
    listing = [
        {"title": "Neural time-varying growth rate", "description": "rho(t) from an MLP of t and dose."},
        {"title": "Residual net on dV", "description": "duplicate of an excluded one"},
        {"title": "Neural closure for immune kill", "description": "a missing kill term."},
        {"title": "Neural time varying growth rate", "description": "near-duplicate of the first"},
        {"title": "Predict unobserved drug effect", "description": "a net for the effective dose."},
        {"title": "Fifth idea", "description": "beyond k"},
    ]
    fake.push(Reply.answer("Here you go:\n```json\n" + json.dumps(listing) + "\n```\nThanks"))
    p = make()
    exclude = [Strategy("Residual network on dV", "an MLP on dV/dt", "residual-dv")]
    out = p.strategies(ctx(), 3, exclude)
    assert [s.title for s in out] == ["Neural time-varying growth rate", "Neural closure for immune kill",
                                      "Predict unobserved drug effect"]
    assert len({s.key for s in out}) == 3 and all(s.description for s in out)
    prompt = user_text(fake.requests[0])
    assert "3 DISTINCT" in prompt and "Residual network on dV" in prompt
    assert p.last_call is not None and p.last_call.tokens_out == 300 and p.usage["calls"] == 1


def test_strategies_failure_returns_empty_list(fake, make):
    fake.push(Reply.answer("I have no ideas."), *[Reply.error(529)] * 5)
    p = make(max_retries=1)
    assert p.strategies(ctx(), 3, []) == []
    assert "JSON list" in p.last_call.error
    assert p.strategies(ctx(), 3, []) == []
    assert "529" in p.last_call.error


def test_refine_prompt_has_parent_code_val_metrics_history_and_no_test(fake, make):
    history = [
        node(1, "draft with residual on dV", 0.40, operator="draft"),
        node(2, "add dose as a net input", 0.30),
        node(5, "remove the carrying capacity", 0.90, status="runtime_error",
             message="shape mismatch (B, 2) vs (B, 1)"),
        node(7, "clamp V at zero", float("nan"), status="running"),
        node(8, "swap the activation and widen", 0.35),
    ]
    # the search's history entries: parent and effect vs that parent (node 8 refines node 2)
    history[1].meta.update(parent=1, parent_score=0.40, effect=-0.1)
    history[2].meta.update(parent=2)
    history[3].meta.update(parent=2, in_progress=True)
    history[4].meta.update(parent=2, parent_score=0.30, effect=0.05, n_changes=3)
    parent = node(6, "widen the MLP to 32 units", 0.2345)
    c = ctx()
    c.memory = ["\"add dose as a net input\": better in 1, worse in 0 of 1 tries (1 branch)"]
    c.in_progress = ["node 7 (branch 1, refine of node 2): clamp V at zero"]
    prop = make().refine(c, parent, history)
    assert prop.error is None
    (rec,) = fake.requests
    prompt = user_text(rec)
    assert MODEL_CODE.strip() in prompt
    assert "widen the MLP to 32 units" in prompt
    assert "val RMSE: 2.345 (normalised 0.2345)" in prompt and "V 0.777" in prompt
    assert "train RMSE: 0.5" in prompt
    assert "rho=0.0123" in prompt and "K=9876" in prompt
    assert "node 2 (refine of node 1): add dose as a net input -> val 0.3 (-0.1 vs its parent's 0.4: better)" in prompt
    assert "node 5 (refine of node 2): remove the carrying capacity -> failed: runtime_error" in prompt
    assert "node 7 (refine of node 2): clamp V at zero -> in progress" in prompt
    assert "failed: running" not in prompt
    assert "[NOT atomic: changed 3 separate places] -> val 0.35 (+0.05 vs its parent's 0.3: worse)" in prompt
    assert "better in 1, worse in 0 of 1 tries" in prompt and "Still being evaluated" in prompt
    assert "10 validation trajectories" in prompt and "no standard error" in prompt
    assert "exactly ONE thing" in prompt
    whole = json.dumps(rec.body)
    assert "987.6" not in whole and "98.76" not in whole and "test_rmse" not in whole
    assert "Residual on dV" in prompt  # the branch strategy


def test_debug_prompt_has_failure_and_asks_for_minimal_fix(fake, make):
    failed = node(7, "add immune term", float("nan"), status="contract_error",
                  message="line 12: output shape (4, 10, 1), expected (4, 10, 2)")
    fake.push(Reply.answer(ANSWER.replace("add a residual MLP on dV/dt", "return both states")))
    prop = make().debug(ctx(), failed)
    assert prop.change == "return both states"
    assert prop.code == MODEL_CODE and prop.error is None
    prompt = user_text(fake.requests[0])
    assert "contract_error" in prompt and "expected (4, 10, 2)" in prompt
    assert "Fix only what breaks" in prompt and MODEL_CODE.strip() in prompt
    assert "987.6" not in json.dumps(fake.requests[0].body)


def test_draft_without_strategy_and_with_seed_code(fake, make):
    c = ctx()
    c.seed_code = "class Model: pass  # SEED-MARKER"
    make().draft(c, None)
    prompt = user_text(fake.requests[0])
    assert "your choice" in prompt and "SEED-MARKER" in prompt


def test_missing_key_is_a_clear_error():
    with pytest.raises(MissingAPIKeyError, match="ANTHROPIC_API_KEY"):
        AnthropicProposer()


def test_explicit_key_and_base_url_env(fake, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
    p = AnthropicProposer(api_key=FAKE_KEY, timeout=1.0)
    try:
        prop = p.draft(ctx(), None)
    finally:
        p.close()
    assert prop.code is not None and sent_key(fake.requests[0]) == FAKE_KEY


def test_key_never_in_output(fake, make, capsys, caplog):
    fake.push(Reply.answer(f"CHANGE: echo {FAKE_KEY}\n```python\n{MODEL_CODE}# {FAKE_KEY}\n```"),
              Reply.error(500, message=f"boom {FAKE_KEY}"), Reply.error(500, message=f"boom {FAKE_KEY}"))
    p = make(max_retries=1)
    ok = p.draft(ctx(), None)
    bad = p.refine(ctx(), node(1, "x", 0.2), [])
    for prop in (ok, bad):
        assert_no_key(prop)
    assert ok.code is not None and "[REDACTED]" in ok.change and "[REDACTED]" in ok.raw
    out = capsys.readouterr()
    assert_no_key(None, repr(p), str(p.usage), out.out, out.err, caplog.text)
    # the prompts sent never carry the key either
    assert all(FAKE_KEY not in json.dumps(r.body) for r in fake.requests)


def test_unexpected_client_failure_becomes_a_scrubbed_error(fake, make, monkeypatch):
    p = make(stream=False)

    def broken(**kw):
        raise ValueError(f"client bug while using {FAKE_KEY}")

    monkeypatch.setattr(p._client.messages, "create", broken)
    prop = p.draft(ctx(), None)
    assert prop.code is None and "ValueError" in prop.error and "client bug" in prop.error
    assert_no_key(prop)


def test_invalid_settings_are_named(key):
    with pytest.raises(ValueError, match="max_tokens"):
        AnthropicProposer(max_tokens=0)
    with pytest.raises(ValueError, match="timeout"):
        AnthropicProposer(timeout=0)


# -- packaging and pricing ---------------------------------------------------------------------

def test_prompt_templates_are_package_resources():
    root = resources.files("nimm_jupyter.proposers.prompts")
    for name in prompts.TEMPLATE_NAMES:
        assert root.joinpath(f"{name}.md").is_file()
        assert prompts.template(name).template.strip()
    with pytest.raises(ValueError, match="unknown prompt template"):
        prompts.template("nope")


def test_pricing_table_lookup():
    assert price_for(DEFAULT_MODEL) is not None
    assert price_for("claude-sonnet-4-5-20250929") == PRICES["claude-sonnet-4-5"]
    assert price_for("claude-haiku-5-5-20261007") == PRICES["claude-haiku-5-5"]
    assert price_for("claude-3-5-haiku-latest") == PRICES["claude-3-5-haiku"]
    assert price_for("anthropic.claude-opus-4-1-20250805-v1:0") == PRICES["claude-opus-4-1"]
    assert price_for("gpt-4") is None
    c = call_cost("claude-opus-4-1", 1_000_000, 1_000_000, 1_000_000, 1_000_000)
    assert c.price_known and c.usd == pytest.approx(15 + 75 + 18.75 + 1.5)
    # Haiku 5.5 bills a whole call at its long-prompt rates once the prompt exceeds 100k
    assert call_cost("claude-haiku-5-5", 1000, 1000).usd == pytest.approx((100 + 500) / 1e6)
    assert call_cost("claude-haiku-5-5", 90_000, 1000, 0, 20_000).usd == pytest.approx(
        (90_000 * 0.5 + 1000 * 2.5 + 20_000 * 0.05) / 1e6)
