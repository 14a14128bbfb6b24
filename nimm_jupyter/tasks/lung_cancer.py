"""The three lung-cancer tasks (NIMM tasks 5-7), simulated with the Geng et al. PKPD model.

Data come from :mod:`nimm_jupyter.tasks.pkpd_sim`, a numpy reimplementation of the simulator
used by HDTwinGen (Holt, Liu & van der Schaar, NeurIPS 2024). Each task ships three candidate
sources: the *prior* an oncologist would write first (exponential growth, no saturation), a
hand-written *hybrid* (that prior plus a small network correcting the growth rate), and
:data:`ORACLE_CODE`, the simulator's own Gompertz structure with free parameters (for tests and
for showing what is achievable; never given to a proposer).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import pkpd_sim
from .base import DataSource, Task, TaskKind, Variable
from .lung_scenarios import lung_scenarios, split_of

__all__ = [
    "make_lung_cancer", "make_lung_cancer_chemo", "make_lung_cancer_chemo_radio",
    "ORACLE_CODE", "prior_source", "hybrid_source",
]

PROVENANCE = (
    "Simulated. Reimplementation (numpy, from the written specification; no code copied) of the "
    "non-small-cell lung cancer PKPD model of C. Geng, H. Paganetti, C. Grassberger, 'Prediction "
    "of treatment response for combined chemo- and radiation therapy for non-small cell lung "
    "cancer patients using a bio-mathematical model', Sci. Rep. 7:13542 (2017), in the setting "
    "of S. Holt, T. Liu, M. van der Schaar, 'Automatically Learning Hybrid Digital Twins of "
    "Dynamical Systems' (HDTwinGen), NeurIPS 2024, arXiv:2410.23691 (samholt/HDTwinGen@a7cd335, "
    "libs/cancer/env.py, MIT): Gompertz growth rho=0.01453/day, K=vol(30 cm)=14137.17 cm^3, "
    "chemo kill beta_c=0.028, radio LQ alpha=0.0398/Gy, beta=0.00398/Gy^2, C halves daily, "
    "explicit Euler dt=1 day, T=60, sigmoid treatment policy on the tumour diameter. "
    "Optional heterogeneity follows the RMSN/CRN simulator (Lim et al. NeurIPS 2018; Bica et al. "
    "ICLR 2020). Random streams differ from HDTwinGen's, so numbers match in distribution only."
)

# Why each treatment-policy rule exists; appended to PROVENANCE for the rule a task uses.
POLICY_NOTES = {
    "hdtwingen": (
        "Treatment policy 'hdtwingen' (the default): the sigmoid sees the current diameter. "
        "That is what HDTwinGen's code does (its 15-day window holds 15 references to one "
        "array), and the NIMM paper's lung tasks come from HDTwinGen, so this rule keeps "
        "scores comparable with the paper. policy='window15' gives the 15-day mean instead."
    ),
    "window15": (
        "Treatment policy 'window15': the sigmoid sees the true mean diameter over the last 15 "
        "days, as Geng et al. and the RMSN/CRN simulator intend (HDTwinGen's code uses the "
        "current diameter, policy='hdtwingen', the default). Dynamics are the same; only who "
        "gets treated when differs."
    ),
}

# What an oncologist knows the exponential prior misses, in words: no constants and no
# functional form of the simulator, so that the task tests discovery (issue 16).
PRIOR_OMITS = (
    "The prior's relative growth rate rho is the same for a tumour of any size. Observed growth "
    "of solid tumours slows as they get larger (nutrient, oxygen and space limits), so the prior "
    "over-predicts large tumours and its error grows with the horizon. Which law describes that "
    "slowing, and how strongly, is not known in advance."
)

# How each policy rule reads in the task description.
_POLICY_WORDS = {
    "hdtwingen": "the tumour's current diameter",
    "window15": "the tumour's mean diameter over the last 15 days",
}

_TITLES = {
    "plain": "untreated",
    "chemo": "under chemotherapy",
    "chemo_radio": "under chemotherapy and radiotherapy",
}

# -- candidate sources -----------------------------------------------------------------------

_HEADER = '''import torch
from torch import nn
from nimm_jupyter.blocks import Positive, euler_rollout{extra_import}


class Model(nn.Module):
    """{doc}"""

    def __init__(self, spec):
        super().__init__()
'''

_ROLLOUT = '''
        c = y_context.shape[1]
        return euler_rollout(step, y_context[:, -1], u[:, c - 1:], n_steps=t.shape[0] - c,
                             dt=float(t[1] - t[0]), clamp=(0.0, 1e6))
'''


def _equations(growth: str, chemo: bool, radio: bool) -> str:
    kill = (" - beta_c*C" if chemo else "") + (" - (alpha_r*d_r + beta_r*d_r^2)" if radio else "")
    lines = [f"dV/dt = V * ({growth}{kill})" if kill or " " in growth else f"dV/dt = {growth}*V"]
    if chemo:
        lines.append("dC/dt = -k_el*C + d_c")
        lines.append("(d_c: chemo dose" + (", d_r: radio dose in Gy)" if radio else ")"))
    return "\n    ".join(lines)


def _params(chemo: bool, radio: bool, gompertz: bool) -> str:
    lines = ["        self.rho = Positive(0.02)       # growth rate, 1/day"]
    if gompertz:
        lines = ["        self.rho = Positive(0.01)       # Gompertz growth rate, 1/day",
                 "        self.K = Positive(10000.0)      # carrying capacity, cm^3"]
    if chemo:
        lines += ["        self.beta_c = Positive(0.02)    # chemo kill per unit conc., 1/day",
                  "        self.k_el = Positive(0.3)       # drug elimination rate, 1/day"]
    if radio:
        lines += ["        self.alpha_r = Positive(0.03)   # radio LQ linear coefficient, 1/Gy",
                  "        self.beta_r = Positive(0.003)   # radio LQ quadratic coeff., 1/Gy^2"]
    return "\n".join(lines) + "\n"


def _step(growth_expr: str, chemo: bool, radio: bool) -> str:
    body = ["        def step(y, u_k, k):",
            "            V = y[:, :1].clamp_min(0.0)"]
    if "net(z)" in growth_expr:
        body += ["            z = (safe_log(V, 1e-6) - self.log_centre) / self.log_spread"]
    rate = growth_expr
    if chemo:
        body += ["            C = y[:, 1:2]", "            d_c = u_k[:, :1]"]
        rate += " - self.beta_c() * C"
    if radio:
        body += ["            d_r = u_k[:, 1:2]"]
        rate += " - (self.alpha_r() * d_r + self.beta_r() * d_r ** 2)"
    if len(rate) > 60:  # one term per line keeps the candidate readable
        rate = "(" + rate.replace(" - ", "\n                    - ") + ")"
    body += [f"            rate = {rate}",
             "            dV = V * rate"]
    if chemo:
        body += ["            dC = -self.k_el() * C + d_c",
                 "            return torch.cat([dV, dC], dim=1)"]
    else:
        body += ["            return dV"]
    return "\n".join(body) + "\n"


def prior_source(chemo: bool, radio: bool) -> str:
    """The expert's first model: exponential growth, log-linear kills, first-order elimination."""
    doc = ("Exponential tumour growth" + (" with log-linear chemo kill" if chemo else "")
           + (" and linear-quadratic radio kill" if radio else "") + ".\n\n    "
           + _equations("rho", chemo, radio) + "\n    ")
    return (_HEADER.format(extra_import="", doc=doc) + _params(chemo, radio, gompertz=False)
            + "\n    def forward(self, y_context, u, t):\n"
            + _step("self.rho()", chemo, radio) + _ROLLOUT)


def hybrid_source(chemo: bool, radio: bool) -> str:
    """The prior plus a small MLP that corrects the relative growth rate from log-volume."""
    doc = ("Exponential growth prior plus a learned, size-dependent correction of the growth "
           "rate.\n\n    " + _equations("rho + g(ln V)", chemo, radio)
           + "\n    g is a small MLP of the normalised log-volume (starts at 0), so it can learn\n"
           "    that growth slows as tumours get large (saturation).\n    ")
    params = _params(chemo, radio, gompertz=False) + (
        "        self.net = mlp(1, 1, hidden=16)  # growth-rate correction, 1/day (x 0.1)\n"
        "        # centre/spread of ln V used to normalise the network input\n"
        "        self.log_centre = float(torch.log(spec.target_mean[0].clamp_min(1e-3)))\n"
        "        self.log_spread = 3.0\n")
    growth = "self.rho() + 0.1 * self.net(z)"
    return (_HEADER.format(extra_import=", mlp, safe_log", doc=doc) + params
            + "\n    def forward(self, y_context, u, t):\n"
            + _step(growth, chemo, radio) + _ROLLOUT)


ORACLE_CODE = '''import torch
from torch import nn
from nimm_jupyter.blocks import Positive, euler_rollout, safe_log


class Model(nn.Module):
    """The simulator's own structure with free parameters (works for all three variants).

    dV/dt = V * (rho*ln(K/V) - beta_c*C - (alpha_r*d_r + beta_r*d_r^2));  dC/dt = -k_el*C + d_c
    """

    def __init__(self, spec):
        super().__init__()
        names = list(spec.input_names)
        self.has_c = spec.n_targets > 1
        self.i_chemo = names.index("chemo_dose") if "chemo_dose" in names else -1
        self.i_radio = names.index("radio_dose") if "radio_dose" in names else -1
        self.rho = Positive(0.01)
        self.K = Positive(10000.0)
        if self.has_c:
            self.beta_c = Positive(0.02)
            self.k_el = Positive(0.3)
        if self.i_radio >= 0:
            self.alpha_r = Positive(0.03)
            self.beta_r = Positive(0.003)

    def forward(self, y_context, u, t):
        def step(y, u_k, k):
            V = y[:, :1].clamp_min(0.0)
            rate = self.rho() * (torch.log(self.K()) - safe_log(V, 1e-6))
            if self.i_radio >= 0:
                d_r = u_k[:, self.i_radio:self.i_radio + 1]
                rate = rate - (self.alpha_r() * d_r + self.beta_r() * d_r ** 2)
            if not self.has_c:
                return V * rate
            C = y[:, 1:2]
            d_c = u_k[:, self.i_chemo:self.i_chemo + 1]
            dV = V * (rate - self.beta_c() * C)
            return torch.cat([dV, -self.k_el() * C + d_c], dim=1)

        c = y_context.shape[1]
        return euler_rollout(step, y_context[:, -1], u[:, c - 1:], n_steps=t.shape[0] - c,
                             dt=float(t[1] - t[0]), clamp=(0.0, 1e6))
'''

# -- task assembly ---------------------------------------------------------------------------


def _describe(variant: str, train: pkpd_sim.Simulation, opts: dict[str, Any]) -> str:
    chemo, radio = pkpd_sim.VARIANTS[variant]
    V, T = train.V, train.V.shape[1]
    q = lambda a: f"{np.min(a):.3g} to {np.max(a):.3g} (median {np.median(a):.3g})"  # noqa: E731
    lines = [
        f"Lung tumour volume {_TITLES[variant]}: forecast {T - 1} days of a simulated NSCLC "
        f"patient from day 0.",
        "",
        f"Each trajectory is one simulated non-small-cell lung cancer patient observed once a day "
        f"for T={T} days (t = 0..{T - 1}); {opts['n_patients']} patients per split "
        f"(train/val/test, simulated independently). The model receives the state on day 0 and "
        f"{'all treatments over the horizon' if chemo else 'no treatments'} and must forecast "
        f"days 1..{T - 1} as a free rollout (scored by RMSE in original units).",
        "",
        "Observed variables (targets):",
        "- V: tumour volume in cm^3 (a sphere of diameter D cm has V = pi*D^3/6).",
    ]
    if chemo:
        lines.append("- C: chemotherapy drug concentration in arbitrary concentration units; "
                     "C = 0 on day 0. C on day t+1 is what is left of C on day t plus the dose "
                     "recorded on day t; the body eliminates the drug between doses.")
    lines += ["", "Inputs (treatments):"]
    if not chemo:
        lines.append("- none: these patients receive no treatment; only natural growth is seen.")
    else:
        lines.append(f"- chemo_dose (units/day): {pkpd_sim.CHEMO_DOSE:g} on a dosing day, else 0.")
    if radio:
        lines.append(f"- radio_dose (Gy): a {pkpd_sim.RADIO_DOSE:g} Gy fraction on a "
                     f"radiotherapy day, else 0.")
    if chemo:
        lines.append("Timing: a chemo dose recorded on day t shows in C on day t+1 and first "
                     "changes V on day t+2 (the drug acts through the concentration already in "
                     "the blood)."
                     + (" A radiotherapy fraction on day t changes V from day t+1 on."
                        if radio else ""))
        lines.append(
            "Treatment policy (time-dependent confounding): each day the clinician treats with "
            f"a probability that rises smoothly with {_POLICY_WORDS[opts['policy']]}"
            + ("; chemo and radio are decided independently with the same probability"
               if radio else "")
            + ". Bigger tumours are treated more often, so treatment and tumour size are "
            "correlated.")
    lines += [
        "",
        f"Observed ranges (train split): V on day 0 {q(V[:, 0])} cm^3; V on day {T - 1} "
        f"{q(V[:, -1])} cm^3; V overall {q(V)} cm^3.",
        f"Initial volumes are uniform between {pkpd_sim.V0_LOW:.3g} and {pkpd_sim.V0_HIGH:.4g} "
        "cm^3 (diameters about 0.3 to 13 cm).",
    ]
    if chemo:
        lines.append(f"C ranges {np.min(train.C):.3g} to {np.max(train.C):.3g}; "
                     f"{100 * np.mean(train.chemo > 0):.0f}% of patient-days get chemo"
                     + (f", {100 * np.mean(train.radio > 0):.0f}% get radiotherapy"
                        if radio else "") + ".")
    lines += ["", "The data are sampled daily (dt = 1 day); the system is deterministic given "
              "the initial state and treatments"
              + (" (all patients share the same biology)" if not opts["heterogeneity"] else "")
              + "."]
    if opts["heterogeneity"]:
        lines.append("Patients differ: each has its own growth rate, chemo sensitivity and "
                     "radio sensitivity, drawn from a population distribution (unobserved).")
    if opts["process_noise"] > 0:
        lines.append(f"The daily relative growth rate has Gaussian noise (SD "
                     f"{opts['process_noise']:g}/day).")
    if opts["noise"] > 0:
        lines.append(f"Observed V carries multiplicative log-normal measurement noise (log SD "
                     f"{opts['noise']:g}); treatment decisions use the true volume.")
    prior = "exponential growth dV/dt = rho*V"
    if chemo:
        prior += (" with log-linear chemo kill -beta_c*C*V and first-order elimination "
                  "dC/dt = -k_el*C + dose")
    if radio:
        prior += " and linear-quadratic radio kill -(alpha_r*d + beta_r*d^2)*V"
    # What the prior leaves out is Task.prior_omits, which the prompt prints after the prior.
    lines += ["", f"Mechanistic prior: {prior}, integrated with daily Euler steps; its "
              "parameters are fitted."]
    return "\n".join(lines)


def _make(variant: str, n_patients: int = 1000, seed: int = 0, heterogeneity: bool = False,
          noise: float = 0.0, process_noise: float = 0.0, horizon: int = 60,
          policy: str = pkpd_sim.DEFAULT_POLICY) -> Task:
    """Build one lung-cancer task.

    ``n_patients`` per split; ``seed`` derives the independent test/train/val streams;
    ``heterogeneity`` draws per-patient (alpha, rho, beta_c) as in RMSN/CRN instead of
    HDTwinGen's shared parameters; ``noise`` is the log-SD of multiplicative observation noise
    on V; ``process_noise`` the SD of daily noise on V's relative growth rate; ``horizon`` the
    number of days T; ``policy`` the treatment rule, ``"hdtwingen"`` (current diameter, the
    default) or ``"window15"`` (15-day mean diameter); see :data:`POLICY_NOTES`.
    """
    is_int = lambda x: isinstance(x, (int, np.integer)) and not isinstance(x, bool)  # noqa: E731
    if not is_int(n_patients) or n_patients < 1:
        raise ValueError(f"n_patients must be a positive integer, got {n_patients!r}")
    if not is_int(horizon) or horizon < 2:
        raise ValueError(f"horizon must be an integer >= 2, got {horizon!r}")
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    for label, value in (("noise", noise), ("process_noise", process_noise)):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{label} must be a finite number >= 0, got {value!r}")
    if not isinstance(policy, str) or policy not in pkpd_sim.POLICIES:
        raise ValueError(f"policy must be one of {', '.join(sorted(pkpd_sim.POLICIES))}, "
                         f"got {policy!r}")
    opts: dict[str, Any] = {
        "variant": variant, "n_patients": int(n_patients), "seed": int(seed),
        "heterogeneity": bool(heterogeneity), "noise": float(noise),
        "process_noise": float(process_noise), "horizon": int(horizon), "policy": policy,
    }
    # Splits are simulated independently, in HDTwinGen's order (test, train, val), each from
    # its own child of the task seed.
    # The fourth child is the cohort of the held-out intervention scenarios (lung_scenarios).
    children = dict(zip(("test", "train", "val", "scenarios"),
                        np.random.SeedSequence(int(seed)).spawn(4)))
    scenario_seed = children.pop("scenarios")
    sims = {
        name: pkpd_sim.simulate(int(n_patients), int(horizon), variant=variant, seed=ss,
                                heterogeneity=bool(heterogeneity), noise=float(noise),
                                process_noise=float(process_noise), policy=policy)
        for name, ss in children.items()
    }
    chemo, radio = pkpd_sim.VARIANTS[variant]
    V = Variable("V", "cm^3", "tumour volume")
    C = Variable("C", "concentration units", "chemo drug concentration")
    targets = [V, C] if chemo else [V]
    inputs = [Variable("chemo_dose", "units/day", "chemotherapy dose given that day")][:chemo] \
        + [Variable("radio_dose", "Gy", "radiotherapy dose given that day")][:radio]
    name = {"plain": "lung_cancer", "chemo": "lung_cancer_chemo",
            "chemo_radio": "lung_cancer_chemo_radio"}[variant]
    return Task(
        name=name,
        kind=TaskKind.TRAJECTORY,
        description=_describe(variant, sims["train"], opts),
        source=DataSource.SIMULATED,
        provenance=f"{PROVENANCE} {POLICY_NOTES[policy]}",
        inputs=inputs,
        targets=targets,
        train=split_of(sims["train"], variant, "train"),
        val=split_of(sims["val"], variant, "val"),
        test=split_of(sims["test"], variant, "test"),
        prior_code=prior_source(chemo, radio),
        prior_omits=PRIOR_OMITS,
        hybrid_code=hybrid_source(chemo, radio),
        family="tumour",
        time=np.arange(int(horizon), dtype=np.float64),
        context=1,
        options=opts,
        scenarios=lung_scenarios(variant, int(n_patients), int(horizon), scenario_seed, dict(
            heterogeneity=bool(heterogeneity), noise=float(noise),
            process_noise=float(process_noise), policy=policy)),
    )


def make_lung_cancer(**opts: Any) -> Task:
    """Untreated tumour growth: target V (cm^3), no inputs. Options: see :func:`_make`."""
    return _make("plain", **opts)


def make_lung_cancer_chemo(**opts: Any) -> Task:
    """Tumour growth under chemotherapy: targets V, C; input chemo_dose."""
    return _make("chemo", **opts)


def make_lung_cancer_chemo_radio(**opts: Any) -> Task:
    """Tumour growth under chemo- and radiotherapy: targets V, C; inputs chemo_dose, radio_dose."""
    return _make("chemo_radio", **opts)
