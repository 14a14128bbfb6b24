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

import numpy as np
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


EXAMPLES = "Representative training trajectories"


def example_lines(text: str) -> list[str]:
    """The lines of the data view's example trajectories (after their header)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(EXAMPLES)), None)
    if start is None:
        return []
    block = []
    for line in lines[start + 1:]:
        if not line.startswith(("  ", "- trajectory ")):
            break
        block.append(line)
    return block


def unverified_example_lines(task, block: list[str]) -> list[str]:
    """The example lines that are not the task's training data at the shown precision: the
    time row is the task's grid, each value row the named training trajectory's values."""
    train = task.train
    T = train.targets.shape[1]
    grid = np.asarray(task.time if task.time is not None else np.arange(T), dtype=float)

    def same(token_row: str, true) -> bool:
        tokens = [float(x) for x in token_row.split(", ")]
        return len(tokens) == len(true) and all(
            tok == float(f"{v:.3g}") for tok, v in zip(tokens, true))

    shown, i, bad = None, None, []
    for line in block:
        head, _, values = line.strip().partition(": ")
        if line.startswith("- trajectory "):
            i = int(head.split()[2])
        elif head == "time":
            shown = [int(np.argmin(np.abs(grid - float(x)))) for x in values.split(", ")]
            if not same(values, grid[shown]):
                bad.append(line)
        elif head in task.target_names:
            if not same(values, train.targets[i, shown, task.target_names.index(head)]):
                bad.append(line)
        elif head.split(" non-zero at")[0] in task.input_names:
            u = np.asarray(train.inputs[i, :, task.input_names.index(head.split(" non-zero at")[0])])
            if values == "0 throughout":
                ok = not np.any(u)
            elif head.endswith("non-zero at (time=value)"):
                events = np.flatnonzero(u)
                pairs = [p.split("=") for p in values.split(", ")]
                ok = len(pairs) == len(events) and same(", ".join(p[0] for p in pairs), grid[events]) \
                    and same(", ".join(p[1] for p in pairs), u[events])
            else:
                ok = same(values, u[shown])
            if not ok:
                bad.append(line)
        else:
            bad.append(line)
    return bad


@pytest.mark.parametrize("name", BUILTINS)
def test_prompt_holds_no_true_constant(prompts_sent, name):
    """No number in the prompt is a true constant, apart from rows of the training data shown
    as examples, which are checked to be exactly that: rounded training values, of which
    simulated counts such as 14 or 25 match constants by chance (infection_days=14)."""
    text = prompts_sent[name]
    assert "# Task: " + name in text and "## Candidate interface" in text
    task = tasks.get(name)
    block = example_lines(text)
    assert bool(block) == (task.kind.value == "trajectory")
    assert unverified_example_lines(task, block) == []
    data = set(block)
    rest = "\n".join(line for line in text.splitlines() if line not in data)
    assert leaked_numbers(rest, secrets(name)) == []


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


def test_example_trajectories_are_training_data_only():
    """A user series whose held-out tail (validation and test) is far above its training part:
    the data view shows training windows (median, lowest, highest final value), never a
    validation or test value, and the checker above rejects a changed value."""
    import pandas as pd

    from nimm_jupyter.proposers.dataview import MAX_CHARS, data_view
    from nimm_jupyter.tasks import task_from_dataframe

    rng = np.random.default_rng(0)
    train_part = 200 + 50 * np.sin(np.arange(40) / 3) + rng.normal(0, 5, 40)
    held_out = 7000 + 100 * np.arange(8) + rng.normal(0, 5, 8)  # the last 8: val + test
    df = pd.DataFrame({"t": np.arange(48.0), "y": np.r_[train_part, held_out],
                       "dose": (np.arange(48) % 7 == 0) * 2.0})
    task = task_from_dataframe(df, time="t", targets="y", inputs=["dose"], test_last=4,
                               val_last=4, horizon=4, context=6)
    view = data_view(task)
    assert len(view) <= MAX_CHARS and EXAMPLES in view
    block = example_lines(view)
    assert unverified_example_lines(task, block) == []
    final = task.train.targets[:, -1, 0]
    picked = [int(line.split()[2]) for line in block if line.startswith("- trajectory ")]
    assert picked == [int(np.argsort(final)[(len(final) - 1) // 2]), int(np.argmin(final)),
                      int(np.argmax(final))]
    assert any(line.startswith("  dose non-zero at (time=value): ") for line in block)  # the dosing schedule
    numbers = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?(?:e[-+]\d+)?", view)]
    assert max(numbers) < 1000  # nothing of the held-out tail (all above 7000)
    for split in (task.val, task.test):  # the tail is what they forecast
        assert np.asarray(split.targets)[:, task.context:].min() > 6900
    changed = [line.replace(line.split(", ")[-1], "999") if line.startswith("  y:") else line
               for line in block]
    assert unverified_example_lines(task, changed) != []
