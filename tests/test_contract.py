"""The candidate contract check: every failure gives one status and one actionable message."""
from __future__ import annotations

import time

import pytest
import torch
from toy_tasks import TAB_PRIOR, TRAJ_HYBRID, TRAJ_PRIOR, line_of, make_toy_tabular, make_toy_trajectory

from nimm_jupyter.modeling import CandidateError, Status, check_candidate, load_candidate
from nimm_jupyter.modeling.contract import static_check

pytestmark = pytest.mark.timeout(60)

HEADER = "import torch\nfrom torch import nn\n"



def tab_model(forward_body: str, init_body: str = "self.w = nn.Parameter(torch.ones(1))") -> str:
    return (HEADER + "\n\nclass Model(nn.Module):\n    def __init__(self, spec):\n"
            f"        super().__init__()\n        {init_body}\n\n"
            f"    def forward(self, x):\n        {forward_body}\n")


@pytest.mark.parametrize("make", [make_toy_trajectory, make_toy_tabular])
def test_references_pass_fast(make):
    task = make()
    for code in (task.prior_code, task.hybrid_code):
        report = check_candidate(code, task)
        assert report.ok, report.message
        assert report.model_class is not None and report.n_parameters > 0
        assert report.seconds < 1.0
    assert check_candidate(task.prior_code, task).output_shape == (
        (3, 18, 2) if task.kind.value == "trajectory" else (3, 1))


def test_check_is_well_under_a_second(traj):
    t0 = time.perf_counter()
    for _ in range(5):
        assert check_candidate(TRAJ_HYBRID, traj).ok
    assert (time.perf_counter() - t0) / 5 < 0.5


def test_syntax_error_names_line_and_text(tab):
    src = HEADER + "class Model(nn.Module)\n    pass\n"
    report = check_candidate(src, tab)
    assert report.status is Status.SYNTAX_ERROR
    assert report.line == 3
    assert "line 3" in report.message and "class Model(nn.Module)" in report.message


@pytest.mark.parametrize("stmt,needle", [
    ("import os", "`os`"),
    ("import subprocess as sp", "`subprocess`"),
    ("from pathlib import Path", "`pathlib`"),
    ("from nimm_jupyter import tasks", "nimm_jupyter"),
    ("from . import x", "relative"),
    ("import torch.hub", "torch.hub"),
])
def test_forbidden_import_names_line_and_module(tab, stmt, needle):
    src = HEADER + stmt + "\n" + tab_model("return x[:, :1] * self.w")
    report = check_candidate(src, tab)
    assert report.status is Status.CONTRACT_ERROR
    assert report.line == 3
    assert "line 3" in report.message and needle in report.message


def test_allowed_imports_pass(tab):
    src = ("import math\nimport numpy as np\nimport torchdiffeq\nimport torch.nn.functional as F\n"
           "from nimm_jupyter import blocks\nfrom nimm_jupyter.blocks import Positive\n"
           + tab_model("return F.softplus(x[:, :1]) * self.w * math.pi"))
    report = check_candidate(src, tab)
    assert report.ok, report.message


@pytest.mark.parametrize("expr,needle", [
    ("open('/etc/passwd')", "`open`"),
    ("eval('1')", "`eval`"),
    ("exec('x = 1')", "`exec`"),
    ("__import__('os')", "`__import__`"),
    ("globals()", "`globals`"),
    ("getattr(x, '__class__')", "dunder"),
    ("x.__class__.__subclasses__()", "__subclasses__"),
    ("torch.hub.list('a/b')", "torch.hub"),
    ("SystemExit(0)", "`SystemExit`"),
])
def test_forbidden_names(tab, expr, needle):
    src = tab_model(f"y = {expr}\n        return x[:, :1] * self.w")
    report = check_candidate(src, tab)
    assert report.status is Status.CONTRACT_ERROR, report.message
    assert needle in report.message
    assert f"line {line_of(src, expr)}" in report.message


def test_no_model_class(tab):
    report = check_candidate(HEADER + "class Net(nn.Module):\n    pass\n", tab)
    assert report.status is Status.CONTRACT_ERROR
    assert "no class named `Model`" in report.message


def test_model_not_a_module(tab):
    src = HEADER + "\n\nclass Model:\n    def __init__(self, spec):\n        pass\n"
    report = check_candidate(src, tab)
    assert report.status is Status.CONTRACT_ERROR
    assert "torch.nn.Module" in report.message and "line 5" in report.message


def test_wrong_shape_shows_expected_and_got(traj, tab):
    bad = TRAJ_PRIOR.replace("n_steps=t.shape[0] - C", "n_steps=t.shape[0] - C - 1")
    report = check_candidate(bad, traj)
    assert report.status is Status.CONTRACT_ERROR
    assert "returned shape (3, 17, 2)" in report.message and "= (3, 18, 2)" in report.message
    assert "(B, T - C, S)" in report.message

    report = check_candidate(tab_model("return x * self.w"), tab)
    assert report.status is Status.CONTRACT_ERROR
    assert "returned shape (3, 2)" in report.message and "expected (B, Y) = (3, 1)" in report.message


def test_non_tensor_and_integer_outputs(tab):
    report = check_candidate(tab_model("return (x[:, :1] * self.w,)"), tab)
    assert report.status is Status.CONTRACT_ERROR and "returned tuple" in report.message
    report = check_candidate(tab_model("return (x[:, :1] * self.w).long()"), tab)
    assert report.status is Status.CONTRACT_ERROR and "float" in report.message


def test_nan_output(tab):
    report = check_candidate(tab_model("return x[:, :1] * self.w * float('nan')"), tab)
    assert report.status is Status.CONTRACT_ERROR
    assert "output contains NaN at index [0, 0]" in report.message


def test_inf_output(tab):
    report = check_candidate(tab_model("return x[:, :1] * self.w + float('inf')"), tab)
    assert report.status is Status.CONTRACT_ERROR
    assert "inf" in report.message


def test_no_trainable_parameters(tab):
    report = check_candidate(tab_model("return x[:, :1] * 2.0", init_body="self.k = 2.0"), tab)
    assert report.status is Status.CONTRACT_ERROR
    assert "no trainable parameters" in report.message


def test_output_detached_from_parameters(tab):
    report = check_candidate(tab_model("return (x[:, :1] * self.w).detach()"), tab)
    assert report.status is Status.CONTRACT_ERROR
    assert "no gradient" in report.message


def test_nan_gradient_names_parameter(tab):
    src = tab_model("return x[:, :1] * 0.0 + torch.sqrt(self.w - 1.0)")
    report = check_candidate(src, tab)
    assert report.status is Status.CONTRACT_ERROR
    assert "`w`" in report.message and "gradient" in report.message


def test_exception_in_forward_names_candidate_line(tab):
    src = tab_model("z = x[:, :1] * self.w\n        raise ValueError('bad shape here')")
    report = check_candidate(src, tab)
    assert report.status is Status.RUNTIME_ERROR
    line = line_of(src, "raise ValueError")
    assert report.line == line
    assert "ValueError: bad shape here" in report.message
    assert f"candidate line {line}" in report.message


def test_torch_error_in_forward_names_candidate_line(tab):
    src = tab_model("return torch.matmul(x, torch.ones(5, 1)) * self.w")
    report = check_candidate(src, tab)
    assert report.status is Status.RUNTIME_ERROR
    assert f"candidate line {line_of(src, 'matmul')}" in report.message
    assert "RuntimeError" in report.message


def test_exception_in_constructor(tab):
    src = tab_model("return x[:, :1] * self.w", init_body="self.w = spec.no_such_field")
    report = check_candidate(src, tab)
    assert report.status is Status.RUNTIME_ERROR
    assert "AttributeError" in report.message and "Model(spec) failed" in report.message
    assert f"candidate line {line_of(src, 'no_such_field')}" in report.message


def test_wrong_signatures_are_contract_errors(traj, tab):
    src = HEADER + ("\n\nclass Model(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                    "        self.w = nn.Parameter(torch.ones(1))\n\n"
                    "    def forward(self, x):\n        return x[:, :1] * self.w\n")
    report = check_candidate(src, tab)
    assert report.status is Status.CONTRACT_ERROR and "__init__(self, spec)" in report.message
    # A tabular forward against a trajectory task: forward gets three arguments.
    report = check_candidate(tab_model("return x[:, :1] * self.w"), traj)
    assert report.status is Status.CONTRACT_ERROR
    assert "forward(self, y_context, u, t)" in report.message


def test_module_level_error(tab):
    src = HEADER + "x = 1 / 0\n" + tab_model("return x[:, :1] * self.w")
    report = check_candidate(src, tab)
    assert report.status is Status.RUNTIME_ERROR
    assert "ZeroDivisionError" in report.message and "candidate line 3" in report.message


def test_check_with_bare_spec(traj, tab):
    assert check_candidate(TRAJ_HYBRID, traj.spec()).ok
    report = check_candidate(TAB_PRIOR, tab.spec())
    assert report.ok and report.output_shape == (3, 1)


def test_load_candidate_returns_model_class(tab):
    cls = load_candidate(TAB_PRIOR)
    assert issubclass(cls, torch.nn.Module) and cls.__name__ == "Model"
    with pytest.raises(CandidateError) as err:
        load_candidate("import os\n")
    assert err.value.status is Status.CONTRACT_ERROR


def test_static_check_accepts_super_init():
    static_check(TRAJ_HYBRID)  # `super().__init__()` is an ordinary dunder call


def test_check_does_not_touch_global_rng(tab):
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    check_candidate(TAB_PRIOR, tab)
    assert torch.equal(torch.rand(1), expected)
