"""Noise-aware scores: the bootstrap standard error of a normalised RMSE, and the answer a
search hands back (the simplest model within one standard error of the lowest score)."""
import math

import numpy as np
import torch

from nimm_jupyter.modeling.noise import bootstrap_rmse_se
from nimm_jupyter.modeling.result import EvalResult, SplitScores, Status
from nimm_jupyter.modeling.scoring import SplitData, split_scores
from nimm_jupyter.search.node import Node
from nimm_jupyter.search.tree import lowest_score, one_se_answer


def test_bootstrap_se_matches_the_delta_method_on_gaussian_errors():
    rng = np.random.default_rng(1)
    err = rng.normal(size=400)
    se = bootstrap_rmse_se(err ** 2, np.ones(400))
    # rmse = sqrt(mean(e^2)); var(e^2) = 2 for N(0,1), so SE(rmse) ~ sqrt(2/400) / (2*1)
    assert se is not None and abs(se - math.sqrt(2 / 400) / 2) < 0.2 * math.sqrt(2 / 400) / 2
    assert bootstrap_rmse_se(err ** 2, np.ones(400)) == se  # a fixed seed: reproducible


def test_bootstrap_se_needs_two_units_and_shrinks_with_more_of_them():
    assert bootstrap_rmse_se(np.array([4.0]), np.array([2.0])) is None
    assert bootstrap_rmse_se(np.array([4.0, 0.0]), np.array([2.0, 0.0])) is None  # one scored
    rng = np.random.default_rng(2)
    small = bootstrap_rmse_se(rng.normal(size=25) ** 2, np.ones(25))
    large = bootstrap_rmse_se(rng.normal(size=2500) ** 2, np.ones(2500))
    assert large < small / 5


def test_split_scores_carry_the_se_over_trajectories_and_skip_masked_steps():
    torch.manual_seed(0)
    target = torch.randn(30, 5, 2)
    pred = target + 0.1 * torch.randn(30, 5, 2)
    mask = torch.ones_like(target, dtype=torch.bool)
    mask[0] = False  # a trajectory with nothing observed is not a unit
    pred_bad = pred.clone()
    pred_bad[0] += 100.0  # ... so its (masked) error cannot move the figures
    scale = torch.ones(2)
    data = SplitData((target[:, :1], torch.zeros(30, 6, 1), torch.arange(6.0)), True, target,
                     mask, float(mask.sum()))
    a = split_scores(pred, data, scale, ["a", "b"])
    b = split_scores(pred_bad, data, scale, ["a", "b"])
    assert a.rmse_norm_se is not None and 0 < a.rmse_norm_se < a.rmse_norm
    assert b.rmse_norm_se == a.rmse_norm_se and b.rmse_norm == a.rmse_norm


def _node(i, score, se, n_params):
    r = EvalResult(status=Status.OK, val=SplitScores(rmse=score, rmse_norm=score, rmse_norm_se=se),
                   n_parameters=n_params)
    return Node(id=i, parent=None, branch=0, operator="draft", state="done", result=r)


def test_answer_is_the_simplest_model_within_one_se_of_the_lowest_score():
    nodes = [_node(0, 0.100, 0.010, 10), _node(1, 0.095, 0.010, 500), _node(2, 0.120, 0.010, 3)]
    assert lowest_score(nodes).id == 1
    assert one_se_answer(nodes).id == 0  # within 0.010 of 0.095; 10 parameters, not 500
    nodes[1] = _node(1, 0.080, 0.010, 500)
    assert one_se_answer(nodes).id == 1  # node 0 is now beyond one SE


def test_without_a_standard_error_the_answer_is_the_lowest_score():
    nodes = [_node(0, 0.100, None, 10), _node(1, 0.095, None, 500)]
    assert one_se_answer(nodes).id == 1
    assert one_se_answer([]) is None


def test_node_rows_carry_the_standard_error_and_the_parameter_count():
    row = _node(3, 0.1, 0.02, 7).summary()
    assert row["val_score_se"] == 0.02 and row["n_parameters"] == 7


def test_a_search_hands_back_and_reports_the_one_se_answer(tmp_path):
    from nimm_jupyter.search.api import open_run

    from fakes import FakeExecutor, Recorder
    from test_search import run

    class NoisyExecutor(FakeExecutor):
        """Scores with a 20% standard error; the better a node, the more parameters."""

        def _done(self, req, result):
            if result.ok:
                result.val.rmse_norm_se = 0.2 * result.val.rmse_norm
                result.n_parameters = int(100 / result.val.rmse_norm)
            super()._done(req, result)

    rec = Recorder()
    s, _, _ = run(tmp_path, executor=NoisyExecutor(), budget=6, on_event=rec)
    s.wait(60)
    nodes = s.result.nodes
    answer, low = one_se_answer(nodes), lowest_score(nodes)
    assert answer is not None and answer.id != low.id  # the case this test is about
    assert s.best.id == s.result.best.id == open_run(s.run_dir).best.id == answer.id
    best_events = [e for e in rec.events if e.type == "best_changed"]
    assert best_events[-1].data["node"] == answer.id
    assert [e for e in rec.events if e.type == "search_finished"][0].data["best"] == answer.id
