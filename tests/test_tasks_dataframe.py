"""User DataFrames -> Task: layouts, generic priors and one clear error per bad input."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from nimm_jupyter.tasks import TaskDataError, task_from_dataframe
from nimm_jupyter.tasks.splits import chronological_windows


def load_model(code: str, spec):
    ns: dict = {}
    exec(compile(code, "<candidate>", "exec"), ns)
    return ns["Model"](spec)


@pytest.fixture
def patients() -> pd.DataFrame:
    rows = []
    for g in range(8):
        for k in range(20):
            rows.append(dict(pid=f"p{g}", t=0.5 * k, conc=(g + 1) * np.exp(-0.1 * k),
                             effect=np.sin(k / 3) + g, dose=float(k % 4 == 0)))
    return pd.DataFrame(rows)


@pytest.fixture
def series() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"day": pd.date_range("2021-01-01", periods=120, freq="D"),
                         "cases": rng.poisson(40, 120).astype(float),
                         "temp": rng.normal(20, 3, 120)})


@pytest.fixture
def table() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    x = rng.random((40, 3))
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2],
                         "y": x @ [1.0, 2.0, -1.0], "lab": np.repeat(list("ABCDEFGH"), 5)})


# -- layouts -------------------------------------------------------------------------------------
def test_grouped_trajectories(patients):
    task = task_from_dataframe(patients, time="t", targets=["conc", "effect"], inputs=["dose"],
                               group="pid", context=4, units={"conc": "mg/L", "t": "h"},
                               prior_text="one-compartment elimination", seed=1)
    assert task.kind.value == "trajectory" and task.source.value == "real"
    assert task.sizes() == {"train": 4, "val": 2, "test": 2}
    assert task.train.targets.shape == (4, 20, 2) and task.train.inputs.shape == (4, 20, 1)
    np.testing.assert_allclose(task.time, 0.5 * np.arange(20))
    assert task.context == 4 and task.targets[0].unit == "mg/L"
    groups = [set(task.split(s).groups) for s in ("train", "val", "test")]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert "one-compartment elimination" in task.description and "(h)" in task.description
    assert "generic baseline" in task.prior_omits
    # each trajectory is its group's rows in order
    g = task.train.groups[0]
    np.testing.assert_allclose(task.train.targets[0, :, 0],
                               patients.loc[patients.pid == g, "conc"].to_numpy())
    # the generic prior is the persistence forecast before training
    spec = task.spec()
    model = load_model(task.prior_code, spec)
    y = torch.as_tensor(task.train.targets, dtype=torch.float32)
    u = torch.as_tensor(task.train.inputs, dtype=torch.float32)
    out = model(y[:, :4], u, spec.time)
    assert out.shape == (4, 16, 2)
    torch.testing.assert_close(out, y[:, 3:4].expand_as(out))
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_seed_changes_the_group_split_reproducibly(patients):
    kw = dict(time="t", targets="conc", group="pid")
    a = task_from_dataframe(patients, seed=0, **kw)
    b = task_from_dataframe(patients, seed=0, **kw)
    c = task_from_dataframe(patients, seed=5, **kw)
    assert list(a.test.groups) == list(b.test.groups)
    assert [list(a.split(s).groups) for s in ("train", "val", "test")] != \
        [list(c.split(s).groups) for s in ("train", "val", "test")]


def test_long_series_is_cut_into_chronological_windows(series):
    task = task_from_dataframe(series, name="flu", time="day", targets="cases",
                               inputs=["temp"], window=14, horizon=7, source="simulated")
    assert task.name == "flu" and task.source.value == "simulated"
    assert task.context == 14 and task.time.tolist() == list(range(21))  # days
    sp = {s: task.split(s) for s in ("train", "val", "test")}
    assert sp["train"].groups.max() + 20 < sp["val"].groups.min() + 14
    assert sp["val"].groups.max() + 20 < sp["test"].groups.min() + 14
    np.testing.assert_array_equal(sp["train"].targets[0, :, 0], series.cases.to_numpy()[:21])
    spec = task.spec()
    model = load_model(task.prior_code, spec)
    y = torch.as_tensor(sp["val"].targets, dtype=torch.float32)
    u = torch.as_tensor(sp["val"].inputs, dtype=torch.float32)
    assert model(y[:, :14], u, spec.time).shape == (len(y), 7, 1)


def test_long_series_defaults_choose_a_window(series):
    task = task_from_dataframe(series, time="day", targets="cases")
    assert task.context >= 2 and task.time.size > task.context
    assert min(task.sizes().values()) >= 1


def test_grouped_windows(patients):
    task = task_from_dataframe(patients, time="t", targets="conc", group="pid", window=5,
                               horizon=3)
    assert task.context == 5 and task.train.targets.shape[1:] == (8, 1)
    assert sum(task.sizes().values()) == 8 * (20 - 8 + 1)
    assert not set(task.train.groups) & set(task.test.groups)


def test_tabular_random_and_grouped_split(table):
    task = task_from_dataframe(table, targets="y", features=["a", "b", "c"],
                               units={"y": "MPa"}, description="Yield strength.\nMore text.")
    assert task.kind.value == "tabular" and task.input_names == ["a", "b", "c"]
    assert task.sizes() == {"train": 24, "val": 8, "test": 8}
    assert task.summary()["description"] == "Yield strength."
    assert "linear regression" in task.prior_omits
    spec = task.spec()
    model = load_model(task.prior_code, spec)
    x = torch.as_tensor(task.train.inputs, dtype=torch.float32)
    out = model(x)
    assert out.shape == (24, 1)
    torch.testing.assert_close(out, spec.target_mean.expand(24, 1))
    # default features: every column but targets and group; grouped split keeps labs whole
    g = task_from_dataframe(table, targets="y", group="lab")
    assert g.input_names == ["a", "b", "c"]
    labs = [set(g.split(s).groups) for s in ("train", "val", "test")]
    assert not (labs[0] & labs[1] or labs[0] & labs[2] or labs[1] & labs[2])
    assert sum(len(x) for x in labs) == 8


def test_user_prior_code_is_kept(table):
    code = "import torch\nclass Model(torch.nn.Module):\n    pass\n"
    task = task_from_dataframe(table, targets="y", features=["a"], prior_code=code,
                               prior_omits="ignores b and c")
    assert task.prior_code == code and task.prior_omits == "ignores b and c"


# -- one clear error per bad input ------------------------------------------------------------
def test_missing_columns_are_named_with_the_available_ones(patients):
    with pytest.raises(TaskDataError) as e:
        task_from_dataframe(patients, time="time", targets=["conc", "kidney"], group="pid")
    msg = str(e.value)
    assert "'kidney'" in msg and "'time'" in msg and "available: pid, t, conc, effect, dose" in msg


def test_nan_and_inf_name_column_and_row(patients):
    df = patients.copy()
    df.loc[17, "effect"] = np.nan
    with pytest.raises(TaskDataError, match=r"column 'effect' has NaN at row 17"):
        task_from_dataframe(df, time="t", targets=["conc", "effect"], group="pid")
    df = patients.copy()
    df.loc[33, "dose"] = np.inf
    with pytest.raises(TaskDataError, match=r"column 'dose' has inf at row 33"):
        task_from_dataframe(df, time="t", targets="conc", inputs=["dose"], group="pid")
    df = patients.copy()
    df.loc[5, "t"] = np.nan
    with pytest.raises(TaskDataError, match=r"column 't' has NaN at row 5"):
        task_from_dataframe(df, time="t", targets="conc", group="pid")


def test_non_numeric_values_name_column_and_example(patients, table):
    df = patients.copy()
    df["conc"] = df["conc"].astype(object)
    df.loc[42, "conc"] = "n/a"
    with pytest.raises(TaskDataError, match=r"column 'conc' is not numeric: row 42 holds 'n/a'"):
        task_from_dataframe(df, time="t", targets="conc", group="pid")
    with pytest.raises(TaskDataError, match=r"column 'lab' is not numeric: row 0 holds 'A'"):
        task_from_dataframe(table, targets="y", features=["a", "lab"])
    # numbers stored as text are accepted
    df = patients.copy()
    df["conc"] = df["conc"].map(str)
    assert task_from_dataframe(df, time="t", targets="conc", group="pid").train.targets.dtype == np.float64


def test_non_monotone_time_names_group_and_row(patients):
    df = patients.copy()
    df.loc[[44, 45], "t"] = df.loc[[45, 44], "t"].to_numpy()  # group p2, rows 40..59
    with pytest.raises(TaskDataError, match=r"decreases in group 'p2' at row 45 .*sort"):
        task_from_dataframe(df, time="t", targets="conc", group="pid")


def test_duplicated_time_names_group_and_row(patients):
    df = patients.copy()
    df.loc[63, "t"] = df.loc[62, "t"]  # group p3
    with pytest.raises(TaskDataError, match=r"duplicated time 1 in group 'p3' at row 63"):
        task_from_dataframe(df, time="t", targets="conc", group="pid")


def test_datetime_duplicates_and_irregular_series(series):
    df = series.copy()
    df.loc[30, "day"] = df.loc[29, "day"]
    with pytest.raises(TaskDataError, match=r"duplicated time 29 at row 30"):
        task_from_dataframe(df, time="day", targets="cases")
    df = series.drop(index=50)
    with pytest.raises(TaskDataError, match=r"not equally spaced at row 51"):
        task_from_dataframe(df, time="day", targets="cases")


def test_too_few_rows_or_trajectories(patients, table, series):
    two = patients[patients.pid.isin(["p0", "p1"])]
    with pytest.raises(TaskDataError, match=r"too few trajectories .* \(2\) .*at least 3"):
        task_from_dataframe(two, time="t", targets="conc", group="pid")
    with pytest.raises(TaskDataError, match=r"too few rows \(2\)"):
        task_from_dataframe(table.head(2), targets="y", features=["a"])
    with pytest.raises(TaskDataError, match=r"too few time steps \(30\)"):
        task_from_dataframe(series.head(30), time="day", targets="cases", window=14, horizon=7)
    with pytest.raises(TaskDataError, match="no rows"):
        task_from_dataframe(table.head(0), targets="y", features=["a"])


def test_unequal_lengths_and_bad_context(patients):
    df = patients.drop(index=patients.index[patients.pid == "p4"][-3:])
    with pytest.raises(TaskDataError, match=r"group 'p4' has 17 rows but group 'p0' has 20"):
        task_from_dataframe(df, time="t", targets="conc", group="pid")
    with pytest.raises(TaskDataError, match=r"context=20 must be between 1 and"):
        task_from_dataframe(patients, time="t", targets="conc", group="pid", context=20)


def test_empty_targets_and_other_argument_errors(patients, table):
    with pytest.raises(TaskDataError, match="targets is empty"):
        task_from_dataframe(patients, time="t", targets=[], group="pid")
    with pytest.raises(TaskDataError, match="needs time="):
        task_from_dataframe(patients, kind="trajectory", targets="conc")
    with pytest.raises(TaskDataError, match="only for trajectory tasks"):
        task_from_dataframe(patients, kind="tabular", time="t", targets="conc")
    with pytest.raises(TaskDataError, match="both targets and inputs"):
        task_from_dataframe(table, targets="y", features=["a", "y"])
    with pytest.raises(TaskDataError, match="source must be"):
        task_from_dataframe(table, targets="y", source="invented")
    with pytest.raises(TaskDataError, match="split must be three positive"):
        task_from_dataframe(table, targets="y", split=(0.8, 0.2))
    with pytest.raises(TaskDataError, match="expected a pandas DataFrame, got list"):
        task_from_dataframe([1, 2, 3], targets="y")
    df = patients.copy()
    df.loc[7, "pid"] = None
    with pytest.raises(TaskDataError, match=r"group column 'pid' is missing at row 7"):
        task_from_dataframe(df, time="t", targets="conc", group="pid")
    assert issubclass(TaskDataError, ValueError)


def test_chronological_windows_never_share_forecast_steps():
    st = chronological_windows(100, window=10, horizon=5)
    last_train = st["train"].max() + 10 + 4
    assert last_train < st["val"].min() + 10
    assert st["val"].max() + 14 < st["test"].min() + 10
    assert st["test"].max() == 100 - 15


# -- forecast setup for one short series (issue 17) ---------------------------------------------
@pytest.fixture
def yearly() -> pd.DataFrame:
    years = np.arange(1900, 1921)
    return pd.DataFrame({"year": years, "hare": 30 + 10 * np.sin(years / 2.0),
                         "lynx": 20 + 5 * np.cos(years / 2.0)})


def test_short_series_holds_out_its_last_points_by_default(yearly):
    task = task_from_dataframe(yearly, time="year", targets=["hare", "lynx"])
    o = task.options
    assert (o["split_by"], o["test_last"], o["val_last"], o["horizon"]) == ("time", 4, 4, 4)
    assert o["layout"].startswith("test: last 4 of 21 year values (1917..1920), forecast 4 "
                                  "steps from year 1916")
    test = task.test.targets
    assert test.shape == (1, task.context + 4, 2)
    np.testing.assert_allclose(test[0, -4:, 0], yearly.hare.to_numpy()[-4:])
    # training forecasts stop before the validation window, which stops before the test window
    last_train = max(task.options["t_start"]["train"]) + task.time[-1]
    assert last_train < 1913 and min(task.options["t_start"]["test"]) + task.context == 1917


def test_test_last_val_last_context_horizon(yearly):
    task = task_from_dataframe(yearly, time="year", targets="hare", test_last=3, val_last=2,
                               context=2, horizon=1)
    assert task.context == 2 and task.time.tolist() == [0.0, 1.0, 2.0]
    assert task.sizes() == {"train": 14, "val": 2, "test": 3}
    forecast_years = [t + 2 for t in task.options["t_start"]["test"]]
    assert forecast_years == [1918.0, 1919.0, 1920.0]


def test_many_series_split_by_time_or_group(patients):
    by_time = task_from_dataframe(patients, time="t", targets="conc", group="pid",
                                  test_last=4, context=3)
    assert set(by_time.test.groups) == set(by_time.train.groups) == {f"p{g}" for g in range(8)}
    assert by_time.sizes()["test"] == 8 and by_time.options["split_by"] == "time"
    by_group = task_from_dataframe(patients, time="t", targets="conc", group="pid",
                                   test_size=2, val_size=0.25)
    assert by_group.sizes() == {"train": 4, "val": 2, "test": 2}
    assert "test: 2 of 8 series (--group pid) held out whole" in by_group.options["layout"]


def test_tabular_test_and_val_size(table):
    task = task_from_dataframe(table, targets="y", features=["a", "b", "c"], test_size=10,
                               val_size=0.25)
    assert task.sizes() == {"train": 20, "val": 10, "test": 10}
    assert task.options["layout"].startswith("test: 10 of 40 rows at random")


# -- malformed input: one line each, naming the fix in the user's own flags ----------------------
@pytest.mark.parametrize("kwargs, message", [
    (dict(targets=["hare", "hare"]), r"^targets names 'hare' twice; list each column once "
                                     r"\(--targets hare\)$"),
    (dict(targets="hare", group="year"), r"^every value of --group year occurs in one row only"),
    (dict(targets="hare", test_last=8), r"^the series has 21 time points: the test window "
                                        r"\(--test-last 8\) and validation \(--val-last 8\) "
                                        r"leave 5 for training, fewer than --context 1 \+ "
                                        r"--horizon 8; lower these"),
    (dict(targets="hare", test_last=2, horizon=3), r"--horizon 3 is longer than the held-out"),
    (dict(targets="hare", split_by="group"), r"--split-by group needs --group COL"),
    (dict(targets="hare", test_size=0.2), r"for time-ordered data use --test-last/--val-last"),
])
def test_malformed_forecast_setups_are_one_line(yearly, kwargs, message):
    with pytest.raises(TaskDataError, match=message) as info:
        task_from_dataframe(yearly, time="year", **kwargs)
    assert "\n" not in str(info.value)


def test_three_rows_are_too_short_and_say_which_flags(yearly):
    with pytest.raises(TaskDataError, match=r"^the series has 3 time points: .*--test-last 1.*"
                                            r"--val-last 1.*--context 1 \+ --horizon 1"):
        task_from_dataframe(yearly.head(3), time="year", targets="hare")


def test_forecast_flags_on_tabular_data_are_refused(table):
    with pytest.raises(TaskDataError, match=r"are for time series: give --time COL"):
        task_from_dataframe(table, targets="y", test_last=3)
