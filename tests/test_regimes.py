"""Where a model fails: the error by input regime (driver-scored, shown to a proposer) and the
prior's weak spots in every proposal's search state."""
from __future__ import annotations

import dataclasses

import torch

from nimm_jupyter.modeling.result import EvalResult, SplitScores, Status
from nimm_jupyter.modeling.scoring import SplitData, split_scores
from nimm_jupyter.proposers import prompts
from nimm_jupyter.proposers.base import ProposalContext
from nimm_jupyter.search.node import Node
from nimm_jupyter.search.prior_root import prior_weak_spots


def _trajectories(dose_total):
    """Six two-step trajectories, one input whose per-trajectory total is ``dose_total``."""
    n = len(dose_total)
    u = torch.zeros(n, 3, 1)
    u[:, 0, 0] = torch.tensor(dose_total, dtype=torch.float32)
    target = torch.zeros(n, 2, 1)
    return SplitData((torch.zeros(n, 1, 1), u, torch.arange(3.0)), (True, True, False), target,
                     None, float(target.numel()))


def test_error_by_regime_separates_untreated_from_treated_units():
    data = _trajectories([0, 0, 0, 1, 2, 3, 4, 5])
    pred = torch.zeros(8, 2, 1)
    pred[3:] = 1.0  # the model is wrong only where the drug was given
    s = split_scores(pred, data, torch.ones(1), ["V"], ["dose"])
    assert s.by_regime["dose total 0 (n=3)"] == 0.0
    treated = {k: v for k, v in s.by_regime.items() if not k.startswith("dose total 0 ")}
    assert len(treated) == 2 and all(abs(v - 1.0) < 1e-12 for v in treated.values())
    assert sum(int(k.split("n=")[1][:-1]) for k in s.by_regime) == 8  # every unit once


def test_error_by_regime_uses_thirds_and_skips_inputs_that_do_not_vary():
    data = _trajectories([1, 2, 3, 4, 5, 6])
    s = split_scores(torch.ones(6, 2, 1), data, torch.ones(1), ["V"], ["dose"])
    assert list(s.by_regime) == ["dose total 1-2.67 (n=2)", "dose total 2.67-4.33 (n=2)",
                                 "dose total 4.33-6 (n=2)"]
    flat = _trajectories([2, 2, 2, 2])
    assert split_scores(torch.ones(4, 2, 1), flat, torch.ones(1), ["V"], ["dose"]).by_regime is None
    assert split_scores(torch.ones(6, 2, 1), data, torch.ones(1), ["V"]).by_regime is None


def _prior(val: SplitScores) -> Node:
    return Node(id=0, parent=None, branch=0, operator="draft", state="done",
                result=EvalResult(status=Status.OK, val=val), proposer_meta={"prior": True})


def test_the_prior_weak_spots_name_its_worst_target_step_range_and_regime():
    val = SplitScores(rmse=2.0, rmse_norm=0.2, per_target={"V": 3.0, "C": 0.1},
                      by_horizon={"1-5": 0.01, "6-10": 0.4},
                      by_regime={"dose total 0 (n=3)": 0.02, "dose total 1-5 (n=5)": 0.5})
    note = prior_weak_spots([_prior(val)])
    assert "node 0" in note and "0.2" in note
    assert "target V (3 in original units)" in note and "forecast steps 6-10 (0.4)" in note
    assert "input regime dose total 1-5 (n=5) (0.5)" in note
    assert prior_weak_spots([]) == ""  # no user prior
    failed = _prior(val)
    failed.result = dataclasses.replace(failed.result, status=Status.RUNTIME_ERROR)
    assert prior_weak_spots([failed]) == ""


def test_prompts_show_regimes_and_the_prior_note():
    line = prompts.format_metrics({"status": "ok", "val": {"rmse": 1.0, "rmse_norm": 0.1,
                                                           "by_regime": {"dose total 0 (n=3)": 0.05}}})
    assert "by input regime: dose total 0 (n=3) 0.05" in line
    ctx = ProposalContext(task_name="t", kind="trajectory", description="", user_notes="",
                          input_names=["dose"], target_names=["V"], units={}, sizes={},
                          prior_code="", prior_omits="", interface="",
                          prior_note="The prior (node 0) has ...")
    assert "## Where the prior fails most\nThe prior (node 0) has ..." in prompts.search_state(ctx)
    assert "Where the prior fails" not in prompts.search_state(dataclasses.replace(ctx, prior_note=""))
