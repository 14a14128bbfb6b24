"""Held-out intervention scenarios of the lung-cancer tasks: the same simulator under
treatments its data never used (issue 20 item 3).

Every split of a lung-cancer task is treated by the simulator's policy (a dose is more likely
the larger the tumour). A model that learnt the mechanism should also forecast a patient under
a schedule no split contains; a model that learnt the policy's correlations should not. One
cohort (its own seed stream, so no patient of any split) is simulated under the policy and then
re-simulated with forced doses; the dynamics, initial volumes and noise are the cohort's own,
only the treatment changes:

* ``no_treatment``: no dose at all;
* ``stop_after_day20``: the policy's doses up to day 19, none from day 20;
* ``weekly_fixed``: chemo on days 0, 7, 14, ...; radiotherapy (where given) on days 3, 10, ...;
* ``daily``: a dose of every treatment every day (more than the policy ever gives);
* ``radio_only`` (chemo + radio task): the policy's radiotherapy, no chemo.

The untreated task has no treatment to change; its scenario is ``large_tumours``: initial
volumes above the training range (between the largest training volume and three times it).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import pkpd_sim
from .base import Scenario, Split

__all__ = ["lung_scenarios", "split_of", "SCENARIO_PATIENTS"]

SCENARIO_PATIENTS = 200  # at most this many patients per scenario (n_patients if fewer)


def split_of(sim: pkpd_sim.Simulation, variant: str, name: str) -> Split:
    """A simulated cohort as a split (targets V, C when chemo is given; the doses as inputs)."""
    chemo, radio = pkpd_sim.VARIANTS[variant]
    targets = np.stack([sim.V, sim.C], axis=-1) if chemo else sim.V[..., None]
    cols = ([sim.chemo] if chemo else []) + ([sim.radio] if radio else [])
    n, T = sim.V.shape
    inputs = np.stack(cols, axis=-1) if cols else np.zeros((n, T, 0))
    return Split(inputs=inputs.astype(np.float64), targets=targets.astype(np.float64),
                 groups=np.array([f"{name}-{i}" for i in range(n)]))


def _every(days: int, start: int, T: int, dose: float) -> np.ndarray:
    d = np.zeros(T)
    d[start::days] = dose
    return d


def lung_scenarios(variant: str, n_patients: int, horizon: int, seed: np.random.SeedSequence,
                   sim_options: dict[str, Any]) -> dict[str, Scenario]:
    """The scenarios of one lung-cancer task (see the module docstring); ``sim_options`` are
    the task's own simulator options (heterogeneity, noise, process noise, policy)."""
    n, T = min(int(n_patients), SCENARIO_PATIENTS), int(horizon)
    chemo, radio = pkpd_sim.VARIANTS[variant]

    def fresh() -> np.random.SeedSequence:  # spawn() advances a SeedSequence: copy it
        return np.random.SeedSequence(seed.entropy, spawn_key=seed.spawn_key)

    def run(**kw: Any) -> pkpd_sim.Simulation:  # the same cohort every time
        return pkpd_sim.simulate(n, T, variant=variant, seed=fresh(), **sim_options, **kw)

    out: dict[str, tuple[pkpd_sim.Simulation, str]] = {}
    if not (chemo or radio):
        v0 = np.random.default_rng(fresh().spawn(6)[5]).uniform(
            pkpd_sim.V0_HIGH, 3.0 * pkpd_sim.V0_HIGH, size=n)
        out["large_tumours"] = (run(v0=v0), "initial volumes between the largest training "
                                "volume and three times it")
    else:
        base = run()
        zero = np.zeros((n, T))
        stop_c, stop_r = base.chemo.copy(), base.radio.copy()
        stop_c[:, 20:] = stop_r[:, 20:] = 0.0
        weekly = (np.broadcast_to(_every(7, 0, T, pkpd_sim.CHEMO_DOSE), (n, T)),
                  np.broadcast_to(_every(7, 3, T, pkpd_sim.RADIO_DOSE), (n, T)))
        daily = (np.full((n, T), pkpd_sim.CHEMO_DOSE), np.full((n, T), pkpd_sim.RADIO_DOSE))
        out["no_treatment"] = (run(doses=(zero, zero)), "no dose at all")
        out["stop_after_day20"] = (run(doses=(stop_c, stop_r)),
                                   "the policy's doses up to day 19, none from day 20")
        out["weekly_fixed"] = (run(doses=weekly), "chemo on days 0, 7, 14, ..."
                               + ("; radiotherapy on days 3, 10, ..." if radio else ""))
        out["daily"] = (run(doses=daily), "every treatment every day")
        if radio:
            out["radio_only"] = (run(doses=(zero, base.radio)),
                                 "the policy's radiotherapy, no chemo")
    return {name: Scenario(split=split_of(sim, variant, name),
                           description=f"{desc} ({n} simulated patients)")
            for name, (sim, desc) in out.items()}
