"""Synthetic metapopulation tasks (COVID Bogotá/Medellín, MRSA Virginia) and the Bogotá loader."""
from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nimm_jupyter import tasks
from nimm_jupyter.tasks import metapop
from nimm_jupyter.tasks.bogota import (LOCALIDADES, BogotaDataError, load_bogota_cases,
                                       make_covid_bogota)
from nimm_jupyter.tasks import TaskDataError

FIXTURES = Path(__file__).parent / "fixtures"
CURRENT = FIXTURES / "osb_enftransm-covid-19_fixture.csv"
EARLY = FIXTURES / "osb_enftransm-covid-19_early2020_fixture.csv"
SYNTHETIC = {
    "covid_bogota_synthetic": (19, ["npi_level"]),
    "covid_medellin_synthetic": (16, ["npi_level"]),
    "mrsa_virginia_synthetic": (20, ["season_sin", "season_cos"]),
}


@pytest.fixture(scope="module")
def built():
    return {name: tasks.get(name) for name in SYNTHETIC}


def load_model(code: str, spec):
    ns: dict = {}
    exec(compile(code, "<candidate>", "exec"), ns)
    return ns["Model"](spec)


def batch(task, split="train", n=6):
    sp = task.split(split)
    y = torch.as_tensor(sp.targets[:n], dtype=torch.float32)
    u = torch.as_tensor(sp.inputs[:n], dtype=torch.float32)
    return y, u


# -- layout and labels ---------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SYNTHETIC))
def test_layout_and_labels(built, name):
    task = built[name]
    P, inputs = SYNTHETIC[name]
    assert task.name == name
    assert task.kind.value == "trajectory" and task.source.value == "synthetic"
    assert task.description.startswith("SYNTHETIC stand-in:")
    assert "SYNTHETIC" in task.provenance and "placeholder" in task.description
    assert task.family == "epidemic"
    assert len(task.targets) == P and all(" " not in v.name for v in task.targets)
    assert {v.unit for v in task.targets} == {"cases/week"}
    assert len(set(task.target_names)) == P
    assert task.input_names == inputs
    T = task.options["window"] + task.options["horizon"]
    assert task.context == 12 and T == 16
    np.testing.assert_array_equal(task.time, np.arange(T))
    for split in ("train", "val", "test"):
        sp = task.split(split)
        assert sp.targets.shape[1:] == (T, P) and sp.inputs.shape[1:] == (T, len(inputs))
        assert len(sp) > 0 and sp.groups.shape == (len(sp),)
    M, N = task.constants["mobility"], task.constants["population"]
    assert M.shape == (P, P) and N.shape == (P,) and M.dtype == np.float64
    assert (M >= 0).all()
    np.testing.assert_allclose(M.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.diag(M), 0.8 if "covid" in name else 0.85)
    assert (N > 1000).all()


@pytest.mark.parametrize("name", list(SYNTHETIC))
def test_counts_are_nonnegative_integers_with_signal(built, name):
    task = built[name]
    y = np.concatenate([task.split(s).targets for s in ("train", "val", "test")])
    assert (y >= 0).all() and np.array_equal(y, np.round(y))
    assert y.max() >= 20  # not an empty epidemic
    assert y.reshape(-1, y.shape[-1]).std(axis=0).min() > 0  # every patch varies


@pytest.mark.parametrize("name", list(SYNTHETIC))
def test_chronological_split_on_forecast_weeks(built, name):
    task = built[name]
    C, H = task.context, task.time.size - task.context
    spans = {}
    for split in ("train", "val", "test"):
        g = task.split(split).groups
        spans[split] = (g.min() + C, g.max() + C + H - 1)  # first/last forecast week
    assert spans["train"][1] < spans["val"][0] and spans["val"][1] < spans["test"][0]
    sizes = task.sizes()
    total = sum(sizes.values())
    assert 0.5 < sizes["train"] / total < 0.7
    # consecutive windows overlap: the same weeks appear in adjacent samples
    tr = task.train
    np.testing.assert_array_equal(tr.targets[0, 1:], tr.targets[1, :-1])


def test_determinism_and_replicates():
    a = metapop.make_covid_bogota_synthetic(weeks=60, seed=3)
    b = metapop.make_covid_bogota_synthetic(weeks=60, seed=3)
    c = metapop.make_covid_bogota_synthetic(weeks=60, seed=4)
    np.testing.assert_array_equal(a.train.targets, b.train.targets)
    np.testing.assert_array_equal(a.test.targets, b.test.targets)
    assert not np.array_equal(a.train.targets, c.train.targets)
    r = metapop.make_covid_bogota_synthetic(weeks=60, seed=3, n_replicates=3)
    assert r.sizes() == {k: 3 * v for k, v in a.sizes().items()}
    # replicates are different epidemics on the same calendar
    n = len(a.train)
    assert not np.array_equal(r.train.targets[:n], r.train.targets[n:2 * n])
    np.testing.assert_array_equal(r.train.inputs[:n], r.train.inputs[n:2 * n])
    m1 = metapop.make_mrsa_virginia_synthetic(weeks=60, seed=1)
    m2 = metapop.make_mrsa_virginia_synthetic(weeks=60, seed=1)
    np.testing.assert_array_equal(m1.val.targets, m2.val.targets)
    with pytest.raises(ValueError, match="n_replicates"):
        metapop.make_mrsa_virginia_synthetic(n_replicates=0)


def test_too_short_series_is_one_clear_error():
    with pytest.raises(TaskDataError, match="too few time steps"):
        metapop.make_covid_medellin_synthetic(weeks=20)


def test_simulation_is_fast():
    for make in (metapop.make_covid_bogota_synthetic, metapop.make_mrsa_virginia_synthetic):
        t0 = time.process_time()  # CPU time: the test machine's wall clock is shared
        make()
        assert time.process_time() - t0 < 0.5, make.__name__


def test_covid_npi_follows_lockdown_schedule(built):
    task = built["covid_bogota_synthetic"]
    series = np.concatenate([task.train.inputs[0, :, 0], task.train.inputs[1:, -1, 0]])
    # week 0 starts 2020-03-02 (open); weeks 4-9 are the strict April 2020 lockdown
    assert series[0] == 0.0 and (series[4:9] == 1.0).all()
    assert ((series >= 0) & (series <= 1)).all() and len(np.unique(series)) > 3


def test_mrsa_seasonal_inputs_and_downward_trend():
    task = metapop.make_mrsa_virginia_synthetic(n_replicates=2, seed=0)
    u = task.train.inputs
    np.testing.assert_allclose(u[..., 0] ** 2 + u[..., 1] ** 2, 1.0, atol=1e-9)
    sim = metapop.simulate_mrsa(metapop.VIRGINIA_REGIONS, 156, 2, seed=0)
    statewide = sim["incidence"].sum(axis=2).mean(axis=0)
    assert statewide[-52:].mean() < statewide[:52].mean()  # infection control works


def test_gravity_mobility_rejects_bad_stay_home():
    with pytest.raises(ValueError, match="stay_home"):
        metapop.gravity_mobility(np.ones(3), np.ones((3, 3)), stay_home=1.5)


# -- prior and hybrid candidates ------------------------------------------------------------
@pytest.mark.parametrize("name", list(SYNTHETIC))
def test_prior_and_hybrid_forward(built, name):
    task = built[name]
    spec = task.spec()
    y, u = batch(task)
    C, T = spec.context, y.shape[1]
    torch.manual_seed(0)
    prior = load_model(task.prior_code, spec)
    hybrid = load_model(task.hybrid_code, spec)
    out_p = prior(y[:, :C], u, spec.time)
    out_h = hybrid(y[:, :C], u, spec.time)
    assert out_p.shape == (y.shape[0], T - C, len(task.targets)) == out_h.shape
    assert torch.isfinite(out_p).all() and (out_p >= 0).all()
    # zero-initialised last layer: the hybrid starts exactly as its prior
    torch.testing.assert_close(out_h, out_p, rtol=1e-5, atol=1e-4)
    assert "mlp" in task.hybrid_code and "mlp" not in task.prior_code
    assert task.prior_omits
    # both train: gradients reach the mechanistic parameters and the network
    loss = ((out_h - y[:, C:]) / spec.target_scale).pow(2).mean()
    loss.backward()
    grads = {n: p.grad for n, p in hybrid.named_parameters()}
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("net"))
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if not n.startswith("net"))
    # the prior is a reasonable forecaster already (not wildly off the data's scale)
    rmse = (out_p - y[:, C:]).pow(2).mean().sqrt()
    assert rmse < 5 * y[:, C:].std() + 5


@pytest.mark.parametrize("name", ["covid_bogota_synthetic", "mrsa_virginia_synthetic"])
def test_candidates_stay_finite_on_extreme_inputs(built, name):
    task = built[name]
    spec = task.spec()
    y, u = batch(task, n=3)
    C = spec.context
    for code in (task.prior_code, task.hybrid_code):
        model = load_model(code, spec)
        with torch.no_grad():
            for p in model.parameters():  # a badly trained network must not blow up
                p.add_(torch.randn_like(p) * 3.0)
            for ctx in (torch.zeros_like(y[:, :C]), y[:, :C] * 1e4):
                out = model(ctx, u, spec.time)
                assert torch.isfinite(out).all()


def test_hybrid_responds_to_the_intervention_input(built):
    task = built["covid_bogota_synthetic"]
    spec = task.spec()
    y, u = batch(task, n=2)
    model = load_model(task.hybrid_code, spec)
    with torch.no_grad():
        for p in model.net.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
        a = model(y[:, :12], torch.zeros_like(u), spec.time)
        b = model(y[:, :12], torch.ones_like(u), spec.time)
    assert not torch.allclose(a, b)


# -- Bogotá line-list loader ----------------------------------------------------------------
def test_loader_weekly_counts_match_the_fixture_formula():
    dates, names, counts = load_bogota_cases(CURRENT)
    assert names == LOCALIDADES and len(names) == 20
    assert dates.dtype == np.dtype("datetime64[D]")
    assert list(dates.astype(str)) == ["2020-03-02", "2020-03-09", "2020-03-16", "2020-03-23",
                                       "2020-03-30", "2020-04-06", "2020-04-13", "2020-04-20"]
    w, i = np.meshgrid(np.arange(8), np.arange(20), indexing="ij")
    np.testing.assert_array_equal(counts, (i + 2 * w) % 5)
    # by hand: Engativá (code 10) had 4, 1, 3, 0 cases in the first four weeks, including
    # rows spelt "EngativÃ¡", "Engativ?" and "ENGATIVA"; Antonio Nariño (15): 4, 1, 3, 0
    assert counts[:4, 9].tolist() == [4, 1, 3, 0]
    assert counts[:4, 14].tolist() == [4, 1, 3, 0]
    assert counts[0, 0] == 0 and counts[1, 0] == 2  # Usaquén, with "UsaquÃ©n" spellings
    # dropped rows: Fuera de Bogotá, Sin dato, no diagnosis date, residence in Soacha
    assert counts.sum() == 320


def test_loader_daily_and_onset_dates():
    days, _, daily = load_bogota_cases(CURRENT, freq="D")
    assert days[0] == np.datetime64("2020-03-02") and np.all(np.diff(days) == np.timedelta64(1, "D"))
    # Engativá, week 0: cases j=0..3 on day offsets (3j + 9) % 7 = 2, 5, 1, 4
    assert daily[:7, 9].tolist() == [0, 1, 1, 0, 1, 1, 0]
    _, _, weekly = load_bogota_cases(CURRENT, freq="W")
    np.testing.assert_array_equal(daily.reshape(-1, 7, 20).sum(axis=1)[: len(weekly)],
                                  weekly)
    on_days, _, onset = load_bogota_cases(CURRENT, freq="D", date_field="onset")
    # symptom onset is exactly 5 days before diagnosis in the fixture, plus one Kennedy
    # case with onset 2020-03-13 that has no diagnosis date (counted by onset only)
    assert on_days[0] == days[0] - np.timedelta64(5, "D")
    expected = daily.copy()
    expected[int((np.datetime64("2020-03-13") - on_days[0]).astype(int)), 7] += 1
    np.testing.assert_array_equal(onset, expected)


def test_loader_early_2020_spanish_headers_and_file_objects():
    dates, _, counts = load_bogota_cases(EARLY)
    w, i = np.meshgrid(np.arange(4), np.arange(20), indexing="ij")
    np.testing.assert_array_equal(counts, (2 * i + w) % 4)
    with open(EARLY, "rb") as fh:
        _, _, again = load_bogota_cases(fh)
    np.testing.assert_array_equal(again, counts)
    text = EARLY.read_bytes().decode("latin-1")
    _, _, from_text = load_bogota_cases(io.StringIO(text))
    np.testing.assert_array_equal(from_text, counts)
    # a UTF-8 re-save of the same file reads the same
    _, _, utf8 = load_bogota_cases(io.BytesIO(text.encode("utf-8")))
    np.testing.assert_array_equal(utf8, counts)
    with pytest.raises(ValueError, match="date_field"):
        load_bogota_cases(EARLY, date_field="report")


def test_loader_errors_name_the_problem():
    head = "FECHA_DIAGNOSTICO;CIUDAD;LOCALIDAD_ASIS\n"
    with pytest.raises(BogotaDataError, match="localidad column"):
        load_bogota_cases(io.StringIO("FECHA_DIAGNOSTICO;CIUDAD\n01/03/2020;Bogotá\n"))
    with pytest.raises(BogotaDataError, match=r"'Gotham' \(line 3\)"):
        load_bogota_cases(io.StringIO(head + "01/03/2020;Bogotá;Suba\n02/03/2020;Bogotá;Gotham\n"))
    with pytest.raises(BogotaDataError, match=r"line 2: cannot read date '2020/13/45'"):
        load_bogota_cases(io.StringIO(head + "2020/13/45;Bogotá;Suba\n"))
    with pytest.raises(BogotaDataError, match="no usable rows"):
        load_bogota_cases(io.StringIO(head + "01/03/2020;Bogotá;Sin dato\n"))
    with pytest.raises(FileNotFoundError, match="not_there.csv"):
        load_bogota_cases("not_there.csv")


def test_make_covid_bogota_real_task_matches_synthetic_layout(built):
    task = make_covid_bogota(CURRENT, window=2, horizon=1)
    synth = built["covid_bogota_synthetic"]
    assert task.source.value == "real" and "SYNTHETIC" not in task.description
    assert task.target_names == synth.target_names  # Sumapaz excluded, same order
    assert task.input_names == ["npi_level"]
    assert set(task.constants) == {"mobility", "population"}
    assert task.prior_code == synth.prior_code and task.hybrid_code == synth.hybrid_code
    assert task.sizes() == {"train": 4, "val": 1, "test": 1}
    # the first train window is weeks 0..2; Engativá counts 4, 1, 3
    eng = task.target_names.index("Engativa")
    assert task.train.targets[0, :, eng].tolist() == [4, 1, 3]
    # weeks from 2020-03-30 fall in the strict April lockdown of the default npi schedule
    assert task.test.inputs[0, -1, 0] == 1.0
    spec = task.spec()
    model = load_model(task.prior_code, spec)
    y, u = batch(task)
    assert model(y[:, :2], u, spec.time).shape == (len(y), 1, 19)
    with pytest.raises(ValueError, match="one value per week"):
        make_covid_bogota(CURRENT, window=2, horizon=1, npi_level=[0.0, 1.0])
