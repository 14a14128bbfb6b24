"""SYNTHETIC metapopulation stand-ins for COVID-Bogotá, COVID-Medellín and MRSA-Virginia.

The real data behind these NIMM tasks is not public (see the PROVENANCE.md of each in the
data directory). Following the designs written there, the package simulates them:

* :mod:`.covid`: a stochastic metapopulation SEIR on Bogotá's localidades or Medellín's comunas.
* :mod:`.scenarios`: the COVID tasks' held-out intervention scenarios (changed npi schedules).
* :mod:`.mrsa`: community + healthcare S/C/I compartments on 20 aggregated regions of Virginia.
* :mod:`.core`: what both share (patches, distances, the gravity commuting model, the window
  cutter) and the loader of the candidate models, kept as ``.py`` resources in ``models/``.

Populations and centroid coordinates are round placeholder approximations, not official
figures; the task descriptions say so. Every task built here is labelled ``synthetic``.

Task layout (shared with :func:`nimm_jupyter.tasks.bogota.make_covid_bogota`): one target
per patch (cases/week), samples are windows of ``window + horizon`` weeks, the first
``window`` weeks are context, and the split is chronological on the forecast weeks.
"""
from __future__ import annotations

from .core import Patch, gravity_mobility, windowed_task
from .covid import (BOGOTA_LOCALIDADES, COVID_HYBRID_CODE, COVID_PRIOR_CODE, MEDELLIN_COMUNAS,
                    make_covid_bogota_synthetic, make_covid_medellin_synthetic, npi_schedule,
                    simulate_covid)
from .mrsa import (MRSA_HYBRID_CODE, MRSA_PRIOR_CODE, VIRGINIA_REGIONS,
                   make_mrsa_virginia_synthetic, simulate_mrsa)

__all__ = [
    "make_covid_bogota_synthetic", "make_covid_medellin_synthetic",
    "make_mrsa_virginia_synthetic", "gravity_mobility", "npi_schedule", "simulate_covid",
    "simulate_mrsa", "windowed_task", "Patch", "BOGOTA_LOCALIDADES", "MEDELLIN_COMUNAS",
    "VIRGINIA_REGIONS", "COVID_PRIOR_CODE", "COVID_HYBRID_CODE", "MRSA_PRIOR_CODE",
    "MRSA_HYBRID_CODE",
]
