"""influenza_usa: data layout, state order, adjacency, calendar, splits, prior/hybrid."""
from __future__ import annotations

import datetime as dt
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

import nimm_jupyter.tasks as tasks
from nimm_jupyter.tasks.influenza import (
    HYBRID_CODE, PRIOR_CODE, STATE_CODES, load_ilinet2016, load_state360, make_influenza_usa,
    mmwr_week_start, season_features, state_names,
)


@pytest.fixture(scope="module")
def task():
    return tasks.get("influenza_usa")


def _model(code: str, spec):
    ns: dict = {}
    exec(compile(code, "<candidate>", "exec"), ns)
    return ns["Model"](spec)


def _neighbours(task, code: str) -> set[str]:
    names = task.target_names
    row = task.constants["adjacency"][names.index(code)]
    return {names[j] for j in np.flatnonzero(row) if names[j] != code}


def test_state_order_matches_the_reference_csvs(data_dir):
    ref49 = pd.read_csv(data_dir / "influenza_usa/state_order_49_no_florida.csv")
    ref50 = pd.read_csv(data_dir / "influenza_usa/state_order_50.csv")
    assert state_names("state360") == ref49["state"].tolist()
    assert [STATE_CODES[n] for n in state_names("state360")] == ref49["abbrev"].tolist()
    assert state_names("ilinet2016") == ref50["state"].tolist()
    assert len(STATE_CODES) == 50 and len(set(STATE_CODES.values())) == 50


def test_layout_of_the_default_task(task):
    assert task.kind.value == "trajectory" and task.source.value == "real"
    assert task.family == "epidemic"
    assert len(task.targets) == 49 and "FL" not in task.target_names
    assert task.target_names[:4] == ["AL", "AK", "AZ", "AR"]
    assert {v.unit for v in task.targets} == {"ILI visits/week"}
    assert task.input_names == ["season_sin", "season_cos"]
    assert task.context == 20
    np.testing.assert_array_equal(task.time, np.arange(24))
    for s in (task.train, task.val, task.test):
        assert s.targets.shape[1:] == (24, 49) and s.inputs.shape[1:] == (24, 2)
        assert s.groups.shape == (len(s),)
    assert task.sizes() == {"train": 193, "val": 69, "test": 69}
    assert task.description.splitlines()[0].startswith("Forecast weekly influenza-like-illness")
    assert "Cola-GNN" in task.provenance and "seasonal forcing" in task.prior_omits
    pickle.loads(pickle.dumps(task))  # shipped to worker processes


def test_windows_are_consecutive_weeks_of_the_raw_series(task):
    counts, _, _ = load_state360()
    for s in (task.train, task.val, task.test):
        for i in (0, len(s) - 1):
            start = int(s.groups[i])
            np.testing.assert_array_equal(s.targets[i], counts[start:start + 24])


def test_adjacency_is_symmetric_with_real_borders(task):
    adj = task.constants["adjacency"]
    assert adj.shape == (49, 49)
    np.testing.assert_array_equal(adj, adj.T)
    np.testing.assert_array_equal(np.diag(adj), np.ones(49))
    assert set(np.unique(adj)) == {0.0, 1.0}
    assert _neighbours(task, "TX") == {"NM", "OK", "AR", "LA"}
    assert _neighbours(task, "WA") == {"OR", "ID"}
    assert _neighbours(task, "ME") == {"NH"}
    assert _neighbours(task, "GA") == {"AL", "TN", "NC", "SC"}  # Florida removed
    assert _neighbours(task, "AK") == set() and _neighbours(task, "HI") == set()
    assert "CO" not in _neighbours(task, "AZ")  # Four Corners point contact


def test_50_state_adjacency_reduces_to_the_49_state_one():
    _, adj49, _ = load_state360()
    _, adj50, _ = load_ilinet2016()
    fl = state_names("ilinet2016").index("Florida")
    np.testing.assert_array_equal(np.delete(np.delete(adj50, fl, 0), fl, 1), adj49)
    names = state_names("ilinet2016")
    fl_nb = {STATE_CODES[names[j]] for j in np.flatnonzero(adj50[fl]) if j != fl}
    assert fl_nb == {"AL", "GA"}


def test_splits_are_chronological_on_forecast_weeks(task):
    first = {k: task.split(k).groups.min() + 20 for k in ("train", "val", "test")}
    last = {k: task.split(k).groups.max() + 23 for k in ("train", "val", "test")}
    assert last["train"] < first["val"] <= last["val"] < first["test"] <= last["test"] <= 359
    assert last["train"] < 216 <= first["val"] and last["val"] < 288 <= first["test"]
    for k in ("train", "val", "test"):
        assert np.all(np.diff(task.split(k).groups) == 1)  # stride 1, in time order
    g = [set(task.split(k).groups.tolist()) for k in ("train", "val", "test")]
    assert not (g[0] & g[1] or g[0] & g[2] or g[1] & g[2])


def test_mmwr_calendar():
    assert mmwr_week_start(2010, 40) == dt.date(2010, 10, 3)
    assert mmwr_week_start(2016, 40) == dt.date(2016, 10, 2)
    assert mmwr_week_start(2024, 1) == dt.date(2023, 12, 31)
    assert (mmwr_week_start(2015, 1) - mmwr_week_start(2014, 1)).days == 53 * 7  # 53-week year
    sc = season_features([dt.date(2020, 12, 29), dt.date(2021, 6, 29)])
    assert sc[0, 1] > 0.99 and sc[1, 1] < -0.99  # cos: +1 at new year, -1 mid-year


def test_state360_start_week_is_pinned_by_the_raw_ilinet_overlap():
    counts, _, dates = load_state360()
    assert dates[0] == dt.date(2010, 10, 3) and dates[313] == dt.date(2016, 10, 2)
    raw = pd.read_csv(tasks.data.fetch("influenza_usa/ilinet_states_2016w40_2024w44.csv"), skiprows=1)
    raw = raw[raw["REGION"].isin(state_names("state360"))]  # New York state only, like state360
    raw["ILITOTAL"] = raw["ILITOTAL"].astype(float)
    wide = raw.pivot(index=["YEAR", "WEEK"], columns="REGION", values="ILITOTAL")[state_names("state360")]
    np.testing.assert_array_equal(counts[313:], wide.to_numpy()[:47])


def test_ilinet2016_matches_the_derived_wide_table(data_dir):
    counts, adj, dates = load_ilinet2016()
    ref = pd.read_csv(data_dir / "influenza_usa/ilinet_states50_ILITOTAL_wide.csv")
    assert counts.shape == (422, 50) and adj.shape == (50, 50)
    np.testing.assert_array_equal(counts, ref[state_names("ilinet2016")].to_numpy(float))
    assert dates[0] == mmwr_week_start(2016, 40) and dates[-1] == mmwr_week_start(2024, 44)
    t = make_influenza_usa(dataset="ilinet2016", window=8, horizon=2, stride=4)
    assert len(t.targets) == 50 and "FL" in t.target_names and t.context == 8
    assert t.train.targets.shape[1:] == (10, 50)
    assert np.all(np.diff(t.train.groups) == 4)


def test_state_subset_and_option_errors():
    t = make_influenza_usa(states=["TX", "ok", "NM", "CA"], window=6, horizon=3)
    assert t.target_names == ["CA", "NM", "OK", "TX"]  # alphabetical by state name
    np.testing.assert_array_equal(t.constants["adjacency"], [[1, 0, 0, 0], [0, 1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1]])
    assert t.train.targets.shape[1:] == (9, 4)
    with pytest.raises(ValueError, match=r"\['FL'\]"):
        make_influenza_usa(states=["TX", "FL"])
    with pytest.raises(ValueError, match="unknown influenza dataset 'cdc'"):
        make_influenza_usa(dataset="cdc")
    with pytest.raises(ValueError, match="horizon must be a positive integer"):
        make_influenza_usa(horizon=0)
    with pytest.raises(ValueError, match="no .*windows"):
        make_influenza_usa(window=20, horizon=80)


def test_prior_and_hybrid_run_and_start_equal(task):
    torch.manual_seed(0)
    spec = task.spec()
    y = torch.as_tensor(task.val.targets[:5], dtype=torch.float32)
    u = torch.as_tensor(task.val.inputs[:5], dtype=torch.float32)
    prior, hybrid = _model(PRIOR_CODE, spec), _model(HYBRID_CODE, spec)
    assert task.prior_code == PRIOR_CODE and task.hybrid_code == HYBRID_CODE
    out_p = prior(y[:, :20], u, spec.time)
    out_h = hybrid(y[:, :20], u, spec.time)
    assert out_p.shape == out_h.shape == (5, 4, 49)
    assert torch.isfinite(out_p).all() and (out_p >= 0).all()
    torch.testing.assert_close(out_p, out_h)  # zero-initialised last layer
    out_h.sum().backward()
    assert hybrid.net[0].weight.grad is not None


def test_prior_fit_beats_its_start_and_stays_finite():
    t = make_influenza_usa(states=["TX", "OK", "NM", "LA", "AR", "AK"], window=10, horizon=3, stride=2)
    spec = t.spec()
    torch.manual_seed(0)
    model = _model(t.prior_code, spec)
    y = torch.as_tensor(t.train.targets, dtype=torch.float32)
    u = torch.as_tensor(t.train.inputs, dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)

    def loss():
        return (((model(y[:, :10], u, spec.time) - y[:, 10:]) / spec.target_scale) ** 2).mean()

    with torch.no_grad():
        start = float(loss())
    for _ in range(80):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    with torch.no_grad():
        end = float(loss())
    assert np.isfinite(end) and end < 0.9 * start
