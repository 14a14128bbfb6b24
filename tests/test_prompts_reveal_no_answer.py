"""No built-in task's prompt gives the answer away (issue 16).

Every built-in task is built and its prompt is sent by the real Claude proposer (the SDK, the
real prompt builder) to a local fake server, offline. The text that would reach the model
must not hold the simulator's true constants (read from the simulator modules, never typed
here), the task's reference hybrid or oracle code, or, for the lung tasks, the name of the
simulator's growth law or of the papers that define it.
"""
from __future__ import annotations

import inspect
import re

import pytest

import nimm_jupyter.tasks as tasks
from fake_anthropic import FakeAnthropic, Reply
from nimm_jupyter.proposers.anthropic import AnthropicProposer
from nimm_jupyter.proposers.base import Strategy
from nimm_jupyter.proposers.context import context_for
from nimm_jupyter.tasks import lung_cancer, metapop, pkpd_sim

pytestmark = pytest.mark.timeout(300)

BUILTINS = list(tasks._BUILTINS)
LUNG = ("lung_cancer", "lung_cancer_chemo", "lung_cancer_chemo_radio")
ANSWER = "CHANGE: a model\n```python\nclass Model:\n    pass\n```\n"

# Simulator arguments that are not secrets: the mobility matrix built from ``stay_home`` is
# handed to every model as a constant, and the latent/infectious periods (COVID) and the
# decolonisation time (MRSA) are the literature values the expert's prior starts from.
NOT_SECRET = {"stay_home", "latent_days", "infectious_days", "colonised_days"}


def _defaults(func) -> dict[str, float]:
    return {name: float(p.default) for name, p in inspect.signature(func).parameters.items()
            if isinstance(p.default, float) and name not in NOT_SECRET}


def secrets(name: str) -> dict[str, float]:
    """The true constants of the simulator behind task ``name`` (none for real data)."""
    if name in LUNG:
        return {k: float(getattr(pkpd_sim, k)) for k in ("RHO", "K", "BETA_C", "ALPHA_R", "BETA_R")}
    if name.startswith("covid_") and name.endswith("_synthetic"):
        simulator = metapop.simulate_covid
        return {**_defaults(simulator), "NPI_EFFICACY": inspect.getmodule(simulator).NPI_EFFICACY}
    if name == "mrsa_virginia_synthetic":
        return _defaults(metapop.simulate_mrsa)
    return {}


_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(%?)")


def _significant(token: str) -> int:
    mantissa = re.split(r"[eE]", token)[0]
    digits = mantissa.replace(".", "").lstrip("0")
    if "." not in mantissa:
        digits = digits.rstrip("0")  # 300 states one significant digit
    return len(digits)


def leaked_numbers(text: str, constants: dict[str, float]) -> list[str]:
    """``name=token`` for every number in ``text`` that is a constant rounded to the digits the
    token shows (at least 2 significant digits, or any percentage)."""
    hits = []
    for match in _NUMBER.finditer(text):
        token, percent = match.groups()
        value, n = float(token) / (100.0 if percent else 1.0), _significant(token)
        if n < (1 if percent else 2):
            continue
        for name, secret in constants.items():
            if secret and float(f"{secret:.{n}g}") == pytest.approx(value, rel=1e-12):
                hits.append(f"{name}={token}{percent}")
    return hits


def _code_lines(source: str) -> set[str]:
    """Statements of ``source`` without comments, imports and one-word lines."""
    lines = (line.split("#")[0].strip() for line in source.splitlines())
    return {s for s in lines if len(s) > 12 and not s.startswith(("import ", "from ", '"""'))}


def reference_lines(task) -> set[str]:
    """Code lines of the reference hybrid (and the lung oracle) that the prior does not have."""
    sources = [task.hybrid_code or ""] + ([lung_cancer.ORACLE_CODE] if task.name in LUNG else [])
    return set().union(*map(_code_lines, sources)) - _code_lines(task.prior_code)


@pytest.fixture(scope="module")
def prompts_sent() -> dict[str, str]:
    """Task name -> everything the proposer sent for a strategies call and a draft call."""
    sent: dict[str, str] = {}
    with FakeAnthropic(default=Reply.answer(ANSWER)) as fake:
        proposer = AnthropicProposer(api_key="sk-ant-test-XXXX", base_url=fake.url, timeout=5.0,
                                     max_retries=0)
        try:
            for name in BUILTINS:
                ctx = context_for(tasks.get(name))
                proposer.strategies(ctx, 3, [])
                proposer.draft(ctx, Strategy("residual network", "a residual on each state"))
                texts = []
                for rec in fake.requests:
                    texts += [block["text"] for block in rec.body["system"]]
                    texts += [m["content"] for m in rec.body["messages"]]
                sent[name] = "\n".join(texts)
                fake.requests.clear()
        finally:
            proposer.close()
    return sent


def test_the_leak_detector_finds_what_it_should():
    constants = {"K": pkpd_sim.K, "BETA_C": pkpd_sim.BETA_C, "trend": 0.05}
    assert leaked_numbers("K ~ 14137 cm^3", constants) == ["K=14137"]
    assert leaked_numbers("K = 1.41e+04", constants) == ["K=1.41e+04"]
    assert leaked_numbers("beta 0.028 per unit", constants) == ["BETA_C=0.028"]
    assert leaked_numbers("a ~5%/year decline", constants) == ["trend=5%"]
    assert leaked_numbers("0.03 and 15000 and 2.8 and x0.0280y", constants) == []


@pytest.mark.parametrize("name", BUILTINS)
def test_prompt_holds_no_true_constant(prompts_sent, name):
    text = prompts_sent[name]
    assert "# Task: " + name in text and "## Candidate interface" in text
    assert leaked_numbers(text, secrets(name)) == []


@pytest.mark.parametrize("name", BUILTINS)
def test_prompt_holds_no_reference_hybrid_code(prompts_sent, name):
    task = tasks.get(name)
    lines = reference_lines(task)
    assert lines or name not in LUNG  # the lung hybrid and oracle differ from the prior
    assert sorted(line for line in lines if line in prompts_sent[name]) == []


@pytest.mark.parametrize("name", LUNG)
def test_lung_prompt_names_neither_the_growth_law_nor_its_source(prompts_sent, name):
    text = prompts_sent[name]
    for word in ("Gompertz", "Geng", "HDTwinGen", "carrying capacity", "ln(K/V)"):
        assert word not in text, word


@pytest.mark.parametrize("name", BUILTINS)
def test_what_the_prior_leaves_out_is_said_once(prompts_sent, name):
    task = tasks.get(name)
    text = prompts_sent[name].split("## Candidate interface")[0]
    assert text.count("What the prior leaves out") == 1
    assert text.count(task.prior_omits.strip()[:60]) == 1
