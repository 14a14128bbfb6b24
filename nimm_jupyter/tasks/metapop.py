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
        ("2020-03-20", 1.0, 1.00),  # national lockdown
        ("2020-05-11", 0.7, 1.00),
        ("2020-07-13", 0.9, 1.00),  # quarantines by localidad
        ("2020-09-01", 0.5, 1.00),
        ("2020-11-01", 0.4, 1.00),
        ("2020-12-07", 0.2, 1.10),  # holidays
        ("2021-01-11", 0.8, 1.05),  # second lockdown
        ("2021-02-22", 0.4, 1.10),
        ("2021-04-12", 0.6, 1.45),  # more transmissible variants
        ("2021-07-05", 0.3, 1.40),
        ("2021-09-13", 0.1, 1.45),
        ("2021-12-06", 0.0, 2.30),  # omicron-like immune escape
        ("2022-02-21", 0.0, 1.60),
    ],
    "medellin": [
        ("2020-03-02", 0.0, 1.00),
        ("2020-03-20", 1.0, 1.00),
        ("2020-05-25", 0.7, 1.00),
        ("2020-07-20", 0.8, 1.00),
        ("2020-09-07", 0.5, 1.00),
        ("2020-10-19", 0.4, 1.00),
        ("2020-12-07", 0.2, 1.10),
        ("2021-01-11", 0.7, 1.05),
        ("2021-02-22", 0.3, 1.10),
        ("2021-04-05", 0.6, 1.45),
        ("2021-06-28", 0.3, 1.40),
        ("2021-09-13", 0.1, 1.45),
        ("2021-12-13", 0.0, 2.30),
        ("2022-02-28", 0.0, 1.60),
    ],
}
COVID_START = np.datetime64("2020-03-02")  # a Monday: weeks run Monday..Sunday
NPI_EFFICACY = 0.5  # share of transmission removed at npi_level 1


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
                   seed: int, stay_home: float = 0.8, r0: float = 2.6, latent_days: float = 4.0,
                   infectious_days: float = 7.0, immunity_days: float = 300.0,
                   reporting: float = 0.12, dispersion: float = 10.0,
                   awareness: float = 25.0,
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
    import_rate = np.where(days < np.datetime64("2020-03-23"), 10.0, 0.5)[:, None] * pop / pop.sum()
    incidence = np.zeros((R, D, P), dtype=np.int64)
    for d in range(D):
        prevalence = (I @ mobility) / n_eff  # infectious share met in each patch
        # behavioural response (hidden from the modeller): contacts drop as the city's
        # infectious share rises, which flattens peaks
        caution = 1.0 / (1.0 + awareness * I.sum(axis=1, keepdims=True) / pop.sum())
        force = beta[d] * caution * (prevalence @ mobility.T)  # residents' force of infection
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
_MRSA_BURN_IN_DAYS = 182  # the initial state is near equilibrium already


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
COVID_PRIOR_CODE = '''\
import torch
from torch import nn
from nimm_jupyter.blocks import Bounded, Positive


class Model(nn.Module):
    """Metapopulation SEIR with commuting and a constant transmission rate.

    Data: weekly reported cases per patch; the model steps daily (7 Euler steps per week).
    Residents of patch i spend a share M[i, j] of their day in patch j (spec.constants
    "mobility"), so the force of infection on i is beta * sum_j M[i, j] * I_eff[j] / N_eff[j].
    The hidden compartments are initialised from the context: daily incidence is last
    week's cases / (7 * rho), E = incidence / sigma, I = incidence / gamma, and the
    susceptible share at the forecast origin is fitted.
    """

    def __init__(self, spec):
        super().__init__()
        self.register_buffer("M", spec.constants["mobility"])  # (P, P), rows sum to 1
        self.register_buffer("N", spec.constants["population"])  # (P,)
        self.beta = Positive(0.35)  # transmission rate, 1/day
        self.sigma = Positive(0.25)  # 1 / latent period, 1/day
        self.gamma = Positive(1.0 / 7.0)  # 1 / infectious period, 1/day
        self.rho = Bounded(0.2, 0.01, 1.0)  # reporting fraction
        self.s0 = Bounded(0.6, 0.02, 1.0)  # susceptible share at the forecast origin

    def transmission(self, S, E, I, u_k):
        """Per-patch transmission rate (B, P), 1/day."""
        return self.beta() * torch.ones_like(S)

    def forward(self, y_context, u, t):
        C, H = y_context.shape[1], t.shape[0] - y_context.shape[1]
        week_days = 7.0 * float(t[1] - t[0]) if t.shape[0] > 1 else 7.0
        n_sub = max(1, int(round(week_days)))
        h = week_days / n_sub
        N = self.N.clamp_min(1.0)
        n_eff = (N @ self.M).clamp_min(1.0)  # people present in each patch by day
        rho, sigma, gamma = self.rho(), self.sigma(), self.gamma()
        recent = y_context[:, -2:].clamp_min(0.0).mean(1)  # two weeks damp reporting noise
        incidence = recent / (rho * week_days)
        E = torch.minimum(incidence / sigma, 0.5 * N)
        I = torch.minimum(incidence / gamma, 0.5 * N)
        S = (self.s0() * N - E - I).clamp_min(0.0)
        out = []
        for k in range(H):
            u_k = u[:, C + k]
            onsets = torch.zeros_like(S)
            for _ in range(n_sub):
                prevalence = (I @ self.M) / n_eff
                force = self.transmission(S, E, I, u_k) * (prevalence @ self.M.T)
                infected = S * -torch.expm1(-(force * h).clamp(0.0, 20.0))  # never exceeds S
                new_i, new_r = sigma * E * h, gamma * I * h
                S = (S - infected).clamp_min(0.0)
                E = (E + infected - new_i).clamp_min(0.0)
                I = (I + new_i - new_r).clamp(0.0, 1e8)
                onsets = onsets + new_i
            out.append(rho * onsets)
        return torch.stack(out, dim=1)
'''

COVID_PRIOR_OMITS = (
    "constant transmission: no intervention (npi_level) effect, no behavioural response, "
    "no variants or waning immunity; one susceptible share for all patches; reporting "
    "fraction constant in time."
)

COVID_HYBRID_CODE = COVID_PRIOR_CODE.replace(
    "from nimm_jupyter.blocks import Bounded, Positive",
    "from nimm_jupyter.blocks import Bounded, Positive, mlp",
).replace(
    '''        self.s0 = Bounded(0.6, 0.02, 1.0)  # susceptible share at the forecast origin
''',
    '''        self.s0 = Bounded(0.6, 0.02, 1.0)  # susceptible share at the forecast origin
        # neural part: log-multiplier of beta from the intervention level and the local state
        # (zero last layer: the hybrid starts as the SEIR prior)
        self.net = mlp(spec.n_inputs + 2, 1, hidden=16)
''',
).replace(
    '''        return self.beta() * torch.ones_like(S)
''',
    '''        N = self.N.clamp_min(1.0)
        z = torch.stack([S / N, torch.log1p(1e4 * I / N)], dim=-1)  # (B, P, 2)
        x = torch.cat([u_k[:, None, :].expand(-1, S.shape[1], -1), z], dim=-1)
        return self.beta() * torch.exp(self.net(x)[..., 0].clamp(-4.0, 4.0))
''',
).replace(
    '"""Metapopulation SEIR with commuting and a constant transmission rate.',
    '"""Metapopulation SEIR with commuting; a small MLP modulates transmission.',
)

MRSA_PRIOR_CODE = '''\
import torch
from torch import nn
from nimm_jupyter.blocks import Positive


class Model(nn.Module):
    """SIS metapopulation of MRSA colonisation with commuting; infections from carriers.

    Carriers C per patch are colonised at rate beta * (commuting-mixed carrier share) and
    clear at rate `clear`; detected infections per day are q * C (progression x detection).
    Data are weekly detected infections; the model steps daily. C at the forecast origin is
    inferred from the mean of the last four context weeks: C = cases / (7 * q).
    """

    def __init__(self, spec):
        super().__init__()
        self.register_buffer("M", spec.constants["mobility"])  # (P, P), rows sum to 1
        self.register_buffer("N", spec.constants["population"])  # (P,)
        self.beta = Positive(1.0 / 300.0)  # colonisation transmission, 1/day
        self.clear = Positive(1.0 / 270.0)  # decolonisation rate, 1/day
        self.q = Positive(2e-4)  # detected infections per carrier per day

    def rates(self, C, u_k):
        """(transmission, detected-infection rate), each (B, P), 1/day."""
        ones = torch.ones_like(C)
        return self.beta() * ones, self.q() * ones

    def forward(self, y_context, u, t):
        Cn, H = y_context.shape[1], t.shape[0] - y_context.shape[1]
        week_days = 7.0 * float(t[1] - t[0]) if t.shape[0] > 1 else 7.0
        n_sub = max(1, int(round(week_days)))
        h = week_days / n_sub
        N = self.N.clamp_min(1.0)
        n_eff = (N @ self.M).clamp_min(1.0)
        recent = y_context[:, -4:].clamp_min(0.0).mean(1)
        C = torch.minimum(recent / (week_days * self.q()), N)
        out = []
        for k in range(H):
            u_k = u[:, Cn + k]
            detected = torch.zeros_like(C)
            for _ in range(n_sub):
                beta, q = self.rates(C, u_k)
                share = ((C @ self.M) / n_eff) @ self.M.T
                dC = beta * share * (N - C) - self.clear() * C
                C = (C + h * dC).clamp(torch.zeros_like(N), N)
                detected = detected + h * q * C
            out.append(detected)
        return torch.stack(out, dim=1)
'''

MRSA_PRIOR_OMITS = (
    "no seasonality, no healthcare setting (admissions, in-facility transmission, transfers "
    "between facilities), no downward trend from infection control; progression and "
    "detection are one constant rate."
)

MRSA_HYBRID_CODE = MRSA_PRIOR_CODE.replace(
    "from nimm_jupyter.blocks import Positive",
    "from nimm_jupyter.blocks import Positive, mlp",
).replace(
    '''        self.q = Positive(2e-4)  # detected infections per carrier per day
''',
    '''        self.q = Positive(2e-4)  # detected infections per carrier per day
        # neural part: log-multipliers of transmission and detected progression from the
        # season and the local carrier share (zero last layer: starts as the SIS prior)
        self.net = mlp(spec.n_inputs + 1, 2, hidden=16)
''',
).replace(
    '''        ones = torch.ones_like(C)
        return self.beta() * ones, self.q() * ones
''',
    '''        x = torch.cat([u_k[:, None, :].expand(-1, C.shape[1], -1),
                       (100.0 * C / self.N.clamp_min(1.0))[..., None]], dim=-1)
        m = self.net(x).clamp(-3.0, 3.0)
        return self.beta() * torch.exp(m[..., 0]), self.q() * torch.exp(m[..., 1])
''',
).replace(
    '"""SIS metapopulation of MRSA colonisation with commuting; infections from carriers.',
    '"""SIS metapopulation of MRSA colonisation; a small MLP modulates transmission/progression.',
)


# -- task assembly ---------------------------------------------------------------------------
def windowed_task(*, name: str, description: str, source: DataSource | str, provenance: str,
                  targets: list[Variable], inputs: list[Variable], counts: np.ndarray,
                  exog: np.ndarray, constants: dict[str, np.ndarray], window: int,
                  horizon: int, split: Sequence[float], prior_code: str, prior_omits: str,
                  hybrid_code: str | None, options: dict[str, Any],
                  family: str = "epidemic") -> Task:
    """Cut ``counts`` ``(R, W, P)`` and ``exog`` ``(R, W, U)`` into windows of
    ``window + horizon`` steps and split them chronologically on their forecast steps.

    Every replicate contributes the same window starts to the same split, so a split's
    forecast weeks never overlap another split's (groups = window start index).
    """
    from .dataframe import chronological_windows

    counts = np.asarray(counts, dtype=np.float64)
    exog = np.asarray(exog, dtype=np.float64)
    if counts.ndim != 3 or exog.ndim != 3 or exog.shape[:2] != counts.shape[:2]:
        raise ValueError(f"counts (R, W, P) and inputs (R, W, U) disagree: "
                         f"{counts.shape} vs {exog.shape}")
    starts = chronological_windows(counts.shape[1], window, horizon, split)
    T = window + horizon

    def cut(idx: np.ndarray) -> Split:
        R = counts.shape[0]
        take = idx[:, None] + np.arange(T)[None, :]  # (n, T)
        y = counts[:, take].reshape(R * len(idx), T, counts.shape[2])
        u = exog[:, take].reshape(R * len(idx), T, exog.shape[2])
        return Split(inputs=u, targets=y, groups=np.tile(idx, R))

    return Task(
        name=name, kind=TaskKind.TRAJECTORY, description=description, source=source,
        provenance=provenance, inputs=inputs, targets=targets,
        train=cut(starts["train"]), val=cut(starts["val"]), test=cut(starts["test"]),
        prior_code=prior_code, prior_omits=prior_omits, hybrid_code=hybrid_code,
        family=family, time=np.arange(T, dtype=np.float64), context=window,
        constants=constants, options=options,
    )


def covid_description(first_line: str, patches: Sequence[Patch], unit_word: str,
                      counts: np.ndarray, window: int, horizon: int, placeholder: str) -> str:
    """The proposer-facing text shared by the synthetic and real COVID tasks."""
    weekly_max = counts.max(axis=(0, 1)) if counts.size else np.zeros(len(patches))
    names = ", ".join(f"{p.ident} ({p.name})" for p in patches)
    return f"""{first_line}
Targets: weekly reported COVID-19 cases (cases/week) in each of the {len(patches)} {_plural(unit_word)},
one target per {unit_word}: {names}. Largest weekly count per {unit_word} ranges from
{int(weekly_max.min())} to {int(weekly_max.max())}.
Input: npi_level (0..1), the known stringency of non-pharmaceutical interventions that week
(1 = strict lockdown, 0 = no restrictions).
Constants: "mobility" (P, P) row-stochastic commuting matrix (share of the day residents of i
spend in j; gravity model with stay-home share ~0.8) and "population" (P,). {placeholder}
Observed: reported cases only (under-reported, overdispersed); susceptible, exposed,
infectious and recovered counts are hidden. Time unit: weeks; each sample has {window}
context weeks and {horizon} forecast weeks.
Mechanistic prior: metapopulation SEIR (latent ~4 d, infectious ~7 d) coupled through the
mobility matrix with a constant transmission rate and a fitted reporting fraction; it
ignores interventions, behaviour, variants and waning immunity."""


def _plural(word: str) -> str:
    return word + ("es" if word.endswith("d") else "s")


_PLACEHOLDER = ("Populations and centroid coordinates behind both are round placeholder "
                "approximations, not official figures.")


def _make_covid_synthetic(city: str, patches: list[Patch], unit_word: str, place: str, *,
                          weeks: int, window: int, horizon: int, n_replicates: int, seed: int,
                          stay_home: float, reporting: float, dispersion: float,
                          split: Sequence[float]) -> Task:
    if n_replicates < 1:
        raise ValueError(f"n_replicates must be >= 1, got {n_replicates}")
    sim = simulate_covid(patches, city, weeks, n_replicates, seed, stay_home=stay_home,
                         reporting=reporting, dispersion=dispersion)
    exog = np.broadcast_to(sim["npi"][None, :, None], (n_replicates, weeks, 1))
    first = (f"SYNTHETIC stand-in: weekly COVID-19 cases in the {len(patches)} "
             f"{_plural(unit_word)} of {place}, simulated by a stochastic metapopulation SEIR "
             "(the real series is not public).")
    description = covid_description(first, patches, unit_word, sim["cases"], window, horizon,
                                    _PLACEHOLDER)
    # What the simulator does is kept out of the description (the proposer's text) and
    # recorded in the provenance.
    provenance = (
        f"SYNTHETIC: generated by nimm_jupyter.tasks.metapop (seed={seed}, "
        f"n_replicates={n_replicates}): binomial SEIR with waning immunity, "
        f"transmission reduced by interventions and by a behavioural response, "
        f"variant waves, reporting ~{reporting:g} with negative-binomial noise; "
        f"from the substitute design in the data PROVENANCE "
        f"(covid_{city}/PROVENANCE.md). The NIMM benchmark's real {place} series "
        f"(likely via the data.org PETs for Public Health Challenge) is not public. "
        f"{unit_word.capitalize()} names are official; populations and coordinates are "
        f"placeholders. Weeks start on Monday {COVID_START}."
    )
    if city == "bogota":
        provenance += (" With the public Datos Abiertos Bogotá line list "
                       "(osb_enftransm-covid-19.csv) downloaded, "
                       "nimm_jupyter.tasks.bogota.make_covid_bogota(path) builds the real task "
                       "with this layout.")
    targets = [Variable(p.ident, "cases/week", f"reported cases in {p.name}") for p in patches]
    inputs = [Variable("npi_level", "", "intervention stringency 0..1 (known)")]
    return windowed_task(
        name=f"covid_{city}_synthetic", description=description, source=DataSource.SYNTHETIC,
        provenance=provenance, targets=targets, inputs=inputs, counts=sim["cases"], exog=exog,
        constants={"mobility": sim["mobility"], "population": sim["population"]},
        window=window, horizon=horizon, split=split, prior_code=COVID_PRIOR_CODE,
        prior_omits=COVID_PRIOR_OMITS, hybrid_code=COVID_HYBRID_CODE,
        options=dict(weeks=weeks, window=window, horizon=horizon, n_replicates=n_replicates,
                     seed=seed, stay_home=stay_home, reporting=reporting,
                     dispersion=dispersion, split=list(split), first_week=str(COVID_START)),
    )


def make_covid_bogota_synthetic(*, weeks: int = 104, window: int = 12, horizon: int = 4,
                                n_replicates: int = 1, seed: int = 0, stay_home: float = 0.8,
                                reporting: float = 0.12, dispersion: float = 10.0,
                                split: Sequence[float] = (0.6, 0.2, 0.2)) -> Task:
    """SYNTHETIC COVID-19 weekly cases on Bogotá's 19 urban localidades (SEIR metapopulation)."""
    return _make_covid_synthetic(
        "bogota", BOGOTA_LOCALIDADES, "localidad", "Bogotá", weeks=weeks, window=window,
        horizon=horizon, n_replicates=n_replicates, seed=seed, stay_home=stay_home,
        reporting=reporting, dispersion=dispersion, split=split)


def make_covid_medellin_synthetic(*, weeks: int = 104, window: int = 12, horizon: int = 4,
                                  n_replicates: int = 1, seed: int = 0, stay_home: float = 0.8,
                                  reporting: float = 0.12, dispersion: float = 10.0,
                                  split: Sequence[float] = (0.6, 0.2, 0.2)) -> Task:
    """SYNTHETIC COVID-19 weekly cases on Medellín's 16 comunas (SEIR metapopulation)."""
    return _make_covid_synthetic(
        "medellin", MEDELLIN_COMUNAS, "comuna", "Medellín", weeks=weeks, window=window,
        horizon=horizon, n_replicates=n_replicates, seed=seed, stay_home=stay_home,
        reporting=reporting, dispersion=dispersion, split=split)


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
~0.85) and "population" (P,). {_PLACEHOLDER}
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
