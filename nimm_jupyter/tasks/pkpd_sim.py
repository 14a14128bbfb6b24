"""Geng et al. (2017) PKPD tumour simulator in the HDTwinGen setting, vectorised over patients.

A reimplementation from the written specification in ``shared/data/lung_cancer/PROVENANCE.md``
(no code copied). State: tumour volume ``V`` (cm^3) and chemo concentration ``C``. Each day:

    dC/dt = -C/2 + d_c
    dV/dt = V * [rho*ln(K/V) - beta_c*C - (alpha_r*d_r + beta_r*d_r^2) + e]

integrated with explicit Euler, dt = 1 day. The derivative uses the *old* C, so a chemo dose
given on day t is in C on day t+1 and first lowers V on day t+2. Treatments follow a sigmoid
policy on the tumour diameter (time-dependent confounding: larger tumours are treated more
often); ``policy`` picks which diameter (see :data:`POLICIES`).

Only numpy; one Python loop over days, every operation inside it is over all patients at once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "RHO", "K", "BETA_C", "ALPHA_R", "BETA_R", "CHEMO_DOSE", "RADIO_DOSE", "CHEMO_DECAY",
    "V0_LOW", "V0_HIGH", "WINDOW", "GAMMA", "VARIANTS", "POLICIES", "DEFAULT_POLICY",
    "volume", "diameter", "PatientParams", "Simulation", "shared_params",
    "heterogeneous_params", "simulate",
]


def volume(d: np.ndarray | float) -> np.ndarray | float:
    """Sphere volume (cm^3) from diameter (cm)."""
    return (4.0 / 3.0) * math.pi * (d / 2.0) ** 3


def diameter(v: np.ndarray) -> np.ndarray:
    """Sphere diameter (cm) from volume (cm^3); negative volumes count as 0."""
    return 2.0 * np.cbrt(3.0 * np.maximum(v, 0.0) / (4.0 * math.pi))


# HDTwinGen's deterministic parameter set (population mean + 2 SD of Geng et al. for rho).
RHO = 7e-5 + 2 * 7.23e-3  # Gompertz growth rate, 1/day
K = volume(30.0)  # carrying capacity, cm^3 (= 14137.17)
BETA_C = 0.028  # chemo kill per unit concentration, 1/day
ALPHA_R = 0.0398  # radio LQ linear coefficient, 1/Gy
BETA_R = ALPHA_R / 10.0  # radio LQ quadratic coefficient, 1/Gy^2
CHEMO_DOSE = 5.0  # concentration units per dose
RADIO_DOSE = 2.0  # Gy per fraction
CHEMO_DECAY = 0.5  # C halves each day (explicit Euler with rate 1/2)
V0_LOW = 0.014165261814709135  # about vol(0.3 cm)
V0_HIGH = V0_LOW + 1149.8817159979046  # about vol(13 cm)
WINDOW = 15  # days in the rolling mean diameter the policy looks at
GAMMA = 2.0  # confounding strength of the policy
_D_MAX = 13.0  # "death" diameter, cm

# Treatment-policy rule -> days of diameter history the sigmoid looks at. Geng et al. and the
# RMSN/CRN simulator mean the 15-day mean diameter ("window15"). HDTwinGen's code fills its
# 15-day window with 15 references to one array, so its policy sees only the current diameter
# ("hdtwingen"); that is the default, so that scores stay comparable with the NIMM paper.
POLICIES: dict[str, int] = {"hdtwingen": 1, "window15": WINDOW}
DEFAULT_POLICY = "hdtwingen"

# variant name -> (chemo given, radio given)
VARIANTS: dict[str, tuple[bool, bool]] = {
    "plain": (False, False),
    "chemo": (True, False),
    "chemo_radio": (True, True),
}


@dataclass
class PatientParams:
    """Per-patient dynamics parameters, each an ``(N,)`` array."""

    rho: np.ndarray
    K: np.ndarray
    beta_c: np.ndarray
    alpha_r: np.ndarray
    beta_r: np.ndarray


@dataclass
class Simulation:
    """Latent and observed trajectories of one simulated cohort (``(N, T)`` arrays)."""

    V: np.ndarray  # observed volume (true volume times observation noise), cm^3
    V_true: np.ndarray  # latent volume, cm^3
    C: np.ndarray  # chemo concentration
    chemo: np.ndarray  # chemo dose decided on day t (acts in the step t -> t+1)
    radio: np.ndarray  # radio dose (Gy) on day t
    params: PatientParams


def shared_params(n: int) -> PatientParams:
    """HDTwinGen's setting: every patient has the same parameters."""
    full = lambda x: np.full(n, float(x))  # noqa: E731
    return PatientParams(full(RHO), full(K), full(BETA_C), full(ALPHA_R), full(BETA_R))


def heterogeneous_params(n: int, rng: np.random.Generator) -> PatientParams:
    """RMSN/CRN reference heterogeneity (Geng et al. population).

    (alpha, rho) ~ bivariate normal, means (0.0398, 7e-5), SDs (0.168, 7.23e-3), correlation
    0.87, redrawn until both are positive; beta_r = alpha/10; beta_c = 0.028 + 0.0007 z, z
    standard normal redrawn until beta_c > 0; patient type uniform on {1, 2, 3}: type 1 adds
    0.1*0.0398 to alpha, type 3 adds 0.1*0.028 to beta_c. Note the truncated rho is much
    smaller on average than HDTwinGen's shared 0.01453, so these tumours grow more slowly.
    """
    mean = np.array([ALPHA_R, 7e-5])
    sd = np.array([0.168, 7.23e-3])
    corr = 0.87
    cov = np.array([[sd[0] ** 2, corr * sd[0] * sd[1]], [corr * sd[0] * sd[1], sd[1] ** 2]])
    ar = np.empty((n, 2))
    todo = np.arange(n)
    while todo.size:  # rejection sampling, vectorised over the patients still to draw
        draw = rng.multivariate_normal(mean, cov, size=todo.size)
        ok = (draw > 0).all(axis=1)
        ar[todo[ok]] = draw[ok]
        todo = todo[~ok]
    beta_c = np.empty(n)
    todo = np.arange(n)
    while todo.size:
        draw = BETA_C + 0.0007 * rng.standard_normal(todo.size)
        ok = draw > 0
        beta_c[todo[ok]] = draw[ok]
        todo = todo[~ok]
    ptype = rng.integers(1, 4, size=n)
    alpha = ar[:, 0] + np.where(ptype == 1, 0.1 * ALPHA_R, 0.0)
    beta_c = beta_c + np.where(ptype == 3, 0.1 * BETA_C, 0.0)
    return PatientParams(rho=ar[:, 1], K=np.full(n, K), beta_c=beta_c, alpha_r=alpha,
                         beta_r=alpha / 10.0)


def simulate(n: int, horizon: int = 60, *, variant: str = "chemo_radio",
             seed: int | np.random.SeedSequence = 0, heterogeneity: bool = False,
             noise: float = 0.0, process_noise: float = 0.0, policy: str = DEFAULT_POLICY,
             doses: tuple[np.ndarray, np.ndarray] | None = None,
             v0: np.ndarray | None = None) -> Simulation:
    """Simulate ``n`` patients for ``horizon`` days.

    ``seed`` feeds independent random streams for the initial volumes, patient parameters,
    policy draws, process noise and observation noise, so switching ``noise`` on leaves the
    latent trajectories unchanged. ``noise`` is the SD of multiplicative log-normal observation
    noise on V; the policy and the dynamics see the latent volume. ``process_noise`` is the SD
    of the Gaussian term ``e`` added daily to V's relative growth rate. ``policy`` is the
    treatment rule (a key of :data:`POLICIES`). ``doses`` = (chemo,
    radio), each ``(n, horizon)``, replaces the policy (for controlled experiments); ``v0``
    replaces the initial volumes.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; expected one of {sorted(POLICIES)}")
    if int(n) < 1 or int(horizon) < 2:
        raise ValueError(f"need n >= 1 and horizon >= 2, got n={n}, horizon={horizon}")
    if noise < 0 or process_noise < 0:
        raise ValueError(f"noise SDs must be >= 0, got noise={noise}, "
                         f"process_noise={process_noise}")
    n, T = int(n), int(horizon)
    give_chemo, give_radio = VARIANTS[variant]
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    r_v0, r_par, r_pol, r_proc, r_obs = (np.random.default_rng(s) for s in ss.spawn(5))

    V0 = r_v0.uniform(V0_LOW, V0_HIGH, size=n) if v0 is None else np.asarray(v0, float)
    if V0.shape != (n,):
        raise ValueError(f"v0 must have shape ({n},), got {V0.shape}")
    p = heterogeneous_params(n, r_par) if heterogeneity else shared_params(n)
    u_chemo, u_radio = r_pol.uniform(size=(n, T)), r_pol.uniform(size=(n, T))
    eps = process_noise * r_proc.standard_normal((n, T)) if process_noise > 0 else np.zeros((n, T))
    if doses is not None:
        forced_c, forced_r = (np.broadcast_to(np.asarray(d, float), (n, T)) for d in doses)

    V = np.empty((n, T))
    C = np.empty((n, T))
    dc = np.zeros((n, T))
    dr = np.zeros((n, T))
    D = np.empty((n, T))  # diameters seen by the policy
    v, c = V0.copy(), np.zeros(n)
    slope = GAMMA / _D_MAX
    window = POLICIES[policy]
    for t in range(T):
        V[:, t], C[:, t] = v, c
        D[:, t] = diameter(v)
        d_bar = D[:, max(0, t - window + 1): t + 1].mean(axis=1)
        prob = 1.0 / (1.0 + np.exp(-slope * (d_bar - _D_MAX / 2.0)))
        if doses is not None:
            dc[:, t] = np.clip(forced_c[:, t], 0.0, CHEMO_DOSE) if give_chemo else 0.0
            dr[:, t] = np.clip(forced_r[:, t], 0.0, RADIO_DOSE) if give_radio else 0.0
        else:
            if give_chemo:
                dc[:, t] = np.where(u_chemo[:, t] < prob, CHEMO_DOSE, 0.0)
            if give_radio:
                dr[:, t] = np.where(u_radio[:, t] < prob, RADIO_DOSE, 0.0)
        if t == T - 1:
            break
        vv = np.maximum(v, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = (p.rho * np.log(p.K / vv) - p.beta_c * c
                    - (p.alpha_r * dr[:, t] + p.beta_r * dr[:, t] ** 2) + eps[:, t])
            dv = vv * rate
        dv = np.where(np.isfinite(dv) & (vv > 0), dv, 0.0)
        # Euler may overshoot below 0 for strong kills; a volume cannot be negative.
        v = np.maximum(vv + dv, 0.0)
        c = c + (-CHEMO_DECAY * c + dc[:, t])

    V_obs = V * np.exp(noise * r_obs.standard_normal((n, T))) if noise > 0 else V.copy()
    return Simulation(V=V_obs, V_true=V, C=C, chemo=dc, radio=dr, params=p)
