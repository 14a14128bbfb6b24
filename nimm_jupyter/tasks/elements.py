"""Elemental constants for the Curtin-type solid-solution strengthening models.

These are physical facts carried by the project (never read from the data folder at run
time). Sources, by field:

* ``V_fcc`` (Å^3): apparent atomic volume of the element inside an FCC alloy. Co, Ni, Mn,
  Fe, Cr, Al: the values used by Varvenne et al., Acta Mater. 118 (2016) 164, as given in the
  SSPredict example inputs (D. Wen, M. S. Titus, github.com/DS-Wen/SSPredict). Cu: from its
  own FCC lattice constant (a^3/4, CRC Handbook). Other elements: their native-structure
  atomic volume (CRC lattice constants), marked ``estimated``.
* ``V_bcc`` (Å^3): apparent atomic volume inside a BCC alloy. Mo, Nb, Ta, V, W: the
  Maresca–Curtin inputs in the SSPredict MoNbTaVW example; Cr, Fe: BCC lattice constants
  (a^3/2, CRC). Others: native-structure volumes, marked ``estimated``.
* ``mu`` (GPa), ``nu``: isotropic polycrystal shear modulus and Poisson ratio at room
  temperature (CRC Handbook of Chemistry and Physics; Kaye & Laby; as collected in
  D. N. Blaschke's PyDislocDyn ``metal_data``).
* ``C11``, ``C12``, ``C44`` (GPa): single-crystal elastic constants at room temperature (CRC
  "Elastic Constants for Single Crystals") for cubic elements. Non-cubic elements get the
  isotropic-equivalent cubic constants C44 = mu, C12 = lambda, C11 = lambda + 2 mu (so a
  Voigt average returns their ``mu`` and ``nu``), marked ``estimated``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Element", "ELEMENTS", "element", "element_arrays", "voigt_isotropic"]


@dataclass(frozen=True)
class Element:
    """Constants of one chemical element (units in the module docstring)."""

    symbol: str
    V_fcc: float
    V_bcc: float
    mu: float
    nu: float
    C11: float
    C12: float
    C44: float
    estimated: tuple[str, ...] = ()  # names of the fields that are estimates
    note: str = ""
    structure: str = ""  # room-temperature crystal structure of the pure element

    def __post_init__(self) -> None:
        bad = [f for f in self.estimated if f not in _FIELDS]
        if bad:
            raise ValueError(f"{self.symbol}: unknown estimated field(s) {bad}")


_FIELDS = ("V_fcc", "V_bcc", "mu", "nu", "C11", "C12", "C44")


def _iso_cubic(mu: float, nu: float) -> tuple[float, float, float]:
    """Cubic constants of an isotropic solid with shear modulus ``mu`` and Poisson ``nu``."""
    lam = 2.0 * mu * nu / (1.0 - 2.0 * nu)
    return round(lam + 2.0 * mu, 2), round(lam, 2), mu


def _el(symbol: str, structure: str, V_fcc: float, V_bcc: float, mu: float, nu: float,
        cij: tuple[float, float, float] | None, estimated: tuple[str, ...] = (),
        note: str = "") -> Element:
    est = tuple(estimated)
    if cij is None:  # non-cubic element: isotropic-equivalent constants
        cij = _iso_cubic(mu, nu)
        est = est + ("C11", "C12", "C44")
    return Element(symbol, V_fcc, V_bcc, mu, nu, *cij, estimated=est, note=note,
                   structure=structure)


_NATIVE = "native-structure atomic volume from the CRC lattice constants"

ELEMENTS: dict[str, Element] = {e.symbol: e for e in [
    _el("Al", "fcc", 16.472, 16.603, 26.1, 0.345, (106.75, 60.41, 28.34), ("V_bcc",),
        f"V_fcc from Varvenne et al. 2016 (SSPredict); V_bcc = {_NATIVE} (fcc Al)"),
    _el("C", "interstitial", 19.0, 19.0, 80.0, 0.29, None, ("V_fcc", "V_bcc", "mu", "nu"),
        "interstitial solute treated as an effective substitutional one: V from the austenite "
        "lattice dilatation (da/dw ~ 0.033 Å per wt% C, i.e. ~7 Å^3 above the Fe site volume); "
        "mu, nu are matrix-like placeholders so rule-of-mixtures averages are unchanged"),
    _el("Co", "hcp", 11.12, 11.074, 74.8, 0.31, None, ("V_bcc",),
        f"V_fcc from Varvenne et al. 2016 (SSPredict); V_bcc = {_NATIVE} (hcp Co)"),
    _el("Cr", "bcc", 12.27, 12.004, 115.4, 0.21, (339.8, 58.6, 99.0), (),
        "V_fcc from Varvenne et al. 2016 (SSPredict); V_bcc from a = 2.8848 Å"),
    _el("Cu", "fcc", 11.807, 11.807, 48.3, 0.343, (168.3, 121.2, 75.7), ("V_bcc",),
        f"V_fcc from a = 3.6146 Å; V_bcc = {_NATIVE}"),
    _el("Fe", "bcc", 12.09, 11.777, 81.6, 0.293, (226.0, 140.0, 116.0), (),
        "V_fcc from Varvenne et al. 2016 (SSPredict); V_bcc from a = 2.8665 Å"),
    _el("Hf", "hcp", 22.35, 22.35, 30.0, 0.37, None, ("V_fcc", "V_bcc", "mu", "nu"),
        "hcp Hf (a = 3.1964 Å, c = 5.0511 Å) volume; mu = 30 GPa, nu = 0.37 (handbook "
        "polycrystal values, not in the PyDislocDyn table); bcc beta-Hf volume differs by ~1%"),
    _el("Mg", "hcp", 23.240, 23.240, 17.3, 0.291, None, ("V_fcc", "V_bcc"),
        f"{_NATIVE} (hcp Mg)"),
    _el("Mn", "cubic (alpha-Mn)", 12.60, 12.21, 73.4, 0.347, None, ("V_bcc", "mu", "nu"),
        "V_fcc, mu, nu as used for fcc Mn by Varvenne et al. 2016 (SSPredict inputs); V_bcc = "
        "alpha-Mn volume (a = 8.9125 Å, 58 atoms per cell)"),
    _el("Mo", "bcc", 15.583, 15.443, 124.0, 0.2947, (463.7, 157.8, 109.2), ("V_fcc",),
        f"V_bcc from the Maresca–Curtin MoNbTaVW inputs (SSPredict); V_fcc = {_NATIVE}"),
    _el("Nb", "bcc", 17.975, 17.645, 37.5, 0.397, (246.5, 134.5, 28.73), ("V_fcc",),
        f"V_bcc from the Maresca–Curtin MoNbTaVW inputs (SSPredict); V_fcc = {_NATIVE}"),
    _el("Ni", "fcc", 10.94, 10.941, 76.0, 0.312, (248.1, 154.9, 124.2), ("V_bcc",),
        f"V_fcc from Varvenne et al. 2016 (SSPredict); V_bcc = {_NATIVE} (fcc Ni)"),
    _el("Re", "hcp", 14.71, 14.71, 178.0, 0.30, None, ("V_fcc", "V_bcc", "mu", "nu"),
        "hcp Re (a = 2.761 Å, c = 4.456 Å) volume; mu = 178 GPa, nu = 0.30 (handbook values, "
        "not in the PyDislocDyn table)"),
    _el("Si", "diamond", 13.0, 13.0, 66.5, 0.22, (165.7, 63.9, 79.6),
        ("V_fcc", "V_bcc", "mu", "nu", "C11", "C12", "C44"),
        "V from the 12-coordinated metallic radius (1.32 Å; diamond Si's own 20 Å^3 would "
        "exaggerate its misfit in a metal); mu, nu = Hill average of the diamond-Si single "
        "crystal constants, which are given as C_ij"),
    _el("Ta", "bcc", 18.018, 17.970, 69.2, 0.342, (260.2, 154.4, 82.55), ("V_fcc",),
        f"V_bcc from the Maresca–Curtin MoNbTaVW inputs (SSPredict); V_fcc = {_NATIVE}"),
    _el("Ti", "hcp", 17.656, 17.656, 43.8, 0.321, None, ("V_fcc", "V_bcc"),
        f"{_NATIVE} (hcp Ti); the bcc beta-Ti volume extrapolated to room temperature is "
        "within ~1-2%"),
    _el("V", "bcc", 13.827, 14.852, 46.7, 0.3655, (228.7, 119.0, 43.2), ("V_fcc",),
        f"V_bcc from the Maresca–Curtin MoNbTaVW inputs (SSPredict); V_fcc = {_NATIVE}"),
    _el("W", "bcc", 15.855, 16.066, 160.6, 0.28, (522.39, 204.37, 160.58), ("V_fcc",),
        f"V_bcc from the Maresca–Curtin MoNbTaVW inputs (SSPredict); V_fcc = {_NATIVE}"),
    _el("Zn", "hcp", 15.214, 15.214, 43.4, 0.249, None, ("V_fcc", "V_bcc"),
        f"{_NATIVE} (hcp Zn)"),
    _el("Zr", "hcp", 23.277, 23.277, 36.0, 0.33, None, ("V_fcc", "V_bcc"),
        f"{_NATIVE} (hcp Zr); bcc beta-Zr differs by ~1-2%"),
]}


def element(symbol: str) -> Element:
    """The constants of ``symbol``; a clear error names elements the table lacks."""
    try:
        return ELEMENTS[symbol]
    except KeyError:
        raise KeyError(
            f"element {symbol!r} is not in the project's element table "
            f"(known: {', '.join(sorted(ELEMENTS))})"
        ) from None


def element_arrays(symbols: list[str], fields: tuple[str, ...]) -> dict[str, np.ndarray]:
    """``{field: (E,) float array}`` for ``symbols`` in the given order."""
    unknown = [f for f in fields if f not in _FIELDS]
    if unknown:
        raise ValueError(f"unknown element field(s) {unknown}; choose from {_FIELDS}")
    rows = [element(s) for s in symbols]
    return {f: np.array([getattr(r, f) for r in rows], dtype=np.float64) for f in fields}


def voigt_isotropic(C11, C12, C44):
    """Voigt isotropic shear modulus and Poisson ratio of cubic constants (arrays or floats).

    mu = (C11 - C12 + 3 C44)/5, B = (C11 + 2 C12)/3, nu = (3B - 2mu) / (2(3B + mu)).
    """
    mu = (C11 - C12 + 3.0 * C44) / 5.0
    B = (C11 + 2.0 * C12) / 3.0
    nu = (3.0 * B - 2.0 * mu) / (2.0 * (3.0 * B + mu))
    return mu, nu

