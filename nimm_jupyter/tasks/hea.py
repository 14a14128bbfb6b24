"""High-entropy-alloy yield-strength tasks from the MPEA database (Borg et al. 2020).

* ``hea_fcc_rt``: single-phase FCC alloys tested at room temperature (15-30 °C); prior =
  Varvenne–Curtin solid-solution strengthening.
* ``hea_bcc_temp``: single-phase BCC alloys at any test temperature; prior = Maresca–Curtin
  edge-dislocation strengthening.

Both subsets are computed here from the raw database file (downloaded and verified by
:mod:`nimm_jupyter.tasks.data`); elemental constants come from
:mod:`nimm_jupyter.tasks.elements`. The published equations are numpy functions in
:mod:`nimm_jupyter.tasks.curtin`; the task's ``prior_code`` is the same physics as a
trainable torch candidate.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from .base import DataSource, Split, Task, TaskKind, Variable
from .data import fetch
from .curtin import BCC_COEFFICIENTS, FCC_COEFFICIENTS
from .elements import ELEMENTS, element_arrays

__all__ = [
    "make_hea_fcc_rt", "make_hea_bcc_temp", "load_mpea", "select_fcc_rt", "select_bcc",
    "parse_formula", "composition_key", "grouped_split", "within_group_rms",
]

# Raw-file columns (exact headers of MPEA_dataset.csv).
COL_FORMULA = "FORMULA"
COL_PHASE = "PROPERTY: BCC/FCC/other"
COL_MICRO = "PROPERTY: Microstructure"
COL_PROC = "PROPERTY: Processing method"
COL_TEST = "PROPERTY: Type of test"
COL_TEMP = "PROPERTY: Test temperature ($^\\circ$C)"
COL_YS = "PROPERTY: YS (MPa)"
COL_GRAIN = "PROPERTY: grain size ($\\mu$m)"
COL_DOI = "REFERENCE: doi"

_TOKEN = re.compile(r"^([A-Z][a-z]?)(\d+(?:\.\d*)?|\.\d+)$")


# -- compositions -----------------------------------------------------------------------
def parse_formula(formula: str) -> dict[str, float]:
    """Atomic fractions of a space-separated formula such as ``"Al0.25 Co1 Fe1 Ni1"``."""
    ratios: dict[str, float] = {}
    for tok in str(formula).split():
        m = _TOKEN.match(tok)
        if not m:
            raise ValueError(f"cannot parse token {tok!r} of formula {formula!r}")
        el, amount = m.group(1), float(m.group(2))
        ratios[el] = ratios.get(el, 0.0) + amount
    total = sum(ratios.values())
    if not ratios or total <= 0:
        raise ValueError(f"formula {formula!r} has no positive amounts")
    return {el: v / total for el, v in ratios.items()}


def composition_key(fractions: dict[str, float], digits: int = 4) -> str:
    """A normalised composition string (alphabetical, fractions rounded) used as a group."""
    return " ".join(f"{el}{fractions[el]:.{digits}f}" for el in sorted(fractions)
                    if round(fractions[el], digits) > 0)


# -- data selection ---------------------------------------------------------------------
def load_mpea(folder: str = "hea_fcc_rt_yield"):
    """The raw MPEA table (pandas DataFrame), fetched and verified through the data cache.

    The same file is registered under both task folders; ``folder`` picks which copy.
    """
    import pandas as pd

    return pd.read_csv(fetch(f"{folder}/MPEA_dataset_Borg2020.csv"))


def _select(df, phase: str, t_min_c: float | None, t_max_c: float | None):
    temp = df[COL_TEMP].astype(float)
    mask = (df[COL_PHASE] == phase) & df[COL_YS].notna() & temp.notna()
    if t_min_c is not None:
        mask &= temp >= t_min_c
    if t_max_c is not None:
        mask &= temp <= t_max_c
    out = df[mask].copy()
    out["row_id"] = out.index.to_numpy()  # 0-based data-row index in the raw file
    out["fractions"] = out[COL_FORMULA].map(parse_formula)
    out["composition"] = out["fractions"].map(composition_key)
    out["T_K"] = out[COL_TEMP].astype(float) + 273.15
    out["yield_strength"] = out[COL_YS].astype(float)
    return out.reset_index(drop=True)


def select_fcc_rt(df):
    """Single-phase FCC rows with a yield strength measured at 15-30 °C."""
    return _select(df, "FCC", 15.0, 30.0)


def select_bcc(df):
    """Single-phase BCC rows with a yield strength, at any test temperature."""
    return _select(df, "BCC", None, None)


def grouped_split(groups: Sequence[str], seed: int = 0,
                  fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)) -> np.ndarray:
    """Assign each row to 0/1/2 (train/val/test) so that no group spans two splits."""
    unique = sorted(set(groups))
    if len(unique) < 3:
        raise ValueError(f"need at least 3 distinct groups to split, got {len(unique)}")
    order = np.random.default_rng(seed).permutation(len(unique))
    n_train = max(1, int(round(fractions[0] * len(unique))))
    n_val = max(1, int(round(fractions[1] * len(unique))))
    n_train = min(n_train, len(unique) - 2)
    n_val = min(n_val, len(unique) - n_train - 1)
    which = {}
    for rank, idx in enumerate(order):
        which[unique[idx]] = 0 if rank < n_train else (1 if rank < n_train + n_val else 2)
    return np.array([which[g] for g in groups], dtype=np.int64)


# -- candidate sources ------------------------------------------------------------------
_HEADER = '''import math

import torch
from torch import nn
from nimm_jupyter.blocks import Positive{extra_import}

K_B_EV = 8.617333262e-5  # Boltzmann constant, eV/K
GPA_A3_IN_EV = 1e9 * 1e-30 / 1.602176634e-19  # 1 GPa*A^3 in eV
LOG_RATE = math.log(1e4 / 1e-3)  # ln(reference rate / quasi-static test rate)
'''

_CORE = '''
    def _setup_{lattice}(self, spec):
        n_el = spec.constants["V_n"].shape[0]
        self.n_el = n_el
        self.t_index = spec.input_names.index("T_K")
        self.register_buffer("V_n", spec.constants["V_n"])  # A^3, per element
{moduli_buffers}
        self.tau_coef = Positive({tau_coef!r})  # {tau_note}
        self.energy_coef = Positive({energy_coef!r})  # {energy_note}
        self.sigma0 = Positive({sigma0!r})  # MPa: base stress (lattice friction, grain size)
        self.alpha = {alpha!r}  # line-tension coefficient
        self.taylor = {taylor!r}  # Taylor factor

    def solid_solution(self, x):
        """{law} yield stress in MPa, from the published equations."""
        c = x[:, : self.n_el].clamp_min(0.0)
        c = c / c.sum(1, keepdim=True).clamp_min(1e-12)
        T = x[:, self.t_index : self.t_index + 1].clamp_min(1.0)
        v_bar = (c * self.V_n).sum(1, keepdim=True)
        b = {burgers}  # Burgers vector, A
        S = ((c * (self.V_n - v_bar) ** 2).sum(1, keepdim=True) / b**6).clamp_min(1e-12)
{moduli_lines}
        q = (1.0 + nu) / (1.0 - nu)
        tau0 = self.tau_coef() * self.alpha ** (-1 / 3) * mu * 1e3 * q ** (4 / 3) * S ** (2 / 3)
        dEb = (self.energy_coef() * self.alpha ** (1 / 3) * mu * b**3 * q ** (2 / 3)
               * S ** (1 / 3) * GPA_A3_IN_EV)  # energy barrier, eV
        theta = (K_B_EV * T / dEb.clamp_min(1e-6) * LOG_RATE).clamp(1e-9, 1e3)
        low = 1.0 - theta ** (2 / 3)
        tau = torch.where(low >= 0.5, tau0 * low, tau0 * torch.exp(-theta / 0.55))
        return self.taylor * tau
'''

_FCC = {
    "lattice": "fcc", "law": "Varvenne-Curtin FCC solid-solution",
    "burgers": "(4.0 * v_bar) ** (1 / 3) / math.sqrt(2.0)",
    "moduli_buffers": ('        self.register_buffer("mu_n", spec.constants["mu"])  # GPa\n'
                       '        self.register_buffer("nu_n", spec.constants["nu"])'),
    "moduli_lines": ("        mu = (c * self.mu_n).sum(1, keepdim=True)  # GPa, rule of mixtures\n"
                     "        nu = (c * self.nu_n).sum(1, keepdim=True)"),
    "tau_note": "0.051 f1 (Varvenne et al. 2016, f1 = 0.35)",
    "energy_note": "0.274 f2 (f2 = 5.70)",
    "sigma0": 100.0,  # typical base stress of coarse-grained FCC HEAs
    **FCC_COEFFICIENTS,
}

_BCC = {
    "lattice": "bcc", "law": "Maresca-Curtin BCC edge-dislocation",
    "burgers": "math.sqrt(3.0) / 2.0 * (2.0 * v_bar) ** (1 / 3)",
    "moduli_buffers": "\n".join(
        f'        self.register_buffer("{k}_n", spec.constants["{k}"])  # GPa'
        for k in ("C11", "C12", "C44")),
    "moduli_lines": (
        "        C11, C12, C44 = ((c * m).sum(1, keepdim=True) for m in (self.C11_n, self.C12_n, self.C44_n))\n"
        "        mu = (C11 - C12 + 3.0 * C44) / 5.0  # GPa, Voigt average of the alloy C_ij\n"
        "        bulk = (C11 + 2.0 * C12) / 3.0\n"
        "        nu = ((3.0 * bulk - 2.0 * mu) / (2.0 * (3.0 * bulk + mu))).clamp(0.05, 0.49)"),
    "tau_note": "0.040 (Maresca & Curtin 2020, alpha = 1/12)",
    "energy_note": "2.00",
    "sigma0": 200.0,  # typical base stress (lattice friction, grain size) of refractory HEAs
    **BCC_COEFFICIENTS,
}


def _prior_source(p: dict) -> str:
    doc = (f'    """{p["law"]} strengthening plus a fitted base stress sigma0.\n\n'
           '    The dimensionless coefficients start at the published values and are fitted.\n    """\n')
    return (_HEADER.format(extra_import="") + "\n\nclass Model(nn.Module):\n" + doc
            + "\n    def __init__(self, spec):\n        super().__init__()\n"
            f"        self._setup_{p['lattice']}(spec)\n"
            + _CORE.format(**p)
            + "\n    def forward(self, x):\n        return self.sigma0() + self.solid_solution(x)\n")


def _hybrid_source(p: dict) -> str:
    doc = (f'    """{p["law"]} prior with a neural correction.\n\n'
           "    An MLP on the normalised features rescales the solid-solution term (bounded factor\n"
           "    exp(±0.7), e.g. for softening moduli or short-range order) and adds a residual (grain\n"
           "    size, processing, test type). Its last layer starts at zero: the hybrid starts as the\n"
           '    prior.\n    """\n')
    return (_HEADER.format(extra_import=", mlp") + "\n\nclass Model(nn.Module):\n" + doc
            + "\n    def __init__(self, spec):\n        super().__init__()\n"
            f"        self._setup_{p['lattice']}(spec)\n"
            "        self.net = mlp(spec.n_inputs, 2, hidden=32)\n"
            '        self.register_buffer("x_mean", spec.input_mean.clone())\n'
            '        self.register_buffer("x_scale", spec.input_scale.clamp_min(1e-6))\n'
            "        self.y_scale = float(spec.target_scale[0])\n"
            + _CORE.format(**p)
            + "\n    def forward(self, x):\n"
            "        h = self.net((x - self.x_mean) / self.x_scale)\n"
            "        strength = self.solid_solution(x) * torch.exp(0.7 * torch.tanh(h[:, :1]))\n"
            "        return self.sigma0() + strength + self.y_scale * h[:, 1:2]\n")


# -- task construction ------------------------------------------------------------------
_MPEA_CITATION = (
    "C. K. H. Borg, C. Frey, J. Moh, T. M. Pollock, S. Gorsse, D. B. Miracle, O. N. Senkov, "
    "B. Meredig, J. E. Saal, 'Expanded dataset of mechanical properties and observed phases of "
    "multi-principal element alloys', Scientific Data 7, 430 (2020), "
    "doi:10.1038/s41597-020-00768-9 (data: CitrineInformatics/MPEA_dataset @ d31e2510, "
    "MPEA_dataset.csv, Apache-2.0; article CC-BY 4.0)."
)
_ELEMENTS_CITATION = (
    "Elemental constants: CRC Handbook of Chemistry and Physics and Kaye & Laby (isotropic "
    "moduli, single-crystal C_ij, lattice constants; as collected in D. N. Blaschke's PyDislocDyn), "
    "apparent volumes from the SSPredict inputs (D. Wen, M. S. Titus, github.com/DS-Wen/SSPredict); "
    "entries marked estimated in nimm_jupyter.tasks.elements are the project's own estimates."
)


PROCESSING = ("CAST", "WROUGHT", "ANNEAL", "POWDER", "OTHER")
CONDITIONS_TEXT = """\
Test conditions follow T_K as inputs: proc_cast/proc_wrought/proc_anneal/proc_powder/proc_other
(one-hot processing route), tension (1 = tension test, 0 = compression), log10_grain_um (0 when
unknown) and grain_known (1 when reported). The prior ignores them."""


def _condition_columns(rows) -> list[np.ndarray]:
    """Processing route, test type and grain size: what solid-solution theory leaves out."""
    import pandas as pd

    proc = rows[COL_PROC].fillna("OTHER").astype(str).str.upper()
    cols = [(proc == p).to_numpy(float) for p in PROCESSING]
    cols.append((rows[COL_TEST].astype(str).str.upper() == "T").to_numpy(float))
    grain = pd.to_numeric(rows[COL_GRAIN], errors="coerce").to_numpy(float)
    known = np.isfinite(grain) & (grain > 0)
    cols.append(np.where(known, np.log10(np.where(known, grain, 1.0)), 0.0))
    cols.append(known.astype(float))
    return cols


def _condition_variables() -> list[Variable]:
    return ([Variable(f"proc_{p.lower()}", "0/1", f"processing route {p} (one-hot)")
             for p in PROCESSING]
            + [Variable("tension", "0/1", "1 for a tension test, 0 for compression"),
               Variable("log10_grain_um", "log10(um)", "log10 grain size (0 when unknown)"),
               Variable("grain_known", "0/1", "1 when the grain size is reported")])


def _build(rows, elements: list[str], lattice: str, seed: int, conditions: bool):
    table = {el: np.array([f.get(el, 0.0) for f in rows["fractions"]]) for el in elements}
    x = np.column_stack([table[el] for el in elements] + [rows["T_K"].to_numpy(float)]
                        + (_condition_columns(rows) if conditions else []))
    y = rows["yield_strength"].to_numpy(float)[:, None]
    groups = rows["composition"].to_numpy(dtype=object)
    which = grouped_split(list(groups), seed=seed)
    splits = [Split(x[which == k], y[which == k], groups[which == k]) for k in range(3)]
    fields = ("V_fcc", "mu", "nu") if lattice == "fcc" else ("V_bcc", "mu", "nu", "C11", "C12", "C44")
    consts = element_arrays(elements, fields)
    consts["V_n"] = consts.pop("V_fcc" if lattice == "fcc" else "V_bcc")
    return splits, consts


def within_group_rms(values: np.ndarray, keys: Sequence) -> float:
    """RMS deviation of ``values`` from their group means: the error floor of any function
    of the group key (repeat measurements of one alloy differ by processing and grain size)."""
    values = np.asarray(values, float)
    _, inverse = np.unique(np.asarray([str(k) for k in keys]), return_inverse=True)
    means = np.bincount(inverse, values) / np.bincount(inverse)
    return float(np.sqrt(np.mean((values - means[inverse]) ** 2)))


def _element_count_range(rows) -> tuple[int, int]:
    counts = rows["fractions"].map(len)
    return int(counts.min()), int(counts.max())


def _drop_unknown_elements(rows):
    """Rows whose alloy contains an element missing from the element table are dropped."""
    known = rows["fractions"].map(lambda f: all(el in ELEMENTS for el in f))
    return rows[known].reset_index(drop=True), int((~known).sum())


def _estimated_note(elements: list[str], fields: tuple[str, ...]) -> str:
    parts = []
    for el in elements:
        est = [f for f in ELEMENTS[el].estimated if f in fields]
        if est:
            parts.append(f"{el} ({', '.join(est)})")
    return "; ".join(parts) if parts else "none"


def _variables(elements: list[str], t_desc: str, conditions: bool) -> list[Variable]:
    return ([Variable(f"x_{el}", "atomic fraction", f"atomic fraction of {el} (0-1; rows sum to 1)")
             for el in elements] + [Variable("T_K", "K", t_desc)]
            + (_condition_variables() if conditions else []))


def make_hea_fcc_rt(seed: int = 0, conditions: bool = True) -> Task:
    """FCC high-entropy alloys: room-temperature yield strength (MPEA, Borg et al. 2020)."""
    raw = load_mpea()
    rows, dropped = _drop_unknown_elements(select_fcc_rt(raw))
    elements = sorted({el for f in rows["fractions"] for el in f})
    (train, val, test), consts = _build(rows, elements, "fcc", seed, conditions)
    y = rows["yield_strength"].to_numpy()
    n_t = int((rows[COL_TEST] == "T").sum())
    floor = within_group_rms(y, rows["composition"])
    T = rows["T_K"].to_numpy()
    n_el_min, n_el_max = _element_count_range(rows)
    fields = ("V_fcc", "mu", "nu")
    description = f"""\
Room-temperature yield strength of single-phase FCC high-entropy alloys from composition.
Data: {len(rows)} measurements of {rows['composition'].nunique()} distinct compositions from the MPEA
database (Borg et al. 2020): alloys classified single-phase FCC, yield strength reported, test
temperature 15-30 °C ({n_t} tension, {len(rows) - n_t} compression tests; tests are mixed).
Inputs: the atomic fractions x_<El> of {len(elements)} elements ({', '.join(elements)}; each
row sums to 1; alloys have {n_el_min}-{n_el_max} elements) and the test temperature T_K ({T.min():.0f}-{T.max():.0f} K).
Target: yield_strength in MPa (range {y.min():.0f}-{y.max():.0f}, mean {y.mean():.0f}).
Constants per element, in the order of the x_ inputs: V_n (apparent atomic volume in an FCC
alloy, Å^3), mu (isotropic shear modulus, GPa), nu (Poisson ratio).
Splits: grouped by composition (an alloy never appears in two splits), random 70/15/15 of the
compositions with seed {seed}. The same composition often appears several times with different
processing or grain size; those differences are not in the inputs and set a noise floor: the
RMS spread of repeat measurements around their composition mean is {floor:.0f} MPa.
Mechanistic prior: Varvenne–Curtin solid-solution strengthening. With Vegard mean volume
V = sum c_n V_n, b = (4V)^(1/3)/sqrt(2), misfit S = sum c_n (V_n - V)^2 / b^6, alloy mu, nu by rule
of mixtures and q = (1+nu)/(1-nu): tau_y0 = 0.051 f1 alpha^(-1/3) mu q^(4/3) S^(2/3) and energy
barrier dEb = 0.274 f2 alpha^(1/3) mu b^3 q^(2/3) S^(1/3) (alpha = 0.123, f1 = 0.35, f2 = 5.70);
thermal activation at strain rate 1e-3/s (reference 1e4/s): theta = kT/dEb ln(1e7),
tau_y = tau_y0 (1 - theta^(2/3)) if that is >= tau_y0/2 else tau_y0 exp(-theta/0.55);
sigma = sigma0 + 3.06 tau_y, with the coefficients and the base stress sigma0 fitted.
For equiatomic CoCrFeMnNi (mu = 80 GPa, nu = 0.26) it gives about 118 MPa of solid-solution
strength; measured coarse-grained values are about 125-200 MPa.
Estimated elemental values: {_estimated_note(elements, fields)}."""
    return Task(
        name="hea_fcc_rt", kind=TaskKind.TABULAR, description=description + ("\n" + CONDITIONS_TEXT if conditions else ""),
        source=DataSource.REAL,
        provenance=(f"{_MPEA_CITATION} Subset computed by nimm_jupyter.tasks.hea: "
                    f"PROPERTY: BCC/FCC/other == FCC, YS reported, 15 <= T <= 30 °C. "
                    f"{_ELEMENTS_CITATION} Model: C. Varvenne, A. Luque, W. A. Curtin, Acta Mater. 118 "
                    "(2016) 164; C. Varvenne, G. P. M. Leyson, M. Ghazisaeidi, W. A. Curtin, Acta "
                    "Mater. 124 (2017) 660."),
        inputs=_variables(elements, "test temperature, K (room temperature here)", conditions),
        targets=[Variable("yield_strength", "MPa", "measured yield strength (0.2% offset)")],
        train=train, val=val, test=test,
        prior_code=_prior_source(_FCC),
        prior_omits=("grain size / Hall–Petch strengthening; processing route (cast, wrought, "
                     "annealed, powder); test type (tension vs compression); short-range order; "
                     "interstitial strengthening (C is treated as a substitutional solute with "
                     "an estimated volume); precipitates missed by the phase label; "
                     "alloy-specific (measured) elastic moduli"),
        hybrid_code=_hybrid_source(_FCC),
        family="alloy",
        constants=consts,
        options={"seed": seed, "conditions": conditions, "elements": elements,
                 "n_rows": len(rows),
                 "dropped_rows_unknown_elements": dropped},
    )


def make_hea_bcc_temp(seed: int = 0, conditions: bool = True) -> Task:
    """BCC (mostly refractory) high-entropy alloys: yield strength vs test temperature."""
    raw = load_mpea("hea_bcc_temp_yield")
    rows, dropped = _drop_unknown_elements(select_bcc(raw))
    elements = sorted({el for f in rows["fractions"] for el in f})
    (train, val, test), consts = _build(rows, elements, "bcc", seed, conditions)
    y = rows["yield_strength"].to_numpy()
    T = rows["T_K"].to_numpy()
    n_c = int((rows[COL_TEST] == "C").sum())
    floor = within_group_rms(y, zip(rows["composition"], rows["T_K"].round(0)))
    n_el_min, n_el_max = _element_count_range(rows)
    top = rows["T_K"].round(0).value_counts().head(5)
    common_T = ", ".join(f"{t:.0f} K ({n} rows)" for t, n in top.items())
    fields = ("V_bcc", "mu", "nu", "C11", "C12", "C44")
    description = f"""\
Yield strength of single-phase BCC high-entropy alloys versus composition and test temperature.
Data: {len(rows)} measurements of {rows['composition'].nunique()} distinct compositions from the MPEA
database (Borg et al. 2020): alloys classified single-phase BCC with a reported yield strength, at
any test temperature ({n_c} compression, {len(rows) - n_c} tension tests). Most are refractory alloys
(Nb, Mo, Ta, W, V, Ti, Zr, Hf, Cr, Al); some are AlCoCrFeNi-type BCC alloys.
Inputs: the atomic fractions x_<El> of {len(elements)} elements ({', '.join(elements)}; rows sum
to 1; alloys have {n_el_min}-{n_el_max} elements) and the test temperature T_K
({T.min():.0f}-{T.max():.0f} K; most common: {common_T}).
Target: yield_strength in MPa (range {y.min():.0f}-{y.max():.0f}, mean {y.mean():.0f}).
Constants per element, in the order of the x_ inputs: V_n (apparent atomic volume in a BCC alloy,
Å^3), mu (isotropic shear modulus, GPa), nu (Poisson ratio), C11, C12, C44 (single-crystal elastic
constants, GPa; isotropic-equivalent values for non-cubic elements).
Splits: grouped by composition (an alloy and all its temperatures stay in one split), random
70/15/15 of the compositions with seed {seed}. Repeat measurements of one alloy at one temperature
(different processing, grain size, test type) scatter by {floor:.0f} MPa RMS around their mean.
Mechanistic prior: Maresca–Curtin edge-dislocation strengthening. V = sum c_n V_n,
b = (sqrt(3)/2)(2V)^(1/3), S = sum c_n (V_n - V)^2 / b^6; alloy mu, nu = Voigt average of the
rule-of-mixtures C_ij; q = (1+nu)/(1-nu); tau_y0 = 0.040 alpha^(-1/3) mu q^(4/3) S^(2/3),
dEb = 2.00 alpha^(1/3) mu b^3 q^(2/3) S^(1/3) (alpha = 1/12); theta = kT/dEb ln(1e4/1e-3);
tau_y = tau_y0 (1 - theta^(2/3)) while >= tau_y0/2, else tau_y0 exp(-theta/0.55);
sigma = sigma0 + 3.067 tau_y with coefficients and sigma0 fitted. Equiatomic MoNbTaVW
(mu = 92 GPa, nu = 0.433) gives about 1430 MPa at 298 K and 660 MPa at 1273 K.
Estimated elemental values: {_estimated_note(elements, fields)}."""
    return Task(
        name="hea_bcc_temp", kind=TaskKind.TABULAR, description=description + ("\n" + CONDITIONS_TEXT if conditions else ""),
        source=DataSource.REAL,
        provenance=(f"{_MPEA_CITATION} Subset computed by nimm_jupyter.tasks.hea: "
                    "PROPERTY: BCC/FCC/other == BCC, YS reported, all test temperatures. Also "
                    "Couzinié et al., Data in Brief 21 (2018) 1622 (refractory HEA compilation). "
                    f"{_ELEMENTS_CITATION} Model: F. Maresca, W. A. Curtin, Acta Mater. 182 (2020) 235, "
                    "doi:10.1016/j.actamat.2019.10.015."),
        inputs=_variables(elements, "test temperature, K", conditions),
        targets=[Variable("yield_strength", "MPa", "measured yield strength (0.2% offset)")],
        train=train, val=val, test=test,
        prior_code=_prior_source(_BCC),
        prior_omits=("the fall of the elastic moduli with temperature (important above "
                     "~1000 K); screw-dislocation / Peierls strengthening (large for Cr-, Mo-, "
                     "W-rich alloys at low temperature); grain size / Hall–Petch; processing "
                     "route; test type (tension vs compression); short-range order and ordered "
                     "B2 precipitates"),
        hybrid_code=_hybrid_source(_BCC),
        family="alloy",
        constants=consts,
        options={"seed": seed, "conditions": conditions, "elements": elements,
                 "n_rows": len(rows),
                 "dropped_rows_unknown_elements": dropped},
    )
