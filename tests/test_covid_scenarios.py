"""Held-out intervention scenarios of the synthetic COVID tasks (issue 20 item 3): the same
simulator re-run under npi_level schedules no split contains, cut into non-overlapping windows
that need no reveal, scored by the driver for every ok node and never shown to a proposer."""
from __future__ import annotations

import math
import os
import pickle

import numpy as np
import pytest

from nimm_jupyter import tasks
from nimm_jupyter.execution import EvalRequest, LocalExecutor, TrainConfig
from nimm_jupyter.modeling.scoring import windowed_splits, without_targets
from nimm_jupyter.tasks.metapop import covid, scenarios
from nimm_jupyter.tasks.metapop.covid import COVID_START, npi_schedule

pytestmark = pytest.mark.timeout(300)

NAMES = ("covid_bogota_synthetic", "covid_medellin_synthetic")
SCENARIOS = ["no_interventions", "lockdown_kept", "strict_variant_wave"]
T = 16  # the default window (12) + horizon (4) weeks


@pytest.fixture(scope="module")
def built():
    return {name: tasks.get(name) for name in NAMES}


def _window_starts(split):
    """Replicate -> window start weeks, read from the groups ``<name>-r<k>-w<start>``."""
    out: dict[str, list[int]] = {}
    for g in split.groups:
        rep, start = g.rsplit("-w", 1)
        out.setdefault(rep, []).append(int(start))
    return out


def _weekly_schedule(city: str, weeks: int = 104) -> np.ndarray:
    return npi_schedule(COVID_START + np.arange(7 * weeks), city)[0].reshape(weeks, 7).mean(axis=1)


@pytest.mark.parametrize("name", NAMES)
def test_scenario_names_shapes_and_windows(built, name):
    task = built[name]
    assert list(task.scenarios) == SCENARIOS
    n = scenarios.SCENARIO_REPLICATES
    P = len(task.targets)
    # 104 weeks hold 6 windows of 16; the variant wave starts in week 57-58: 3 windows from it
    expected = {"no_interventions": 6, "lockdown_kept": 6, "strict_variant_wave": 3}
    for sname, sc in task.scenarios.items():
        sp = sc.split
        assert sp.targets.shape == (n * expected[sname], T, P)
        assert sp.inputs.shape == (n * expected[sname], T, 1)
        assert sp.window_start is None  # no reveal needed, none done
        assert np.isfinite(sp.targets).all() and (sp.targets >= 0).all()
        assert f"{n} simulated epidemics" in sc.description
        assert sname not in task.description  # nothing of it reaches a proposer
    # windows needing no reveal: the windowed splits are the task's own, never a scenario
    assert set(windowed_splits(task)) <= {"val", "test"}


@pytest.mark.parametrize("name", NAMES)
def test_no_scenario_window_context_holds_another_windows_targets(built, name):
    task = built[name]
    for sname, sc in task.scenarios.items():
        for rep, starts in _window_starts(sc.split).items():
            starts = sorted(starts)
            # non-overlapping: a window's weeks [s, s + T) meet no other window of its epidemic
            assert all(b - a >= T for a, b in zip(starts, starts[1:])), (sname, rep, starts)
        hidden = without_targets(task).scenarios[sname].split
        assert np.isnan(hidden.targets[:, task.context:]).all()
        np.testing.assert_array_equal(hidden.targets[:, :task.context],
                                      sc.split.targets[:, :task.context])
        np.testing.assert_array_equal(hidden.inputs, sc.split.inputs)


@pytest.mark.parametrize("name", NAMES)
def test_splits_are_exactly_those_built_without_scenarios(built, name, monkeypatch):
    for opts in ({}, {"seed": 5, "n_replicates": 2}):
        with monkeypatch.context() as m:
            m.setattr(covid, "covid_scenarios", lambda *a, **k: {})
            plain = tasks.get(name, **opts)
        with_scenarios = tasks.get(name, **opts) if opts else built[name]
        assert plain.scenarios == {} and with_scenarios.scenarios
        for s in ("train", "val", "test"):
            a, b = plain.split(s), with_scenarios.split(s)
            for field in ("inputs", "targets", "groups", "window_start"):
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        assert plain.description == with_scenarios.description
        assert plain.options == with_scenarios.options
        for k in plain.constants:
            np.testing.assert_array_equal(plain.constants[k], with_scenarios.constants[k])


def test_scenario_inputs_differ_from_every_split_where_changed(built):
    task = built["covid_bogota_synthetic"]
    seen = np.concatenate([task.split(s).inputs[..., 0] for s in ("train", "val", "test")])
    schedule = _weekly_schedule("bogota")
    changed_windows = {"no_interventions": {0, 16, 32, 48, 64, 80}, "lockdown_kept": {0, 16},
                       "strict_variant_wave": {48, 64}}
    for sname, sc in task.scenarios.items():
        u = sc.split.inputs[..., 0]
        starts = [int(g.rsplit("-w", 1)[1]) for g in sc.split.groups]
        for row, s in zip(u, starts):
            own = schedule[s:s + T]
            if s in changed_windows[sname]:  # a schedule no split window has
                assert not (seen == row).all(axis=1).any(), (sname, s)
                assert not np.array_equal(row, own)
            else:  # the change's aftermath: the task's own schedule, a different epidemic state
                np.testing.assert_array_equal(row, own)
    sc = task.scenarios
    assert not sc["no_interventions"].split.inputs.any()
    kept = sc["lockdown_kept"].split.inputs[:, :, 0]
    # weeks 3..25 (2020-03-23 .. 2020-08-30) at level 1; the schedule had 0.7 and 0.9 there
    lockdown = np.concatenate([kept[0], kept[1]])[3:26]
    assert (lockdown == 1.0).all() and not (schedule[3:26] == 1.0).all()
    wave = sc["strict_variant_wave"].split.inputs[0, :, 0]  # window 48: weeks 58.. at level 1
    assert (wave[10:] == 1.0).all() and (schedule[58:64] == 0.6).all()


def test_the_change_of_regime_is_real(built):
    """Without interventions the first wave is far larger than under the kept lockdown."""
    sc = built["covid_medellin_synthetic"].scenarios
    first = lambda s: s.split.targets[[g.endswith("-w0") for g in s.split.groups]].sum()  # noqa: E731
    assert first(sc["no_interventions"]) > 10 * first(sc["lockdown_kept"])


def test_a_change_after_the_last_window_is_no_scenario():
    task = tasks.get("covid_bogota_synthetic", weeks=60)  # ends before the 2021 variant wave
    assert list(task.scenarios) == ["no_interventions", "lockdown_kept"]


def test_simulate_covid_checks_the_npi_override():
    with pytest.raises(ValueError, match="npi must be"):
        covid.simulate_covid(covid.MEDELLIN_COMUNAS, "medellin", 20, 2, 0, npi=np.zeros(140))


def test_prior_is_scored_on_every_scenario_by_the_driver_from_a_job_without_targets():
    task = tasks.get("covid_medellin_synthetic")
    with LocalExecutor(workers=1, device="cpu") as ex:
        ex.submit(EvalRequest("p", task.prior_code, task, TrainConfig(max_epochs=3), timeout=240))
        res = ex.wait("p")
        shipped = [pickle.load(open(os.path.join(ex._root, "tasks", f), "rb"))
                   for f in os.listdir(os.path.join(ex._root, "tasks"))]
    assert res.ok, res.message
    assert set(res.scenarios) == set(SCENARIOS)
    assert all(math.isfinite(s.rmse) and s.rmse > 0 for s in res.scenarios.values())
    assert len({s.rmse for s in res.scenarios.values()}) == 3
    assert "scenarios" not in res.for_proposer()
    assert len(shipped) == 1  # what the job got: no scenario target beyond the context
    for sname, sc in shipped[0].scenarios.items():
        assert np.isnan(sc.split.targets[:, task.context:]).all()
        assert np.isfinite(sc.split.targets[:, :task.context]).all()
