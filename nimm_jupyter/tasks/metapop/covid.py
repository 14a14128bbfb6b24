"""SYNTHETIC COVID-19 stand-ins for COVID-Bogotá and COVID-Medellín (the real series is not public).

A stochastic (binomial tau-leap, one step per day) metapopulation SEIR with slow waning
immunity on the 19 urban localidades of Bogotá or the 16 comunas of Medellín; commuting by a
gravity model; a piecewise-constant transmission rate β(t) with lockdowns (a known stringency
level, the task's ``npi_level`` input) and variant waves (hidden); weekly reported cases
~ NegBin(ρ·incidence, k). Populations and centroids are placeholders (see ``metapop``).
Each task carries held-out intervention scenarios: the same simulator under npi schedules no
split contains (:mod:`.scenarios`).
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from ..base import DataSource, Task, Variable
from .core import PLACEHOLDER, Patch, distances_km, gravity_mobility, model_code, windowed_task
from .scenarios import covid_scenarios, scenario_seed

__all__ = [
    "make_covid_bogota_synthetic", "make_covid_medellin_synthetic", "npi_schedule",
    "simulate_covid", "covid_description", "BOGOTA_LOCALIDADES", "MEDELLIN_COMUNAS",
    "COVID_PRIOR_CODE", "COVID_PRIOR_OMITS", "COVID_HYBRID_CODE",
]

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
                   seed: int | np.random.SeedSequence, stay_home: float = 0.8, r0: float = 2.6,
                   latent_days: float = 4.0, infectious_days: float = 7.0,
                   immunity_days: float = 300.0, reporting: float = 0.12,
                   dispersion: float = 10.0, awareness: float = 25.0,
                   npi: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Simulate weekly reported cases ``(R, weeks, P)`` and the weekly npi level ``(weeks,)``.

    ``npi`` (optional, ``(R, 7 * weeks)``) replaces the city's daily npi level, one schedule
    per replicate (the held-out scenarios); the hidden multipliers stay the city's. The
    weekly level returned is then ``(R, weeks)``.
    """
    rng = np.random.default_rng(seed)
    pop = np.array([p.population for p in patches], dtype=np.int64)
    mobility = gravity_mobility(pop, distances_km(patches), stay_home)
    R, P, D = n_replicates, len(patches), 7 * weeks
    days = COVID_START + np.arange(D)
    scheduled, mult = npi_schedule(days, city)
    if npi is None:
        npi = scheduled
    elif np.shape(npi) != (R, D):
        raise ValueError(f"npi must be (n_replicates, 7 * weeks) = {(R, D)}, got {np.shape(npi)}")
    gamma, sigma, omega = 1.0 / infectious_days, 1.0 / latent_days, 1.0 / immunity_days
    # (R, D): the city's schedule for every replicate, or one override row per replicate
    beta = np.broadcast_to(r0 * gamma * (1.0 - NPI_EFFICACY * np.asarray(npi)) * mult, (R, D))
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
        force = beta[:, d, None] * caution * (prevalence @ mobility.T)  # residents' force
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
    npi_week = np.asarray(npi).reshape(*np.shape(npi)[:-1], weeks, 7).mean(axis=-1)
    return {"cases": cases, "npi": npi_week, "mobility": mobility,
            "population": pop.astype(np.float64), "incidence": weekly}



# -- candidate code (docs/CANDIDATES.md contract; original units, weekly data) -------------
COVID_PRIOR_CODE = model_code("covid_prior")
COVID_PRIOR_OMITS = (
    "constant transmission: no intervention (npi_level) effect, no behavioural response, "
    "no variants or waning immunity; one susceptible share for all patches; reporting "
    "fraction constant in time."
)
COVID_HYBRID_CODE = model_code("covid_hybrid")


# -- task assembly ---------------------------------------------------------------------------
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
                                    PLACEHOLDER)
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
    task = windowed_task(
        name=f"covid_{city}_synthetic", description=description, source=DataSource.SYNTHETIC,
        provenance=provenance, targets=targets, inputs=inputs, counts=sim["cases"], exog=exog,
        constants={"mobility": sim["mobility"], "population": sim["population"]},
        window=window, horizon=horizon, split=split, prior_code=COVID_PRIOR_CODE,
        prior_omits=COVID_PRIOR_OMITS, hybrid_code=COVID_HYBRID_CODE,
        options=dict(weeks=weeks, window=window, horizon=horizon, n_replicates=n_replicates,
                     seed=seed, stay_home=stay_home, reporting=reporting,
                     dispersion=dispersion, split=list(split), first_week=str(COVID_START)),
    )
    days = COVID_START + np.arange(7 * weeks)

    def rerun(npi: np.ndarray) -> dict[str, np.ndarray]:  # the task's simulator, another seed
        return simulate_covid(patches, city, weeks, npi.shape[0], scenario_seed(seed),
                              stay_home=stay_home, reporting=reporting, dispersion=dispersion,
                              npi=npi)

    return dataclasses.replace(task, scenarios=covid_scenarios(
        rerun, days, npi_schedule(days, city)[0], _COVID_PERIODS[city], window, horizon))


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


