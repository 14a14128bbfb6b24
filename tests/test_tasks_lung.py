"""Lung-cancer tasks: the Geng et al. PKPD simulator, its three task variants and candidates."""
from __future__ import annotations

import ast
import time
import types

import numpy as np
import pytest
import torch

import nimm_jupyter.tasks as tasks
from nimm_jupyter.tasks import lung_cancer, pkpd_sim
from nimm_jupyter.tasks.base import Task

NAMES = ["lung_cancer", "lung_cancer_chemo", "lung_cancer_chemo_radio"]
VARIANT = dict(zip(NAMES, ["plain", "chemo", "chemo_radio"]))


@pytest.fixture(scope="module")
def full_size() -> dict[str, Task]:
    """The three tasks at the published size (N = 1000 per split); also times the build.

    Built with the 15-day-mean policy, the rule PROVENANCE's expected ranges describe."""
    start = time.perf_counter()
    built = {n: tasks.get(n, policy="window15") for n in NAMES}
    built["_seconds"] = time.perf_counter() - start  # type: ignore[assignment]
    return built


# -- shapes, names, determinism ----------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_shapes_names_and_metadata(name):
    task = tasks.get(name, n_patients=20, seed=3)
    n_in = {"lung_cancer": 0, "lung_cancer_chemo": 1, "lung_cancer_chemo_radio": 2}[name]
    n_out = 1 if name == "lung_cancer" else 2
    assert task.name == name and task.kind.value == "trajectory"
    assert task.source.value == "simulated"
    assert task.family == "tumour" and task.context == 1
    np.testing.assert_array_equal(task.time, np.arange(60))
    assert task.target_names == (["V"] if n_out == 1 else ["V", "C"])
    assert task.targets[0].unit == "cm^3"
    assert task.input_names == ["chemo_dose", "radio_dose"][:n_in]
    if n_in == 2:
        assert task.inputs[1].unit == "Gy"
    for split in ("train", "val", "test"):
        s = task.split(split)
        assert s.targets.shape == (20, 60, n_out) and s.targets.dtype == np.float64
        assert s.inputs.shape == (20, 60, n_in) and s.inputs.dtype == np.float64
        assert len(set(s.groups)) == 20 and all(g.startswith(f"{split}-") for g in s.groups)
        assert np.isfinite(s.targets).all() and (s.targets[..., 0] > 0).all()
    assert task.options == {"variant": VARIANT[name], "n_patients": 20, "seed": 3,
                            "heterogeneity": False, "noise": 0.0, "process_noise": 0.0,
                            "horizon": 60, "policy": "hdtwingen"}
    assert all(k in task.provenance for k in ("Geng", "13542", "HDTwinGen"))
    assert "reimplementation" in task.provenance.lower()
    # What the prior misses is said in words: no simulator constant, no named growth law.
    assert "slows as they get larger" in task.prior_omits
    assert "14137" not in task.prior_omits and "Gompertz" not in task.prior_omits
    assert "HDTwinGen" in task.provenance and "current diameter" in task.provenance
    summary = task.summary()["description"]
    assert summary and "\n" not in summary and len(summary) < 160
    assert "cm^3" in task.description and "prior" in task.description.lower()
    spec = task.spec()
    assert spec.context == 1 and spec.horizon == 59 and spec.n_inputs == n_in


def test_splits_are_independent_and_seeded():
    a = tasks.get("lung_cancer_chemo", n_patients=50, seed=0)
    b = tasks.get("lung_cancer_chemo", n_patients=50, seed=0)
    c = tasks.get("lung_cancer_chemo", n_patients=50, seed=1)
    v0 = {s: set(a.split(s).targets[:, 0, 0]) for s in ("train", "val", "test")}
    assert not (v0["train"] & v0["val"]) and not (v0["train"] & v0["test"])
    assert not (v0["val"] & v0["test"])
    for s in ("train", "val", "test"):
        np.testing.assert_array_equal(a.split(s).targets, b.split(s).targets)
        np.testing.assert_array_equal(a.split(s).inputs, b.split(s).inputs)
        assert not np.allclose(a.split(s).targets, c.split(s).targets)


def test_bad_options_give_one_clear_error():
    with pytest.raises(ValueError, match="n_patients"):
        tasks.get("lung_cancer", n_patients=0)
    with pytest.raises(ValueError, match="noise"):
        tasks.get("lung_cancer", n_patients=5, noise=-0.1)
    with pytest.raises(ValueError, match="horizon"):
        tasks.get("lung_cancer", n_patients=5, horizon=1)
    with pytest.raises(ValueError, match="variant"):
        pkpd_sim.simulate(5, variant="immuno")


def test_policy_option_selects_the_treatment_rule():
    default = tasks.get("lung_cancer_chemo", n_patients=40, seed=6)
    hdt = tasks.get("lung_cancer_chemo", n_patients=40, seed=6, policy="hdtwingen")
    w15 = tasks.get("lung_cancer_chemo", n_patients=40, seed=6, policy="window15")
    assert default.options["policy"] == "hdtwingen" and w15.options["policy"] == "window15"
    np.testing.assert_array_equal(default.train.inputs, hdt.train.inputs)
    # Same initial volumes and random draws; only the diameter the policy reads differs.
    np.testing.assert_array_equal(hdt.train.targets[:, 0], w15.train.targets[:, 0])
    assert not np.array_equal(hdt.train.inputs, w15.train.inputs)
    assert "current diameter" in hdt.description and "15 days" in w15.description
    assert "window15" in w15.provenance and "Geng" in w15.provenance
    with pytest.raises(ValueError, match="policy must be one of hdtwingen, window15"):
        tasks.get("lung_cancer_chemo", n_patients=5, policy="window30")
    with pytest.raises(ValueError, match="policy"):
        tasks.get("lung_cancer", n_patients=5, policy=["hdtwingen"])
    with pytest.raises(ValueError, match="unknown policy"):
        pkpd_sim.simulate(5, policy="mean")


def test_policies_decide_on_current_vs_15_day_mean_diameter():
    # Recompute each day's treatment probability independently from the simulated volumes and
    # the same uniform draws; a dose is given exactly when the draw falls below it.
    n, T, seed = 200, 30, 11
    for policy, window in (("hdtwingen", 1), ("window15", 15)):
        sim = pkpd_sim.simulate(n, T, variant="chemo", seed=seed, policy=policy)
        policy_stream = np.random.SeedSequence(seed).spawn(5)[2]  # simulate's third stream
        u_draw = np.random.default_rng(policy_stream).uniform(size=(n, T))
        d = 2.0 * np.cbrt(3.0 * sim.V / (4.0 * np.pi))
        d_bar = np.stack([d[:, max(0, t - window + 1): t + 1].mean(axis=1) for t in range(T)], 1)
        prob = 1.0 / (1.0 + np.exp(-(2.0 / 13.0) * (d_bar - 6.5)))
        np.testing.assert_array_equal(sim.chemo > 0, u_draw < prob)


def test_hdtwingen_policy_matches_hdtwingen_own_figures():
    # PROVENANCE: HDTwinGen's own code, 30 splits of 1000 patients: chemo mean V_59 24.9 +- 0.4
    # with 45.6% of days dosed; chemo+radio mean V_59 7.93 +- 0.13.
    chemo = tasks.get("lung_cancer_chemo").test
    assert 23.7 < chemo.targets[:, -1, 0].mean() < 26.1
    assert 0.44 < (chemo.inputs[..., 0] > 0).mean() < 0.47
    full = tasks.get("lung_cancer_chemo_radio").test
    assert 7.5 < full.targets[:, -1, 0].mean() < 8.4


def test_horizon_option():
    task = tasks.get("lung_cancer_chemo_radio", n_patients=5, horizon=30)
    assert task.train.targets.shape == (5, 30, 2) and task.spec().horizon == 29


# -- the dynamics ------------------------------------------------------------------------------

def test_untreated_is_discrete_gompertz_and_near_closed_form():
    task = tasks.get("lung_cancer", n_patients=300, seed=5)
    V = task.test.targets[..., 0]
    rho, K = 7e-5 + 2 * 7.23e-3, 4.0 / 3.0 * np.pi * 15.0 ** 3
    # Independent discrete recursion V_{t+1} = V_t (1 + rho ln(K/V_t)) from the same V_0.
    ref = [V[:, 0]]
    for _ in range(59):
        ref.append(ref[-1] * (1.0 + rho * np.log(K / ref[-1])))
    np.testing.assert_allclose(V, np.stack(ref, axis=1), rtol=1e-12)
    # Continuous Gompertz: V(t) = K exp(ln(V0/K) e^{-rho t}). Euler with dt = 1 day grows a bit
    # slower (log(1 + a) < a), most for the smallest tumours whose rate rho*ln(K/V) ~ 0.2/day:
    # stated tolerance 5% relative for V0 >= 100 cm^3, 30% for all.
    t = np.arange(60)
    closed = K * np.exp(np.log(V[:, :1] / K) * np.exp(-rho * t))
    rel = np.abs(V / closed - 1.0)
    assert rel[V[:, 0] >= 100].max() < 0.05
    assert rel.max() < 0.30
    assert (V <= closed * (1 + 1e-12)).all()


@pytest.mark.parametrize("name", NAMES[1:])
def test_treated_data_follow_the_stated_euler_update(name):
    task = tasks.get(name, n_patients=100, seed=2)
    y, u = task.train.targets, task.train.inputs
    V, C, dc = y[..., 0], y[..., 1], u[..., 0]
    dr = u[..., 1] if u.shape[-1] == 2 else np.zeros_like(dc)
    assert set(np.unique(dc)) <= {0.0, 5.0} and set(np.unique(dr)) <= {0.0, 2.0}
    np.testing.assert_allclose(C[:, 0], 0.0)
    np.testing.assert_allclose(C[:, 1:], C[:, :-1] * 0.5 + dc[:, :-1], rtol=1e-12)
    rate = (pkpd_sim.RHO * np.log(pkpd_sim.K / V[:, :-1]) - 0.028 * C[:, :-1]
            - (0.0398 * dr[:, :-1] + 0.00398 * dr[:, :-1] ** 2))
    np.testing.assert_allclose(V[:, 1:], V[:, :-1] * (1 + rate), rtol=1e-10)


def test_chemo_dose_on_day_t_first_acts_on_day_t_plus_1():
    n, T, t_dose = 4, 10, 3
    chemo = np.zeros((n, T))
    chemo[:, t_dose] = 5.0
    v0 = np.array([1.0, 10.0, 100.0, 1000.0])
    none = pkpd_sim.simulate(n, T, variant="chemo", doses=(np.zeros((n, T)), 0.0), v0=v0)
    dosed = pkpd_sim.simulate(n, T, variant="chemo", doses=(chemo, 0.0), v0=v0)
    np.testing.assert_array_equal(dosed.chemo, chemo)
    # The drug is in the blood from day t+1, the volume is first lower on day t+2.
    np.testing.assert_array_equal(dosed.C[:, : t_dose + 1], 0.0)
    assert (dosed.C[:, t_dose + 1] == 5.0).all()
    np.testing.assert_array_equal(dosed.V[:, : t_dose + 2], none.V[:, : t_dose + 2])
    assert (dosed.V[:, t_dose + 2:] < none.V[:, t_dose + 2:]).all()


def test_radio_acts_in_the_same_step_and_plain_ignores_doses():
    n, T = 3, 6
    radio = np.zeros((n, T))
    radio[:, 2] = 2.0
    v0 = np.array([5.0, 50.0, 500.0])
    base = pkpd_sim.simulate(n, T, variant="chemo_radio", doses=(0.0, 0.0), v0=v0)
    hit = pkpd_sim.simulate(n, T, variant="chemo_radio", doses=(0.0, radio), v0=v0)
    np.testing.assert_array_equal(hit.V[:, :3], base.V[:, :3])
    assert (hit.V[:, 3:] < base.V[:, 3:]).all()
    plain = pkpd_sim.simulate(n, T, variant="plain", doses=(5.0, 2.0), v0=v0)
    np.testing.assert_array_equal(plain.V, base.V)
    assert not plain.chemo.any() and not plain.radio.any()


def test_policy_treats_bigger_tumours_more_often():
    task = tasks.get("lung_cancer_chemo_radio", n_patients=400, seed=4)
    V, dc = task.train.targets[..., 0], task.train.inputs[..., 0]
    big = V[:, 0] > np.median(V[:, 0])
    assert dc[big, :5].mean() > dc[~big, :5].mean() + 0.3  # dose units (5 per treated day)


# -- published ranges --------------------------------------------------------------------------

def test_build_is_fast(full_size):
    assert full_size["_seconds"] < 1.5  # 3 tasks x 3 splits x 1000 patients x 60 days


def test_statistics_match_published_ranges(full_size):
    # Expected (PROVENANCE, N = 1000): plain V_59 110-4850, mean ~3450; chemo V_59 1.6-110,
    # mean ~21, C <= 10, ~47% days dosed; full V_59 0.5-37, mean ~6, ~44%/43% dosed.
    plain = full_size["lung_cancer"].test
    v = plain.targets[:, -1, 0]
    # Bounds hold across seeds 0-29 (extremes depend on the few smallest initial tumours).
    assert 3100 < v.mean() < 3800 and 50 < v.min() < 700 and 4700 < v.max() < 4950
    chemo = full_size["lung_cancer_chemo"].test
    v, C = chemo.targets[:, -1, 0], chemo.targets[..., 1]
    assert 17 < v.mean() < 26 and 0.5 < v.min() < 4 and 60 < v.max() < 250
    assert C.max() <= 10.0 and 0.43 < (chemo.inputs[..., 0] > 0).mean() < 0.51
    full = full_size["lung_cancer_chemo_radio"].test
    v = full.targets[:, -1, 0]
    assert 4.5 < v.mean() < 8 and 0.1 < v.min() < 1.2 and 20 < v.max() < 100
    assert 0.40 < (full.inputs[..., 0] > 0).mean() < 0.48
    assert 0.39 < (full.inputs[..., 1] > 0).mean() < 0.47


# -- options -----------------------------------------------------------------------------------

def test_heterogeneity_gives_each_patient_its_own_growth_rate():
    shared = tasks.get("lung_cancer", n_patients=200, seed=0)
    het = tasks.get("lung_cancer", n_patients=200, seed=0, heterogeneity=True)
    np.testing.assert_array_equal(shared.train.targets[:, 0], het.train.targets[:, 0])  # same V0
    assert not np.allclose(shared.train.targets, het.train.targets)

    def implied_rho(V):  # (V_{t+1}/V_t - 1) / ln(K/V_t), constant per patient
        return ((V[:, 1:] / V[:, :-1] - 1) / np.log(pkpd_sim.K / V[:, :-1])).mean(axis=1)

    r_shared = implied_rho(shared.train.targets[..., 0])
    r_het = implied_rho(het.train.targets[..., 0])
    np.testing.assert_allclose(r_shared, pkpd_sim.RHO, rtol=1e-9)
    assert r_het.std() > 1e-3 and (r_het > 0).all()
    p = pkpd_sim.heterogeneous_params(5000, np.random.default_rng(0))
    assert (p.rho > 0).all() and (p.alpha_r > 0).all() and (p.beta_c > 0).all()
    np.testing.assert_allclose(p.beta_r, p.alpha_r / 10)
    # The bivariate normal is strongly correlated (0.87) before truncation; it stays positive.
    assert np.corrcoef(p.rho, p.alpha_r)[0, 1] > 0.5
    assert 0.028 < p.beta_c.mean() < 0.029


def test_observation_noise_is_multiplicative_lognormal_on_v_only():
    clean = pkpd_sim.simulate(400, variant="chemo_radio", seed=9)
    noisy = pkpd_sim.simulate(400, variant="chemo_radio", seed=9, noise=0.1)
    np.testing.assert_array_equal(noisy.V_true, clean.V)  # latent path and policy unchanged
    np.testing.assert_array_equal(noisy.chemo, clean.chemo)
    np.testing.assert_array_equal(noisy.C, clean.C)
    log_ratio = np.log(noisy.V / clean.V)
    assert abs(log_ratio.std() - 0.1) < 0.005 and abs(log_ratio.mean()) < 0.005
    task = tasks.get("lung_cancer_chemo", n_patients=30, seed=9, noise=0.1)
    assert task.options["noise"] == 0.1 and "noise" in task.description


def test_process_noise_perturbs_growth():
    clean = pkpd_sim.simulate(100, variant="plain", seed=2)
    noisy = pkpd_sim.simulate(100, variant="plain", seed=2, process_noise=0.01)
    np.testing.assert_array_equal(noisy.V[:, 0], clean.V[:, 0])
    V = noisy.V
    step_err = V[:, 1:] / V[:, :-1] - (1 + pkpd_sim.RHO * np.log(pkpd_sim.K / V[:, :-1]))
    assert abs(step_err.std() - 0.01) < 0.001


# -- candidates --------------------------------------------------------------------------------

ALLOWED = {"torch", "math", "numpy", "torchdiffeq", "nimm_jupyter.blocks"}


def _sources(task: Task) -> dict[str, str]:
    return {"prior": task.prior_code, "hybrid": task.hybrid_code or "",
            "oracle": lung_cancer.ORACLE_CODE}


def _build(source: str, task: Task, seed: int = 0) -> torch.nn.Module:
    module = types.ModuleType("candidate")
    exec(compile(source, "<candidate>", "exec"), module.__dict__)
    torch.manual_seed(seed)
    return module.Model(task.spec())


def _tensors(split):
    return (torch.tensor(split.targets, dtype=torch.float32),
            torch.tensor(split.inputs, dtype=torch.float32))


def _fit_and_score(source: str, task: Task, steps: int = 200, lr: float = 0.05):
    """Full-batch Adam on the normalised rollout MSE; returns (test RMSE of V, model)."""
    model = _build(source, task)
    spec = task.spec()
    y, u = _tensors(task.train)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = (((model(y[:, :1], u, spec.time) - y[:, 1:]) / spec.target_scale) ** 2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
    yt, ut = _tensors(task.test)
    with torch.no_grad():
        pred = model(yt[:, :1], ut, spec.time)
    return float(((pred[..., 0] - yt[:, 1:, 0]) ** 2).mean().sqrt()), model


@pytest.mark.parametrize("name", NAMES)
def test_candidate_sources_import_only_allowed_modules_and_run(name):
    task = tasks.get(name, n_patients=6)
    y, u = _tensors(task.train)
    for label, source in _sources(task).items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            for mod in mods:
                assert mod in ALLOWED or mod.split(".")[0] in {"torch", "numpy", "torchdiffeq"}, \
                    f"{label} imports {mod}"
        model = _build(source, task)
        out = model(y[:, :1], u, task.spec().time)
        assert out.shape == (6, 59, len(task.targets)) and out.dtype == torch.float32
        assert torch.isfinite(out).all(), label
        named = [n for n, m in model.named_modules() if type(m).__name__ == "Positive"]
        assert "rho" in named, label
    # The hybrid starts exactly as the prior (zero-initialised last layer).
    prior, hybrid = _build(task.prior_code, task), _build(task.hybrid_code, task)
    t = task.spec().time
    torch.testing.assert_close(prior(y[:, :1], u, t), hybrid(y[:, :1], u, t))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", NAMES)
def test_prior_is_imperfect_oracle_recovers_truth_hybrid_beats_prior(name):
    torch.set_num_threads(1)
    task = tasks.get(name, n_patients=64, seed=1)
    prior_rmse, _ = _fit_and_score(task.prior_code, task)
    oracle_rmse, oracle = _fit_and_score(lung_cancer.ORACLE_CODE, task)
    hybrid_rmse, _ = _fit_and_score(task.hybrid_code, task)
    assert prior_rmse > 3 * oracle_rmse, (prior_rmse, oracle_rmse)
    assert hybrid_rmse < 0.5 * prior_rmse, (hybrid_rmse, prior_rmse)
    assert abs(oracle.rho().item() / pkpd_sim.RHO - 1) < 0.05  # the structure is identifiable
