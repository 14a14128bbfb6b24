"""SYNTHETIC MRSA-Virginia stand-in (the real claims data are private).

Community + healthcare S/C/I compartments on 20 aggregated regions of Virginia, with
admissions, discharges and inter-facility transfers to referral hubs, seasonal community
transmission and a slow downward trend (infection control); weekly detected infections
~ Binomial(new infections, p). Populations and centroids are placeholders (see ``metapop``).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..base import DataSource, Task, Variable
from .core import PLACEHOLDER, Patch, distances_km, gravity_mobility, model_code, windowed_task

__all__ = ["make_mrsa_virginia_synthetic", "simulate_mrsa", "VIRGINIA_REGIONS", "VIRGINIA_HUBS",
           "MRSA_PRIOR_CODE", "MRSA_PRIOR_OMITS", "MRSA_HYBRID_CODE"]

# 20 aggregated regions (roughly health-district groups); hubs host referral hospitals.
VIRGINIA_REGIONS: list[Patch] = [
    Patch("Fairfax", "Fairfax", 1_150_000, 38.85, -77.30),
    Patch("PrinceWilliam", "Prince William", 480_000, 38.70, -77.48),
    Patch("Loudoun", "Loudoun", 430_000, 39.08, -77.64),
    Patch("ArlingtonAlexandria", "Arlington–Alexandria", 395_000, 38.87, -77.10),
    Patch("Richmond", "Richmond City", 230_000, 37.54, -77.44),
    Patch("Henrico", "Henrico", 330_000, 37.60, -77.40),
    Patch("Chesterfield", "Chesterfield", 360_000, 37.38, -77.59),
    Patch("VirginiaBeach", "Virginia Beach", 450_000, 36.85, -76.05),
    Patch("NorfolkPortsmouth", "Norfolk–Portsmouth", 340_000, 36.86, -76.28),
    Patch("ChesapeakeSuffolk", "Chesapeake–Suffolk", 340_000, 36.72, -76.40),
    Patch("HamptonNewportNews", "Hampton–Newport News", 315_000, 37.05, -76.40),
    Patch("Roanoke", "Roanoke", 310_000, 37.27, -79.94),
    Patch("Lynchburg", "Central Virginia (Lynchburg)", 260_000, 37.41, -79.14),
    Patch("Charlottesville", "Blue Ridge (Charlottesville)", 250_000, 38.03, -78.48),
    Patch("Fredericksburg", "Rappahannock (Fredericksburg)", 380_000, 38.30, -77.46),
    Patch("Shenandoah", "Lord Fairfax / Central Shenandoah", 320_000, 38.70, -78.60),
    Patch("NewRiver", "New River", 180_000, 37.20, -80.40),
    Patch("Southwest", "Southwest (Lenowisco / Cumberland)", 260_000, 36.85, -82.00),
    Patch("Southside", "Southside / Pittsylvania-Danville", 280_000, 36.75, -79.20),
    Patch("Piedmont", "Piedmont / Chesapeake Bay", 250_000, 37.45, -77.00),
]
VIRGINIA_HUBS = ["Fairfax", "Richmond", "Charlottesville", "Roanoke", "NorfolkPortsmouth"]


MRSA_START = np.datetime64("2015-01-05")  # Monday
_MRSA_BURN_IN_DAYS = 182  # the initial state is near equilibrium already


def _transfer_matrix(patches: Sequence[Patch], hubs: Sequence[str]) -> np.ndarray:
    """Row-stochastic: where a facility's transferred patients go (its 1-3 nearest hubs)."""
    idents = [p.ident for p in patches]
    hub_idx = np.array([idents.index(h) for h in hubs])
    dist = distances_km(patches)[:, hub_idx]
    T = np.zeros((len(patches), len(patches)))
    for i in range(len(patches)):
        order = np.argsort(dist[i])
        chosen = [h for h in order[:3] if hub_idx[h] != i][:3]
        w = 1.0 / np.maximum(dist[i, chosen], 10.0)
        T[i, hub_idx[chosen]] = w / w.sum()
    return T


def simulate_mrsa(patches: Sequence[Patch], weeks: int, n_replicates: int, seed: int,
                  stay_home: float = 0.85, bed_fraction: float = 0.005, los_days: float = 5.0,
                  transfer_share: float = 0.08, beta_com: float = 1.0 / 330.0,
                  beta_hc: float = 0.05, colonised_days: float = 270.0,
                  infection_days: float = 14.0, progress_com: float = 1.2e-3,
                  progress_hc: float = 5e-3, admit_bias_c: float = 4.0,
                  admit_bias_i: float = 15.0, seasonality: float = 0.30,
                  trend_per_year: float = 0.05, detection: float = 0.6,
                  ) -> dict[str, np.ndarray]:
    """Simulate weekly detected MRSA infections ``(R, weeks, P)``.

    Compartments per patch: community S/C/I and healthcare S/C/I. Competing risks leave each
    compartment once per day (binomial), then are split by destination; discharges go home
    or, for a share, to the 1-3 nearest hub facilities; admissions refill each facility's
    beds from the community with carriers over-represented.
    """
    rng = np.random.default_rng(seed)
    pop = np.array([p.population for p in patches], dtype=np.int64)
    mobility = gravity_mobility(pop, distances_km(patches), stay_home)
    transfers = _transfer_matrix(patches, VIRGINIA_HUBS)
    R, P = n_replicates, len(patches)
    beds = np.round(bed_fraction * pop).astype(np.int64)
    n_eff = pop @ mobility
    total_days = _MRSA_BURN_IN_DAYS + 7 * weeks
    day0 = MRSA_START - _MRSA_BURN_IN_DAYS
    doy0 = int((day0 - np.datetime64("2000-01-01")).astype(int))

    # X[..., k]: 0 Sc, 1 Cc, 2 Ic, 3 Sh, 4 Ch, 5 Ih (start near the community equilibrium)
    X = np.zeros((R, P, 6), dtype=np.int64)
    X[..., 3] = np.round(beds * 0.95)
    X[..., 4] = np.round(beds * 0.047)
    X[..., 5] = beds - X[..., 3] - X[..., 4]
    X[..., 1] = np.round((pop - beds) * 0.015)
    X[..., 2] = np.round((pop - beds) * 2e-5)
    X[..., 0] = pop - beds - X[..., 1] - X[..., 2]
    dis, dec, rec = 1.0 / los_days, 1.0 / colonised_days, 1.0 / infection_days
    weekly_new = np.zeros((R, weeks, P), dtype=np.int64)
    rate = np.zeros((R, P, 6))
    share = np.zeros((R, P, 4))
    for d in range(total_days):
        season = 1.0 + seasonality * math.sin(2 * math.pi * ((doy0 + d) % 365.25 - 130.0) / 365.25)
        trend = math.exp(-trend_per_year * d / 365.25)
        carriers = ((X[..., 1] + 0.5 * X[..., 2]) @ mobility) / n_eff
        f_com = beta_com * season * (carriers @ mobility.T)
        in_hc = np.maximum(X[..., 3:].sum(-1), 1)
        f_hc = beta_hc * trend * (X[..., 4] + 0.5 * X[..., 5]) / in_hc
        inf_c, inf_h = progress_com * season * trend, progress_hc * trend
        rate[..., 0] = f_com
        rate[..., 1] = dec + inf_c
        rate[..., 2] = rec
        rate[..., 3] = f_hc + dis
        rate[..., 4] = inf_h + dis
        rate[..., 5] = rec + dis
        leave = rng.binomial(X, -np.expm1(-rate))
        # which way they left: infection (Cc), colonisation (Sh), infection (Ch), recovery (Ih)
        share[..., 0] = inf_c / (dec + inf_c)
        share[..., 1] = f_hc / (f_hc + dis)
        share[..., 2] = inf_h / (inf_h + dis)
        share[..., 3] = rec / (rec + dis)
        first = rng.binomial(leave[..., [1, 3, 4, 5]], share)
        new_ic, col_h, new_ih, rec_h = (first[..., k] for k in range(4))
        discharged = leave[..., 3:] - first[..., 1:]  # (Sh, Ch, Ih) leaving the facility
        moved = rng.binomial(discharged, transfer_share)
        arrivals = rng.poisson(np.swapaxes(np.swapaxes(moved, 1, 2) @ transfers, 1, 2))
        X[..., 0] += leave[..., 1] - new_ic - leave[..., 0] + leave[..., 2]
        X[..., 1] += leave[..., 0] - leave[..., 1]
        X[..., 2] += new_ic - leave[..., 2]
        X[..., 3] += rec_h - leave[..., 3]
        X[..., 4] += col_h - leave[..., 4]
        X[..., 5] += new_ih - leave[..., 5]
        X[..., 3:] += arrivals
        X[..., :3] += discharged - moved
        need = np.maximum(beds - X[..., 3:].sum(-1), 0)
        w = X[..., :3] * np.array([1.0, admit_bias_c, admit_bias_i])
        w /= np.maximum(w.sum(-1, keepdims=True), 1e-12)
        adm = np.minimum(rng.multinomial(need, w), X[..., :3])
        X[..., :3] -= adm
        X[..., 3:] += adm
        if d >= _MRSA_BURN_IN_DAYS:
            weekly_new[:, (d - _MRSA_BURN_IN_DAYS) // 7] += new_ic + new_ih
    cases = rng.binomial(weekly_new, detection)
    mid_week = MRSA_START + 7 * np.arange(weeks) + 3
    phase = 2 * np.pi * ((mid_week - np.datetime64("2000-01-01")).astype(int) % 365.25) / 365.25
    return {"cases": cases, "season": np.stack([np.sin(phase), np.cos(phase)], axis=-1),
            "mobility": mobility, "transfers": transfers, "population": pop.astype(np.float64),
            "incidence": weekly_new, "state": X}


# -- candidate code (docs/CANDIDATES.md contract; original units, weekly data) -------------
MRSA_PRIOR_CODE = model_code("mrsa_prior")
MRSA_PRIOR_OMITS = (
    "no seasonality, no healthcare setting (admissions, in-facility transmission, transfers "
    "between facilities), no downward trend from infection control; progression and "
    "detection are one constant rate."
)

MRSA_HYBRID_CODE = model_code("mrsa_hybrid")


def make_mrsa_virginia_synthetic(*, weeks: int = 156, window: int = 12, horizon: int = 4,
                                 n_replicates: int = 1, seed: int = 0, detection: float = 0.6,
                                 split: Sequence[float] = (0.6, 0.2, 0.2)) -> Task:
    """SYNTHETIC weekly detected MRSA infections on 20 aggregated regions of Virginia."""
    if n_replicates < 1:
        raise ValueError(f"n_replicates must be >= 1, got {n_replicates}")
    patches = VIRGINIA_REGIONS
    sim = simulate_mrsa(patches, weeks, n_replicates, seed, detection=detection)
    exog = np.broadcast_to(sim["season"][None], (n_replicates, weeks, 2))
    weekly_max = sim["cases"].max(axis=(0, 1))
    names = ", ".join(f"{p.ident} ({p.name})" for p in patches)
    description = f"""SYNTHETIC stand-in: weekly detected MRSA infections in 20 aggregated regions of Virginia, simulated by a community + healthcare metapopulation (the real claims data are private).
Targets: detected MRSA infections per week (cases/week) in each region, one target per region:
{names}. Largest weekly count per region ranges from {int(weekly_max.min())} to {int(weekly_max.max())}.
Inputs: season_sin, season_cos = sin/cos(2*pi*day_of_year/365.25) at mid-week.
Constants: "mobility" (P, P) row-stochastic commuting matrix (gravity model, stay-home share
~0.85) and "population" (P,). {PLACEHOLDER}
Observed: detected infections only (a fraction of new infections, binomial); colonised
carriers, hospital occupancy and patient transfers are hidden. Time unit: weeks; each
sample has {window} context weeks and {horizon} forecast weeks.
Mechanistic prior: SIS colonisation metapopulation coupled by commuting with constant
rates; infections proportional to carriers. It ignores seasonality, the healthcare setting
(admissions, in-facility transmission, transfers to referral hubs) and the slow downward
trend from infection control."""
    provenance = (
        f"SYNTHETIC: generated by nimm_jupyter.tasks.metapop (seed={seed}, "
        f"n_replicates={n_replicates}): community and healthcare S/C/I per region, admissions "
        f"with carriers over-represented, discharges and transfers to 5 hub facilities, "
        f"community transmission +-30% seasonal (peak in late summer), ~5%/year decline in "
        f"healthcare transmission and progression, detection ~{detection:g} (binomial); "
        f"following the substitute design in the data "
        "PROVENANCE (mrsa_virginia/PROVENANCE.md; cf. CALYPSO, arXiv 2508.13548). The NIMM "
        "benchmark's MRSA-Virginia data (insurance claims) are private. Regions are rough "
        "aggregates of health districts; populations and coordinates are placeholders. "
        f"Weeks start on Monday {MRSA_START} (after a half-year burn-in)."
    )
    targets = [Variable(p.ident, "cases/week", f"detected MRSA infections in {p.name}")
               for p in patches]
    inputs = [Variable("season_sin", "", "sin(2*pi*day_of_year/365.25)"),
              Variable("season_cos", "", "cos(2*pi*day_of_year/365.25)")]
    return windowed_task(
        name="mrsa_virginia_synthetic", description=description, source=DataSource.SYNTHETIC,
        provenance=provenance, targets=targets, inputs=inputs, counts=sim["cases"], exog=exog,
        constants={"mobility": sim["mobility"], "population": sim["population"]},
        window=window, horizon=horizon, split=split, prior_code=MRSA_PRIOR_CODE,
        prior_omits=MRSA_PRIOR_OMITS, hybrid_code=MRSA_HYBRID_CODE,
        options=dict(weeks=weeks, window=window, horizon=horizon, n_replicates=n_replicates,
                     seed=seed, detection=detection, split=list(split),
                     first_week=str(MRSA_START)),
    )
