"""Curtin's solid-solution strengthening theory of high-entropy alloys, as numpy functions.

Varvenne–Curtin (FCC) and Maresca–Curtin (BCC edge dislocations) yield stress from the
composition, the elements' apparent volumes and the alloy's elastic moduli, with the
published coefficients. :mod:`nimm_jupyter.tasks.hea` uses them as the tasks' reference
physics (its torch ``prior_code`` is the same physics with trainable coefficients).
"""
from __future__ import annotations

import math

import numpy as np

from .elements import voigt_isotropic

__all__ = ["curtin_fcc_yield", "curtin_bcc_yield", "alloy_moduli_fcc", "alloy_moduli_bcc",
           "FCC_COEFFICIENTS", "BCC_COEFFICIENTS", "K_B_EV", "GPA_A3_IN_EV", "REF_STRAIN_RATE",
           "TEST_STRAIN_RATE"]

K_B_EV = 8.617333262e-5  # Boltzmann constant, eV/K
GPA_A3_IN_EV = 1e9 * 1e-30 / 1.602176634e-19  # 1 GPa·Å^3 in eV

# Published coefficients. FCC: Varvenne, Luque & Curtin, Acta Mater. 118 (2016) 164 and
# Varvenne et al., Acta Mater. 124 (2017) 660. BCC: Maresca & Curtin, Acta Mater. 182 (2020)
# 235 (0.040 = 0.051 f1 and 2.00 = 0.274 f2 with the BCC f1 = 0.7844, f2 = 7.2993).
FCC_COEFFICIENTS = {"tau_coef": 0.051 * 0.35, "energy_coef": 0.274 * 5.70, "alpha": 0.123,
                    "taylor": 3.06}
BCC_COEFFICIENTS = {"tau_coef": 0.040, "energy_coef": 2.00, "alpha": 1.0 / 12.0,
                    "taylor": 3.067}
REF_STRAIN_RATE = 1e4  # 1/s, reference rate of the thermal-activation law
TEST_STRAIN_RATE = 1e-3  # 1/s, a typical quasi-static test


def alloy_moduli_fcc(c: np.ndarray, mu_n: np.ndarray, nu_n: np.ndarray):
    """Rule-of-mixtures alloy shear modulus (GPa) and Poisson ratio."""
    c = np.asarray(c, dtype=float)
    return c @ np.asarray(mu_n, float), c @ np.asarray(nu_n, float)


def alloy_moduli_bcc(c: np.ndarray, C11: np.ndarray, C12: np.ndarray, C44: np.ndarray):
    """Voigt isotropic moduli of the rule-of-mixtures alloy C_ij (SSPredict's scheme)."""
    c = np.asarray(c, dtype=float)
    return voigt_isotropic(c @ np.asarray(C11, float), c @ np.asarray(C12, float),
                           c @ np.asarray(C44, float))


def _curtin_yield(c, V_n, mu, nu, T, lattice: str, coef: dict[str, float],
                  strain_rate: float, ref_rate: float) -> np.ndarray:
    c = np.atleast_2d(np.asarray(c, dtype=float))
    V_n = np.asarray(V_n, dtype=float)
    if c.shape[-1] != V_n.shape[0]:
        raise ValueError(f"composition has {c.shape[-1]} elements but V_n has {V_n.shape[0]}")
    c = c / c.sum(-1, keepdims=True)
    mu = np.asarray(mu, float).reshape(-1)
    nu = np.asarray(nu, float).reshape(-1)
    T = np.asarray(T, float).reshape(-1)
    v_bar = c @ V_n
    if lattice == "fcc":
        b = (4.0 * v_bar) ** (1 / 3) / math.sqrt(2.0)  # a/√2, Å
    else:
        b = math.sqrt(3.0) / 2.0 * (2.0 * v_bar) ** (1 / 3)  # (√3/2) a, Å
    S = np.maximum((c * (V_n - v_bar[:, None]) ** 2).sum(-1) / b**6, 1e-30)
    q = (1.0 + nu) / (1.0 - nu)
    alpha = coef["alpha"]
    tau0 = coef["tau_coef"] * alpha ** (-1 / 3) * mu * 1e3 * q ** (4 / 3) * S ** (2 / 3)  # MPa
    dEb = (coef["energy_coef"] * alpha ** (1 / 3) * mu * b**3 * q ** (2 / 3) * S ** (1 / 3)
           * GPA_A3_IN_EV)  # eV
    theta = K_B_EV * T / dEb * math.log(ref_rate / strain_rate)
    low = 1.0 - theta ** (2 / 3)
    tau = np.where(low >= 0.5, tau0 * low, tau0 * np.exp(-theta / 0.55))
    return coef["taylor"] * tau


def curtin_fcc_yield(c, V_n, mu, nu, T, *, strain_rate: float = TEST_STRAIN_RATE,
                     ref_rate: float = REF_STRAIN_RATE) -> np.ndarray:
    """Varvenne–Curtin solid-solution yield stress σ_ss = M τ_y(T) of FCC alloys, MPa.

    ``c``: (N, E) atomic fractions; ``V_n``: (E,) apparent volumes (Å^3); ``mu`` (GPa) and
    ``nu``: alloy shear modulus and Poisson ratio (scalar or (N,)); ``T``: kelvin.
    """
    return _curtin_yield(c, V_n, mu, nu, T, "fcc", FCC_COEFFICIENTS, strain_rate, ref_rate)


def curtin_bcc_yield(c, V_n, mu, nu, T, *, strain_rate: float = TEST_STRAIN_RATE,
                     ref_rate: float = REF_STRAIN_RATE) -> np.ndarray:
    """Maresca–Curtin edge-dislocation yield stress σ_y = M τ_y(T) of BCC alloys, MPa.

    Same arguments as :func:`curtin_fcc_yield`; BCC geometry (b = √3 a / 2) and coefficients.
    """
    return _curtin_yield(c, V_n, mu, nu, T, "bcc", BCC_COEFFICIENTS, strain_rate, ref_rate)
