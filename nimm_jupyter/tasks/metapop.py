"""SYNTHETIC metapopulation stand-ins for COVID-Bogotá, COVID-Medellín and MRSA-Virginia.

The real data behind these NIMM tasks is not public (see the PROVENANCE.md of each in the
data directory). Following the designs written there, this module simulates:

* COVID: a stochastic (binomial tau-leap, one step per day) metapopulation SEIR with slow
  waning immunity on the 19 urban localidades of Bogotá or the 16 comunas of Medellín;
  commuting by a gravity model; a piecewise-constant transmission rate β(t) with lockdowns
  (a known stringency level, the task's ``npi_level`` input) and variant waves (hidden);
  weekly reported cases ~ NegBin(ρ·incidence, k).
* MRSA: community + healthcare S/C/I compartments on 20 aggregated regions of Virginia, with
  admissions, discharges and inter-facility transfers to referral hubs, seasonal community
  transmission and a slow downward trend (infection control); weekly detected infections
  ~ Binomial(new infections, p).

Populations and centroid coordinates are round placeholder approximations, not official
figures; the task descriptions say so. Every task built here is labelled ``synthetic``.

Task layout (shared with :func:`nimm_jupyter.tasks.bogota.make_covid_bogota`): one target
per patch (cases/week), samples are windows of ``window + horizon`` weeks, the first
``window`` weeks are context, and the split is chronological on the forecast weeks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .base import DataSource, Split, Task, TaskKind, Variable

__all__ = [
    "make_covid_bogota_synthetic", "make_covid_medellin_synthetic",
    "make_mrsa_virginia_synthetic", "gravity_mobility", "npi_schedule",
    "windowed_task", "BOGOTA_LOCALIDADES", "MEDELLIN_COMUNAS", "VIRGINIA_REGIONS",
    "COVID_PRIOR_CODE", "COVID_HYBRID_CODE", "MRSA_PRIOR_CODE", "MRSA_HYBRID_CODE",
]


@dataclass(frozen=True)
class Patch:
    """A spatial unit: identifier (no spaces), display name, placeholder population, centroid."""

    ident: str
    name: str
    population: int
    lat: float
    lon: float


# Official names (PROVENANCE); populations rounded approximations of DANE 2020 projections and
# centroids eyeballed to ~1 km: placeholders, good enough for a gravity model.
BOGOTA_LOCALIDADES: list[Patch] = [
    Patch("Usaquen", "Usaquén", 570_000, 4.720, -74.035),
    Patch("Chapinero", "Chapinero", 170_000, 4.650, -74.060),
    Patch("SantaFe", "Santa Fe", 110_000, 4.605, -74.065),
    Patch("SanCristobal", "San Cristóbal", 400_000, 4.560, -74.085),
    Patch("Usme", "Usme", 350_000, 4.505, -74.110),
    Patch("Tunjuelito", "Tunjuelito", 190_000, 4.575, -74.130),
    Patch("Bosa", "Bosa", 780_000, 4.615, -74.190),
    Patch("Kennedy", "Kennedy", 1_250_000, 4.630, -74.155),
    Patch("Fontibon", "Fontibón", 420_000, 4.675, -74.140),
    Patch("Engativa", "Engativá", 890_000, 4.705, -74.110),
    Patch("Suba", "Suba", 1_300_000, 4.745, -74.085),
    Patch("BarriosUnidos", "Barrios Unidos", 140_000, 4.670, -74.070),
    Patch("Teusaquillo", "Teusaquillo", 150_000, 4.640, -74.090),
    Patch("LosMartires", "Los Mártires", 90_000, 4.605, -74.090),
    Patch("AntonioNarino", "Antonio Nariño", 80_000, 4.590, -74.100),
    Patch("PuenteAranda", "Puente Aranda", 250_000, 4.620, -74.115),
    Patch("LaCandelaria", "La Candelaria", 20_000, 4.597, -74.073),
    Patch("RafaelUribeUribe", "Rafael Uribe Uribe", 380_000, 4.570, -74.115),
    Patch("CiudadBolivar", "Ciudad Bolívar", 730_000, 4.550, -74.150),
]

MEDELLIN_COMUNAS: list[Patch] = [
    Patch("Popular", "Popular", 130_000, 6.295, -75.547),
    Patch("SantaCruz", "Santa Cruz", 110_000, 6.297, -75.560),
    Patch("Manrique", "Manrique", 160_000, 6.275, -75.548),
    Patch("Aranjuez", "Aranjuez", 160_000, 6.280, -75.560),
    Patch("Castilla", "Castilla", 150_000, 6.295, -75.575),
    Patch("DoceDeOctubre", "Doce de Octubre", 190_000, 6.305, -75.588),
    Patch("Robledo", "Robledo", 170_000, 6.280, -75.595),
    Patch("VillaHermosa", "Villa Hermosa", 140_000, 6.255, -75.550),
    Patch("BuenosAires", "Buenos Aires", 140_000, 6.235, -75.555),
    Patch("LaCandelaria", "La Candelaria", 85_000, 6.250, -75.568),
    Patch("LaurelesEstadio", "Laureles–Estadio", 120_000, 6.245, -75.595),
    Patch("LaAmerica", "La América", 95_000, 6.255, -75.605),
    Patch("SanJavier", "San Javier", 140_000, 6.255, -75.620),
    Patch("ElPoblado", "El Poblado", 130_000, 6.205, -75.565),
    Patch("Guayabal", "Guayabal", 95_000, 6.215, -75.585),
    Patch("Belen", "Belén", 200_000, 6.225, -75.600),
]

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


# -- geography ---------------------------------------------------------------------------------
def _distances_km(patches: Sequence[Patch]) -> np.ndarray:
    lat = np.radians([p.lat for p in patches])
    lon = np.radians([p.lon for p in patches])
    dlat = lat[:, None] - lat[None, :]
    dlon = lon[:, None] - lon[None, :]
    a = np.sin(dlat / 2) ** 2 + np.cos(lat[:, None]) * np.cos(lat[None, :]) * np.sin(dlon / 2) ** 2
    return 2 * 6371.0 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def gravity_mobility(population: np.ndarray, distance_km: np.ndarray, stay_home: float = 0.8,
                     exponent: float = 2.0, min_distance_km: float = 1.0) -> np.ndarray:
    """Row-stochastic commuting matrix: ``M[i, j]`` is the share of time residents of ``i``
    spend in ``j``. Off-diagonal flows follow F_ij ∝ N_i·N_j / d_ij^exponent and share
    ``1 - stay_home`` of each row; the diagonal is ``stay_home``."""
    if not 0.0 < stay_home <= 1.0:
        raise ValueError(f"stay_home must be in (0, 1], got {stay_home}")
    pop = np.asarray(population, dtype=np.float64)
    d = np.maximum(np.asarray(distance_km, dtype=np.float64), min_distance_km)
    flows = pop[:, None] * pop[None, :] / d**exponent
    np.fill_diagonal(flows, 0.0)
    rows = flows.sum(axis=1, keepdims=True)
    away = np.divide(flows, rows, out=np.zeros_like(flows), where=rows > 0)
    mobility = (1.0 - stay_home) * away
    mobility[np.diag_indices_from(mobility)] += np.where(rows[:, 0] > 0, stay_home, 1.0)
    return mobility


# -- COVID schedule ------------------------------------------------------------------------------
# (start date, npi level known to a modeller, hidden transmissibility multiplier: variants and
# behaviour). Dates follow the periods in PROVENANCE: lockdown 2020-03..05 and waves 2020-07,
# 2021-01, 2021-06, 2022-01. The levels are invented, not measured stringency indices.
_COVID_PERIODS: dict[str, list[tuple[str, float, float]]] = {
    "bogota": [
        ("2020-03-02", 0.0, 1.00),
        ("2020-03-20", 1.0, 1.00),
        ("2020-05-11", 0.7, 1.00),
        ("2020-06-15", 0.4, 1.05),
        ("2020-08-24", 0.6, 1.00),
        ("2020-10-01", 0.3, 1.00),
        ("2020-12-07", 0.2, 1.10),
        ("2021-01-11", 0.7, 1.05),
        ("2021-02-15", 0.3, 1.10),
        ("2021-04-12", 0.5, 1.45),
        ("2021-07-05", 0.2, 1.40),
        ("2021-09-13", 0.1, 1.45),
        ("2021-12-06", 0.0, 2.30),
        ("2022-02-21", 0.0, 1.60),
    ],
    "medellin": [
        ("2020-03-02", 0.0, 1.00),
        ("2020-03-20", 1.0, 1.00),
        ("2020-05-25", 0.7, 1.00),
        ("2020-07-06", 0.4, 1.05),
        ("2020-09-07", 0.5, 1.00),
        ("2020-10-19", 0.3, 1.00),
        ("2020-12-07", 0.2, 1.10),
        ("2021-01-11", 0.6, 1.05),
        ("2021-02-22", 0.3, 1.10),
        ("2021-04-05", 0.5, 1.45),
        ("2021-06-28", 0.2, 1.40),
        ("2021-09-13", 0.1, 1.45),
        ("2021-12-13", 0.0, 2.30),
        ("2022-02-28", 0.0, 1.60),
    ],
}
COVID_START = np.datetime64("2020-03-02")  # a Monday: weeks run Monday..Sunday
NPI_EFFICACY = 0.65  # share of transmission removed at npi_level 1


def npi_schedule(days: np.ndarray, city: str = "bogota") -> tuple[np.ndarray, np.ndarray]:
    """Daily (npi_level, hidden transmissibility multiplier) for ``days`` (datetime64[D]).

    The npi level is the piecewise-constant stringency of the schedule's lockdown periods
    (0 = open, 1 = strict lockdown); days before the first period get level 0.
    """
    if city not in _COVID_PERIODS:
        raise ValueError(f"unknown city {city!r}; expected one of {sorted(_COVID_PERIODS)}")
    periods = _COVID_PERIODS[city]
    starts = np.array([np.datetime64(s) for s, _, _ in periods])
    npi = np.array([0.0] + [p[1] for p in periods])
    mult = np.array([1.0] + [p[2] for p in periods])
    idx = np.searchsorted(starts, np.asarray(days, dtype="datetime64[D]"), side="right")
    return npi[idx], mult[idx]


def _negbin(rng: np.random.Generator, mean: np.ndarray, k: float) -> np.ndarray:
    mean = np.maximum(mean, 0.0)
    p = k / (k + mean)
    return rng.negative_binomial(k, p).astype(np.int64)


def _leave(rng: np.random.Generator, n: np.ndarray, rate: np.ndarray | float) -> np.ndarray:
    """Number leaving a compartment of size ``n`` in one day at per-day ``rate``."""
    prob = 1.0 - np.exp(-np.clip(rate, 0.0, 50.0))
    return rng.binomial(n, np.broadcast_to(prob, np.shape(n)))


def simulate_covid(patches: Sequence[Patch], city: str, weeks: int, n_replicates: int,
                   seed: int, stay_home: float = 0.8, r0: float = 1.9, latent_days: float = 4.0,
                   infectious_days: float = 7.0, immunity_days: float = 300.0,
                   reporting: float = 0.2, dispersion: float = 10.0,
                   ) -> dict[str, np.ndarray]:
    """Simulate weekly reported cases ``(R, weeks, P)`` and the weekly npi level ``(weeks,)``."""
    rng = np.random.default_rng(seed)
    pop = np.array([p.population for p in patches], dtype=np.int64)
    mobility = gravity_mobility(pop, _distances_km(patches), stay_home)
    R, P, D = n_replicates, len(patches), 7 * weeks
    days = COVID_START + np.arange(D)
    npi, mult = npi_schedule(days, city)
    gamma, sigma, omega = 1.0 / infectious_days, 1.0 / latent_days, 1.0 / immunity_days
    beta = r0 * gamma * (1.0 - NPI_EFFICACY * npi) * mult  # (D,)
    n_eff = pop @ mobility  # people present in each patch during the day

    S = np.broadcast_to(pop, (R, P)).copy()
    E = np.zeros((R, P), dtype=np.int64)
    I = np.zeros((R, P), dtype=np.int64)
    Rec = np.zeros((R, P), dtype=np.int64)
    # Importations (travellers) before the borders closed, weighted by population.
    import_rate = np.where(days < np.datetime64("2020-03-23"), 3.0, 0.2)[:, None] * pop / pop.sum()
    incidence = np.zeros((R, D, P), dtype=np.int64)
    for d in range(D):
        prevalence = (I @ mobility) / n_eff  # infectious share met in each patch
        force = beta[d] * (prevalence @ mobility.T)  # residents' force of infection
        new_e = _leave(rng, S, force)
        imported = np.minimum(rng.poisson(np.broadcast_to(import_rate[d], (R, P))), S - new_e)
        new_i = _leave(rng, E, sigma)
        new_r = _leave(rng, I, gamma)
        waned = _leave(rng, Rec, omega)
        S += waned - new_e - imported
        E += new_e + imported - new_i
        I += new_i - new_r
        Rec += new_r - waned
        incidence[:, d] = new_i
    weekly = incidence.reshape(R, weeks, 7, P).sum(axis=2)
    cases = _negbin(rng, reporting * weekly, dispersion)
    npi_week = npi.reshape(weeks, 7).mean(axis=1)
    return {"cases": cases, "npi": npi_week, "mobility": mobility,
            "population": pop.astype(np.float64), "incidence": weekly}


MRSA_START = np.datetime64("2015-01-05")  # Monday
_MRSA_BURN_IN_DAYS = 364


def _transfer_matrix(patches: Sequence[Patch], hubs: Sequence[str]) -> np.ndarray:
    """Row-stochastic: where a facility's transferred patients go (its 1-3 nearest hubs)."""
    idents = [p.ident for p in patches]
    hub_idx = np.array([idents.index(h) for h in hubs])
    dist = _distances_km(patches)[:, hub_idx]
    T = np.zeros((len(patches), len(patches)))
    for i in range(len(patches)):
        order = np.argsort(dist[i])
        chosen = [h for h in order[:3] if hub_idx[h] != i][:3]
        w = 1.0 / np.maximum(dist[i, chosen], 10.0)
        T[i, hub_idx[chosen]] = w / w.sum()
    return T


def simulate_mrsa(patches: Sequence[Patch], weeks: int, n_replicates: int, seed: int,
                  stay_home: float = 0.85, bed_fraction: float = 0.005, los_days: float = 5.0,
                  transfer_share: float = 0.08, beta_com: float = 1.0 / 290.0,
                  beta_hc: float = 0.08, colonised_days: float = 270.0,
                  infection_days: float = 14.0, progress_com: float = 3e-4,
                  progress_hc: float = 4e-3, admit_bias_c: float = 4.0,
                  admit_bias_i: float = 15.0, seasonality: float = 0.15,
                  trend_per_year: float = 0.06, detection: float = 0.45,
                  ) -> dict[str, np.ndarray]:
    """Simulate weekly detected MRSA infections ``(R, weeks, P)``.

    Compartments per patch: community S/C/I and healthcare S/C/I. Competing risks leave each
    compartment once per day (binomial), then are split by destination; discharges go home
    or, for a share, to the 1-3 nearest hub facilities; admissions refill each facility's
    beds from the community with carriers over-represented.
    """
    rng = np.random.default_rng(seed)
    pop = np.array([p.population for p in patches], dtype=np.int64)
    mobility = gravity_mobility(pop, _distances_km(patches), stay_home)
    transfers = _transfer_matrix(patches, VIRGINIA_HUBS)
    R, P = n_replicates, len(patches)
    beds = np.round(bed_fraction * pop).astype(np.int64)
    n_eff = pop @ mobility
    total_days = _MRSA_BURN_IN_DAYS + 7 * weeks
    day0 = MRSA_START - _MRSA_BURN_IN_DAYS
    doy0 = int((day0 - np.datetime64("2000-01-01")).astype(int))

    # X[..., k]: 0 Sc, 1 Cc, 2 Ic, 3 Sh, 4 Ch, 5 Ih (start near the community equilibrium)
    X = np.zeros((R, P, 6), dtype=np.int64)
    X[..., 3] = np.round(beds * 0.93)
    X[..., 4] = np.round(beds * 0.065)
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
        arrivals = rng.poisson(np.einsum("rpk,pq->rqk", moved, transfers))
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
