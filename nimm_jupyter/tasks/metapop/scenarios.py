"""Held-out intervention scenarios of the synthetic COVID tasks (issue 20 item 3).

``npi_level`` is the input a modeller controls: every split follows the city's one schedule
of lockdowns (:func:`~.covid.npi_schedule`). A model that learnt how interventions act on
transmission should also forecast the epidemic under a schedule no split contains; one that
learnt the calendar's correlations should not. The same simulator (same constants, same
hidden variant and behaviour multipliers) is re-run under three changed schedules:

* ``no_interventions``: ``npi_level`` 0 on every day;
* ``lockdown_kept``: the first lockdown's level 1 held until 2020-09-01;
* ``strict_variant_wave``: level 1 through the schedule period in which the more
  transmissible variants arrive (the first one whose hidden multiplier exceeds 1.2:
  12 weeks from April 2021 in both cities).

Each scenario is a fresh cohort of :data:`SCENARIO_REPLICATES` stochastic epidemics (a seed
stream of its own, :func:`scenario_seed`, so the task's splits are exactly what they are
without scenarios), cut into **non-overlapping** windows of ``window + horizon`` weeks (stride
``window + horizon``), keeping the windows that end at or after the first changed week (the
change and its aftermath; earlier weeks are the task's own regime). No window's context holds
another window's targets, so hiding each window's forecast weeks hides every target and the
windows carry no ``window_start`` (they need no reveal).

The MRSA stand-in has no scenarios: its only inputs are seasonal, with no intervention a
modeller sets, and a cut in patient transfers would change the constants a model reads when
it is built, which is not an input schedule.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..base import Scenario, Split

__all__ = ["covid_scenarios", "npi_changes", "scenario_seed", "SCENARIO_REPLICATES",
           "LOCKDOWN_KEPT_UNTIL"]

SCENARIO_REPLICATES = 8  # epidemics per scenario (x up to 6 windows of 16 weeks in 104 weeks)
LOCKDOWN_KEPT_UNTIL = np.datetime64("2020-09-01")
_VARIANT_MULTIPLIER = 1.2  # a period with a hidden multiplier above this: variants arrived

# (daily npi_level of a cohort of replicates) -> the simulator's weekly output
Simulate = Callable[[np.ndarray], dict[str, np.ndarray]]


def scenario_seed(seed: int) -> np.random.SeedSequence:
    """The scenarios' seed stream: a spawned child of the task's seed, so it never repeats
    the draws of ``default_rng(seed)`` that made the splits, and consumes none of them."""
    return np.random.SeedSequence(int(seed)).spawn(1)[0]


def npi_changes(days: np.ndarray, npi: np.ndarray,
                periods: Sequence[tuple[str, float, float]]) -> dict[str, tuple[np.ndarray, str]]:
    """Scenario name -> (its daily ``npi_level`` on ``days``, what was changed), from the
    task's daily level ``npi`` and the city's schedule ``periods`` (start, level, multiplier)."""
    days = np.asarray(days, dtype="datetime64[D]")
    starts = [np.datetime64(s) for s, _, _ in periods]
    lockdown = next(s for s, (_, level, _) in zip(starts, periods) if level >= 1.0)
    wave = next(i for i, (_, _, mult) in enumerate(periods) if mult > _VARIANT_MULTIPLIER)
    wave_end = starts[wave + 1] if wave + 1 < len(starts) else days[-1] + 1
    kept = (days >= lockdown) & (days < LOCKDOWN_KEPT_UNTIL)
    strict = (days >= starts[wave]) & (days < wave_end)
    return {
        "no_interventions": (np.zeros_like(npi), "npi_level 0 on every day"),
        "lockdown_kept": (np.where(kept, 1.0, npi),
                          f"the first lockdown's level 1 from {lockdown} until "
                          f"{LOCKDOWN_KEPT_UNTIL}"),
        "strict_variant_wave": (np.where(strict, 1.0, npi),
                                f"level 1 from {starts[wave]} until {wave_end}, while the "
                                "more transmissible variants arrive"),
    }


def window_starts(n_weeks: int, first_week: int | None, window: int, horizon: int) -> list[int]:
    """Starts of the non-overlapping windows (stride ``window + horizon``) of an
    ``n_weeks`` series that end at or after ``first_week`` (none if ``first_week`` is None)."""
    T = window + horizon
    if first_week is None:
        return []
    return [s for s in range(0, n_weeks - T + 1, T) if s + T > first_week]


def scenario_split(cases: np.ndarray, npi_week: np.ndarray, starts: list[int], T: int,
                   name: str) -> Split:
    """The windows of ``T`` weeks at ``starts`` of ``cases`` ``(R, W, P)`` and their weekly
    level ``npi_week`` ``(R, W)``, replicate by replicate."""
    take = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(T)[None, :]  # (n, T)
    R = cases.shape[0]
    y = cases[:, take].reshape(R * len(starts), T, cases.shape[2])
    u = npi_week[:, take].reshape(R * len(starts), T, 1)
    groups = np.array([f"{name}-r{r}-w{s}" for r in range(R) for s in starts])
    return Split(inputs=u.astype(np.float64), targets=y.astype(np.float64), groups=groups)


def covid_scenarios(simulate: Simulate, days: np.ndarray, npi: np.ndarray,
                    periods: Sequence[tuple[str, float, float]], window: int,
                    horizon: int) -> dict[str, Scenario]:
    """The scenarios of one COVID task (see the module docstring); a scenario without a
    window (its change after the task's last window) is left out. ``simulate`` runs the
    task's simulator on the scenarios' seed stream for a ``(R, D)`` daily level; all
    scenarios are one batch of replicates (one simulation costs about as much as one)."""
    n, T, weeks = SCENARIO_REPLICATES, window + horizon, len(days) // 7
    kept: dict[str, tuple[np.ndarray, str, list[int]]] = {}
    for name, (level, desc) in npi_changes(days, npi, periods).items():
        changed = np.flatnonzero(level != npi)
        starts = window_starts(weeks, int(changed[0]) // 7 if changed.size else None, window,
                               horizon)
        if starts:
            kept[name] = (level, desc, starts)
    if not kept:
        return {}
    sim = simulate(np.concatenate([np.broadcast_to(level, (n, len(days)))
                                   for level, _, _ in kept.values()]))
    out: dict[str, Scenario] = {}
    for k, (name, (_, desc, starts)) in enumerate(kept.items()):
        rows = slice(k * n, (k + 1) * n)
        out[name] = Scenario(
            split=scenario_split(sim["cases"][rows], sim["npi"][rows], starts, T, name),
            description=f"{desc} ({n} simulated epidemics, {len(starts)} non-overlapping "
                        f"windows of {T} weeks each)")
    return out
