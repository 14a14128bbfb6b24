"""Held-out intervention scenarios (issue 20 item 3): the lung-cancer tasks carry cohorts under
treatments no split contains; every ok node is scored on them by the driver, from predictions
of a job that never held their targets; proposers never see them."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from nimm_jupyter import tasks
from nimm_jupyter.execution import EvalRequest, LocalExecutor, TrainConfig
from nimm_jupyter.modeling.result import EvalResult, SplitScores, Status
from nimm_jupyter.modeling.scoring import without_targets
from nimm_jupyter.tasks import pkpd_sim
from nimm_jupyter.tasks.base import Scenario, TaskDataError

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def chemo():
    return tasks.get("lung_cancer_chemo", n_patients=16)


def test_lung_scenarios_change_only_the_treatment(chemo):
    sc = chemo.scenarios
    assert set(sc) == {"no_treatment", "stop_after_day20", "weekly_fixed", "daily"}
    assert not sc["no_treatment"].split.inputs.any()
    stop = sc["stop_after_day20"].split.inputs
    assert stop[:, :20].any() and not stop[:, 20:].any()
    weekly = sc["weekly_fixed"].split.inputs[0, :, 0]
    assert list(np.flatnonzero(weekly)) == list(range(0, 60, 7))
    assert (sc["daily"].split.inputs == pkpd_sim.CHEMO_DOSE).all()
    # one cohort: the same patients (initial volumes) in every scenario, none from a split
    v0 = {k: s.split.targets[:, 0, 0] for k, s in sc.items()}
    assert all(np.array_equal(v0["no_treatment"], v) for v in v0.values())
    for split in ("train", "val", "test"):
        assert not np.isin(v0["daily"], chemo.split(split).targets[:, 0, 0]).any()
    # untreated tumours end far larger than treated ones: a real change of regime
    assert sc["no_treatment"].split.targets[:, -1, 0].mean() > 10 * chemo.test.targets[:, -1, 0].mean()
    radio = tasks.get("lung_cancer_chemo_radio", n_patients=8).scenarios
    assert "radio_only" in radio and not radio["radio_only"].split.inputs[..., 0].any()
    plain = tasks.get("lung_cancer", n_patients=8)
    assert list(plain.scenarios) == ["large_tumours"]
    assert plain.scenarios["large_tumours"].split.targets[:, 0, 0].min() >= pkpd_sim.V0_HIGH


def test_scenario_names_are_checked(chemo):
    bad = Scenario(split=chemo.test, description="x")
    with pytest.raises(TaskDataError, match="scenario name 'val'"):
        dataclasses.replace(chemo, scenarios={"val": bad})
    assert chemo.split("daily") is chemo.scenarios["daily"].split


def test_jobs_hold_no_scenario_targets(chemo):
    hidden = without_targets(chemo)
    for name, sc in hidden.scenarios.items():
        assert np.isnan(sc.split.targets[:, chemo.context:]).all()
        assert np.array_equal(sc.split.targets[:, :chemo.context],
                              chemo.scenarios[name].split.targets[:, :chemo.context])
        assert np.array_equal(sc.split.inputs, chemo.scenarios[name].split.inputs)


def test_every_ok_node_is_scored_on_each_scenario_and_proposers_never_see_it(chemo):
    with LocalExecutor(workers=1, device="cpu") as ex:
        ex.submit(EvalRequest("p", chemo.prior_code, chemo, TrainConfig(max_epochs=5), timeout=240))
        res = ex.wait("p")
    assert res.ok, res.message
    assert set(res.scenarios) == set(chemo.scenarios)
    assert all(math.isfinite(s.rmse) and s.rmse > 0 for s in res.scenarios.values())
    # the untreated cohort grows to thousands of cm^3: errors there are on that scale
    assert res.scenarios["no_treatment"].rmse != res.scenarios["daily"].rmse
    assert "scenarios" not in res.for_proposer()
    back = EvalResult.from_dict(res.to_dict())
    assert back.scenarios == res.scenarios
    old = EvalResult.from_dict({"status": "ok", "val": {"rmse": 1.0}})
    assert old.scenarios == {}


def test_claimed_scenario_scores_are_ignored(chemo):
    from nimm_jupyter.execution.job import driver_scores

    claimed = EvalResult(status=Status.OK, scenarios={"daily": SplitScores(0.0, 0.0)})
    preds = {s: np.zeros((len(chemo.split(s)), 59, 2)) for s in ("train", "val", "test")}
    scored = driver_scores(chemo, claimed, preds)
    assert scored.scenarios == {}  # no predictions for it: no score, and never the claim
    preds["daily"] = np.zeros((16, 59, 2))
    assert driver_scores(chemo, claimed, preds).scenarios["daily"].rmse > 0


# -- user tasks: task_from_dataframe(..., interventions=) ----------------------------------------
def _patients(dose_every: int, n: int = 8):
    import pandas as pd

    rows = []
    for g in range(n):
        for k in range(20):
            rows.append(dict(pid=f"p{g}", t=0.5 * k, conc=(g + 1) * np.exp(-0.1 * k),
                             dose=float(k % dose_every == 0)))
    return pd.DataFrame(rows)


def test_dataframe_interventions_become_scored_scenarios():
    from nimm_jupyter.tasks import task_from_dataframe

    df, doubled = _patients(4), _patients(2, n=3)
    task = task_from_dataframe(df, time="t", targets="conc", inputs=["dose"], group="pid",
                               context=4, interventions={"dose_twice_as_often": doubled})
    sc = task.scenarios["dose_twice_as_often"]
    assert sc.split.targets.shape == (3, 20, 1) and sc.split.inputs.shape == (3, 20, 1)
    assert sc.split.inputs[:, ::2, 0].all() and "3 series" in sc.description
    assert "dose_twice_as_often" not in task.description  # nothing of it reaches a proposer
    tab = task_from_dataframe(df, targets="conc", features=["t", "dose"],
                              interventions={"late": df[df.t > 5]})
    assert tab.scenarios["late"].split.inputs.shape == (int((df.t > 5).sum()), 2)
    with LocalExecutor(workers=1, device="cpu") as ex:
        ex.submit(EvalRequest("u", task.prior_code, task, TrainConfig(max_epochs=3), timeout=240))
        res = ex.wait("u")
    assert res.ok and math.isfinite(res.scenarios["dose_twice_as_often"].rmse)


def test_bad_intervention_frames_get_one_clear_error():
    from nimm_jupyter.tasks import task_from_dataframe

    df = _patients(4)
    kw = dict(time="t", targets="conc", inputs=["dose"], group="pid", context=4)
    with pytest.raises(TaskDataError, match=r"interventions\['x'\] lacks column\(s\) 'dose'"):
        task_from_dataframe(df, interventions={"x": df.drop(columns="dose")}, **kw)
    with pytest.raises(TaskDataError, match="needs the task's context \\+ horizon = 20"):
        task_from_dataframe(df, interventions={"x": df[df.t < 3]}, **kw)
    stretched = df.assign(t=df.t * 2)
    with pytest.raises(TaskDataError, match="time steps differ from the task's"):
        task_from_dataframe(df, interventions={"x": stretched}, **kw)
    with pytest.raises(TaskDataError, match="scenario name 'val'"):
        task_from_dataframe(df, interventions={"val": df}, **kw)
