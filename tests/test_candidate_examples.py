"""The worked examples of docs/CANDIDATES.md are real candidates, and about no benchmark task.

Each example is cut out of the document the proposers are given, checked by the contract
check on data of the system it describes, and fitted briefly: its mechanistic parameters must
move towards the values the data were made with.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch

from nimm_jupyter.modeling import check_candidate
from nimm_jupyter.modeling.contract import load_candidate
from nimm_jupyter.proposers.context import interface_text
from nimm_jupyter.tasks import Task
from nimm_jupyter.tasks.dataframe import task_from_dataframe

pytestmark = pytest.mark.timeout(120)


def example(kind: str) -> str:
    (code,) = re.findall(r"Worked example.*?```python\n(.*?)```", interface_text(kind), re.S)
    return code


def oscillator_task() -> Task:
    """Driven oscillator, omega = 2 rad/s, zeta = 0.05, plus a cubic drag the law lacks."""
    rng = np.random.default_rng(0)
    rows, dt = [], 0.05
    for g in range(30):
        x, v = rng.uniform(-1, 1, size=2)
        for k in range(80):
            force = 0.5 * np.sin(0.7 * k * dt + g)
            rows.append({"unit": g, "t": k * dt, "x": x, "v": v, "force": force})
            a = -4.0 * x - 2 * 0.05 * 2.0 * v - 0.3 * v ** 3 + force
            x, v = x + dt * v, v + dt * a
    return task_from_dataframe(pd.DataFrame(rows), time="t", group="unit", targets=["x", "v"],
                               inputs=["force"], name="oscillator")


def power_law_task() -> Task:
    rng = np.random.default_rng(1)
    x0, x1 = rng.uniform(0.5, 4.0, 300), rng.normal(size=300)
    y = 3.0 * x0 ** 1.5 + 0.2 * x1
    return task_from_dataframe(pd.DataFrame({"x0": x0, "x1": x1, "y": y}), targets=["y"],
                               name="power_law")


def test_the_examples_are_about_no_benchmark_task():
    text = interface_text("trajectory") + interface_text("tabular")
    for word in ("tumour", "Gompertz", "chemo", "alloy", "misfit", "epidemic", "SEIR"):
        assert word.lower() not in text.lower(), word


@pytest.mark.parametrize("kind, make, truth", [
    ("trajectory", oscillator_task, {"omega": 2.0}),
    ("tabular", power_law_task, {"b": 1.5}),
])
def test_example_passes_the_contract_and_fits_its_system(kind, make, truth):
    task = make()
    source = example(kind)
    report = check_candidate(source, task)
    assert report.ok, report.message
    torch.manual_seed(0)
    model = load_candidate(source)(task.spec())
    spec, train = task.spec(), task.train
    y = torch.as_tensor(train.targets, dtype=torch.float32)
    u = torch.as_tensor(train.inputs, dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=0.03)

    def loss() -> torch.Tensor:
        if kind == "trajectory":
            pred, target = model(y[:, :1], u, spec.time), y[:, 1:]
        else:
            pred, target = model(u), y
        return (((pred - target) / spec.target_scale) ** 2).mean()

    start = {k: getattr(model, k)().item() for k in truth}
    for _ in range(150):
        opt.zero_grad()
        loss().backward()
        opt.step()
    for k, true in truth.items():
        assert abs(getattr(model, k)().item() - true) < abs(start[k] - true), k
