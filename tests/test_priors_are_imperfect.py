"""Each task's mechanistic prior leaves something out: fitted alone, it is measurably worse
on validation data than the best model we know that adds a neural part (the task's
hand-written hybrid, or one of the offline proposer's first drafts).

The lung-cancer tasks check this against the true simulator structure
(tests/test_tasks_lung.py) and the FCC alloy task against the per-alloy mean on its training
rows (tests/test_tasks_hea.py), because its held-out scatter between repeat measurements
(~260 MPa) is larger than any model's gain.
"""
from __future__ import annotations

import pytest

import nimm_jupyter.tasks as tasks
from nimm_jupyter.modeling.config import TrainConfig
from nimm_jupyter.modeling.harness import evaluate
from nimm_jupyter.proposers.context import context_for
from nimm_jupyter.proposers.offline import OfflineProposer

# Not here: the synthetic COVID stand-ins. Their simulated variant waves are hidden from the
# models, and on validation windows the best hybrid we know is only ~2% better than the fitted
# SEIR prior (427.96 vs 418.34 Bogota, 107.8 vs 105.4 Medellin), within fit-to-fit noise.
CASES = {
    "influenza_usa": {},
    "hea_bcc_temp": {},
    "mrsa_virginia_synthetic": {},
}

pytestmark = pytest.mark.timeout(240)


@pytest.mark.parametrize("name", sorted(CASES))
def test_fitted_prior_is_measurably_worse_than_a_hybrid(name):
    task = tasks.get(name, **CASES[name])
    cfg = TrainConfig(max_epochs=300, seed=0)
    prior = evaluate(task, task.prior_code, cfg)
    assert prior.ok, prior.message
    proposer, ctx = OfflineProposer(seed=0), context_for(task)
    hybrids = [task.hybrid_code] + [proposer.draft(ctx, s).code
                                    for s in proposer.strategies(ctx, 3, [])]
    results = [evaluate(task, code, cfg) for code in hybrids]
    best = min(r.val.rmse for r in results if r.ok)
    # at least 3% lower validation RMSE: more than seed-to-seed noise of these fits
    assert best < 0.97 * prior.val.rmse, (name, prior.val.rmse, [r.val.rmse for r in results])
