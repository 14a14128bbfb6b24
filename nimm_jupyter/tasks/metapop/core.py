"""Shared metapopulation core for the synthetic COVID and MRSA tasks (and the real Bogotá one).

Spatial units (:class:`Patch`), great-circle distances, the gravity commuting model, the
chronological window cutter every weekly-count task uses, and the loader of the candidate
model sources kept as ``.py`` resources under ``models/``.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any, Sequence

import numpy as np

from ..base import DataSource, Split, Task, TaskKind, Variable
from ..splits import chronological_windows

__all__ = ["Patch", "distances_km", "gravity_mobility", "windowed_task", "model_code",
           "PLACEHOLDER"]


@dataclass(frozen=True)
class Patch:
    """A spatial unit: identifier (no spaces), display name, placeholder population, centroid."""

    ident: str
    name: str
    population: int
    lat: float
    lon: float


def model_code(name: str) -> str:
    """The candidate source ``models/<name>.py`` exactly as a proposer and the harness get it.

    The models are kept as real files (readable, lintable) instead of strings; they are
    resources, not modules of this package: ``models/`` has no ``__init__.py`` on purpose,
    so nothing imports them and the task layer does not depend on ``nimm_jupyter.blocks``.
    """
    return (resources.files(__package__) / "models" / f"{name}.py").read_text(encoding="utf-8")


# -- geography ---------------------------------------------------------------------------------
def distances_km(patches: Sequence[Patch]) -> np.ndarray:
    """Great-circle distances (km) between the patches' centroids, ``(P, P)``."""
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
        return Split(inputs=u, targets=y, groups=np.tile(idx, R), window_start=np.tile(idx, R))

    return Task(
        name=name, kind=TaskKind.TRAJECTORY, description=description, source=source,
        provenance=provenance, inputs=inputs, targets=targets,
        train=cut(starts["train"]), val=cut(starts["val"]), test=cut(starts["test"]),
        prior_code=prior_code, prior_omits=prior_omits, hybrid_code=hybrid_code,
        family=family, time=np.arange(T, dtype=np.float64), context=window,
        constants=constants, options=options,
    )


PLACEHOLDER = ("Populations and centroid coordinates behind both are round placeholder "
               "approximations, not official figures.")
