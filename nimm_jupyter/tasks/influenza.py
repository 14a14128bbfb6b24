"""Influenza-USA: weekly influenza-like-illness (ILI) visits per US state (CDC ILINet).

Two datasets, both computed from raw files fetched by :mod:`nimm_jupyter.tasks.data`:

* ``state360`` (default): the Cola-GNN/EpiGNN benchmark, 360 weeks x 49 states (Florida
  removed), 2010 week 40 to 2017 week 35, with the 49x49 border adjacency. Its dates are
  not stored in the file; they are pinned here because its last 47 weeks equal the raw
  ILINet export for 2016w40-2017w35 exactly (New York there is New York state without New
  York City), which a test checks.
* ``ilinet2016``: the raw ILINet state export, 2016w40-2024w44, 50 states (New York = New
  York state + New York City; DC, Puerto Rico, Virgin Islands, N. Mariana Islands dropped),
  with the 50x50 border adjacency.
"""
from __future__ import annotations

import datetime as _dt
from typing import Sequence

import numpy as np

from .base import DataSource, Split, Task, TaskKind, Variable
from .data import fetch

__all__ = [
    "STATES", "STATE_CODES", "state_names", "mmwr_week_start", "season_features",
    "load_state360", "load_ilinet2016", "make_influenza_usa", "PRIOR_CODE", "HYBRID_CODE",
]

# The 50 US states, alphabetical by name, with their postal codes.
STATES: list[tuple[str, str]] = [
    ("Alabama", "AL"), ("Alaska", "AK"), ("Arizona", "AZ"), ("Arkansas", "AR"),
    ("California", "CA"), ("Colorado", "CO"), ("Connecticut", "CT"), ("Delaware", "DE"),
    ("Florida", "FL"), ("Georgia", "GA"), ("Hawaii", "HI"), ("Idaho", "ID"),
    ("Illinois", "IL"), ("Indiana", "IN"), ("Iowa", "IA"), ("Kansas", "KS"),
    ("Kentucky", "KY"), ("Louisiana", "LA"), ("Maine", "ME"), ("Maryland", "MD"),
    ("Massachusetts", "MA"), ("Michigan", "MI"), ("Minnesota", "MN"), ("Mississippi", "MS"),
    ("Missouri", "MO"), ("Montana", "MT"), ("Nebraska", "NE"), ("Nevada", "NV"),
    ("New Hampshire", "NH"), ("New Jersey", "NJ"), ("New Mexico", "NM"), ("New York", "NY"),
    ("North Carolina", "NC"), ("North Dakota", "ND"), ("Ohio", "OH"), ("Oklahoma", "OK"),
    ("Oregon", "OR"), ("Pennsylvania", "PA"), ("Rhode Island", "RI"), ("South Carolina", "SC"),
    ("South Dakota", "SD"), ("Tennessee", "TN"), ("Texas", "TX"), ("Utah", "UT"),
    ("Vermont", "VT"), ("Virginia", "VA"), ("Washington", "WA"), ("West Virginia", "WV"),
    ("Wisconsin", "WI"), ("Wyoming", "WY"),
]
STATE_CODES: dict[str, str] = dict(STATES)
_DATASETS = ("state360", "ilinet2016")
STATE360_START = (2010, 40)  # MMWR year and week of the first row of state360.txt
UNIT = "ILI visits/week"


def state_names(dataset: str = "state360") -> list[str]:
    """State names in column order: alphabetical; ``state360`` drops Florida."""
    _check_dataset(dataset)
    names = sorted(name for name, _ in STATES)
    return [n for n in names if n != "Florida"] if dataset == "state360" else names


def _check_dataset(dataset: str) -> None:
    if dataset not in _DATASETS:
        raise ValueError(f"unknown influenza dataset {dataset!r}; choose from {', '.join(_DATASETS)}")


# -- calendar ---------------------------------------------------------------------------
def mmwr_week_start(year: int, week: int) -> _dt.date:
    """The Sunday that starts MMWR (CDC epi) week ``week`` of ``year``.

    MMWR week 1 is the first Sunday-to-Saturday week with at least four days in the year,
    i.e. the week containing January 4.
    """
    jan4 = _dt.date(year, 1, 4)
    week1 = jan4 - _dt.timedelta(days=(jan4.weekday() + 1) % 7)
    return week1 + _dt.timedelta(weeks=week - 1)


def season_features(starts: Sequence[_dt.date]) -> np.ndarray:
    """``(W, 2)`` sin/cos of the phase of each week's midweek day within the year."""
    phase = np.array([(d + _dt.timedelta(days=3)).timetuple().tm_yday / 365.25 for d in starts])
    return np.column_stack([np.sin(2 * np.pi * phase), np.cos(2 * np.pi * phase)])


# -- raw data ---------------------------------------------------------------------------
def _load_adjacency(key: str, n: int) -> np.ndarray:
    adj = np.loadtxt(fetch(key), delimiter=",")
    if adj.shape != (n, n):
        raise ValueError(f"{key}: expected a {n}x{n} matrix, got {adj.shape}")
    return adj


def load_state360() -> tuple[np.ndarray, np.ndarray, list[_dt.date]]:
    """``(counts (360, 49), adjacency (49, 49), week start dates)`` of the Cola-GNN set."""
    counts = np.loadtxt(fetch("influenza_usa/colagnn_state360.txt"), delimiter=",")
    if counts.shape[1] != 49:
        raise ValueError(f"state360: expected 49 state columns, got {counts.shape[1]}")
    adj = _load_adjacency("influenza_usa/colagnn_state_adj_49.txt", 49)
    first = mmwr_week_start(*STATE360_START)
    dates = [first + _dt.timedelta(weeks=k) for k in range(counts.shape[0])]
    return counts, adj, dates


def load_ilinet2016() -> tuple[np.ndarray, np.ndarray, list[_dt.date]]:
    """``(counts (W, 50), adjacency (50, 50), week start dates)`` from the raw ILINet export."""
    import pandas as pd

    raw = pd.read_csv(fetch("influenza_usa/ilinet_states_2016w40_2024w44.csv"), skiprows=1)
    raw["ILITOTAL"] = pd.to_numeric(raw["ILITOTAL"], errors="coerce")
    raw["REGION"] = raw["REGION"].replace({"New York City": "New York"})  # NY = state + NYC
    names = state_names("ilinet2016")
    raw = raw[raw["REGION"].isin(names)]
    wide = (raw.groupby(["YEAR", "WEEK", "REGION"])["ILITOTAL"].sum(min_count=1)
            .unstack("REGION").sort_index())
    missing = [n for n in names if n not in wide.columns]
    if missing:
        raise ValueError(f"ILINet export lacks states {missing}")
    wide = wide[names]
    if wide.isna().any().any():
        raise ValueError("ILINet export has unreported (X) ILITOTAL values for a state")
    dates = [mmwr_week_start(int(y), int(w)) for y, w in wide.index]
    gaps = {(b - a).days for a, b in zip(dates, dates[1:])}
    if gaps != {7}:
        raise ValueError(f"ILINet weeks are not consecutive (gaps in days: {sorted(gaps)})")
    adj = _load_adjacency("influenza_usa/epignn_state_adj_50.txt", 50)
    return wide.to_numpy(float), adj, dates


# -- windows and splits -----------------------------------------------------------------
def _windows(n_weeks: int, T: int, window: int, stride: int) -> dict[str, np.ndarray]:
    """Window start weeks per split, by where their forecast weeks fall (60/20/20)."""
    b1, b2 = int(round(0.6 * n_weeks)), int(round(0.8 * n_weeks))
    starts = np.arange(0, n_weeks - T + 1, stride)
    first_fc, last_fc = starts + window, starts + T - 1
    return {
        "train": starts[last_fc < b1],
        "val": starts[(first_fc >= b1) & (last_fc < b2)],
        "test": starts[(first_fc >= b2) & (last_fc < n_weeks)],
    }


# -- candidate sources ------------------------------------------------------------------
_PRIOR_HEAD = '''import torch
from torch import nn
from nimm_jupyter.blocks import Bounded, Positive{extra}


class Model(nn.Module):
    """{doc}"""

    def __init__(self, spec):
        super().__init__()
        adj = spec.constants["adjacency"]
        off = adj * (1.0 - torch.eye(adj.shape[0]))  # borders only, no self-loops
        degree = off.sum(1)
        self.register_buffer("neighbours", off / degree.clamp_min(1.0)[:, None])
        self.register_buffer("has_neighbours", (degree > 0).float())
        self.register_buffer("size", spec.target_mean.clamp_min(1.0))  # mean weekly visits
        self.R = Bounded(1.05, 0.2, 3.0)  # weekly reproduction number, shared by all states
        self.coupling = Bounded(0.2, 0.0, 1.0)  # share of infection pressure from neighbours
        self.s0 = Bounded(0.95, 0.01, 1.0)  # susceptible share when the forecast starts
        self.pool = Positive(50.0)  # susceptible pool, in units of the state's mean weekly visits
        self.background = Bounded(0.5, 0.01, 0.99)  # non-influenza share of the context minimum
'''

_PRIOR_FORWARD = '''
    def forward(self, y_context, u, t):
        y_context = y_context.clamp_min(0.0)
        base = self.background() * y_context.min(1).values  # (B, S) background ILI visits
        infected = (y_context[:, -1] - base).clamp_min(0.0)
        susceptible = self.s0() * torch.ones_like(infected)
        pool = self.pool() * self.size
        out = []
        for _ in range(t.shape[0] - y_context.shape[1]):
            from_neighbours = infected @ self.neighbours.T
            pressure = infected + self.coupling() * self.has_neighbours * (from_neighbours - infected)
            infected = (self.R() * susceptible * pressure).clamp(0.0, 1e6)
            susceptible = (susceptible - infected / pool).clamp(0.0, 1.0)
            out.append(base + infected)
        return torch.stack(out, dim=1)
'''

_HYBRID_EXTRA_INIT = '''        n_states = adj.shape[0]
        self.register_buffer("state_id", torch.eye(n_states))
        # state one-hot + season (sin, cos) + log incidence + last weekly log growth
        self.net = mlp(n_states + 4, 1, hidden=32)
'''

_HYBRID_FORWARD = '''
    def rate_correction(self, infected, previous, season):
        """exp(bounded MLP output): a state- and season-dependent factor on R."""
        B, S = infected.shape
        feats = torch.cat([
            self.state_id.expand(B, S, S),
            season[:, None, :].expand(B, S, 2),
            torch.log1p(infected / self.size)[..., None],
            (torch.log1p(infected) - torch.log1p(previous))[..., None],
        ], dim=-1)
        return torch.exp(0.7 * torch.tanh(self.net(feats).squeeze(-1)))

    def forward(self, y_context, u, t):
        y_context = y_context.clamp_min(0.0)
        C = y_context.shape[1]
        base = self.background() * y_context.min(1).values
        infected = (y_context[:, -1] - base).clamp_min(0.0)
        previous = (y_context[:, -2] - base).clamp_min(0.0) if C > 1 else infected
        susceptible = self.s0() * torch.ones_like(infected)
        pool = self.pool() * self.size
        out = []
        for k in range(t.shape[0] - C):
            rate = self.R() * self.rate_correction(infected, previous, u[:, C - 1 + k])
            from_neighbours = infected @ self.neighbours.T
            pressure = infected + self.coupling() * self.has_neighbours * (from_neighbours - infected)
            previous, infected = infected, (rate * susceptible * pressure).clamp(0.0, 1e6)
            susceptible = (susceptible - infected / pool).clamp(0.0, 1.0)
            out.append(base + infected)
        return torch.stack(out, dim=1)
'''

_PRIOR_DOC = ("Discrete-time metapopulation SIR (renewal) model of weekly ILI visits.\n\n"
              "    visits = background + I. Each week I <- R * s * [(1 - c) I + c * (neighbours' mean I)]\n"
              "    and the susceptible share s falls by I / N (N = pool * the state's mean weekly visits).\n"
              "    One R for all states and weeks: no seasonal forcing, no reporting changes.\n    ")
_HYBRID_DOC = ("Metapopulation SIR prior with a neural correction of the transmission rate.\n\n"
               "    R_i(t) = R * exp(0.7 tanh(MLP(state, season, incidence, growth))); the MLP's last\n"
               "    layer starts at zero, so the hybrid starts as the prior.\n    ")

PRIOR_CODE = _PRIOR_HEAD.format(extra="", doc=_PRIOR_DOC) + _PRIOR_FORWARD
HYBRID_CODE = (_PRIOR_HEAD.format(extra=", mlp", doc=_HYBRID_DOC) + _HYBRID_EXTRA_INIT
               + _HYBRID_FORWARD)


# -- the task ---------------------------------------------------------------------------
def _select_states(names: list[str], adj: np.ndarray, counts: np.ndarray,
                   states: Sequence[str] | None):
    codes = [STATE_CODES[n] for n in names]
    if states is None:
        return names, codes, adj, counts
    if isinstance(states, str):
        states = [states]
    wanted = [s.upper() for s in states]
    unknown = [s for s in wanted if s not in codes]
    if unknown:
        raise ValueError(f"unknown or unavailable state code(s) {unknown}; available: {', '.join(codes)}")
    if len(set(wanted)) != len(wanted) or not wanted:
        raise ValueError(f"states must be a non-empty list of distinct codes, got {list(states)}")
    idx = [i for i, c in enumerate(codes) if c in set(wanted)]  # keep alphabetical order
    return ([names[i] for i in idx], [codes[i] for i in idx], adj[np.ix_(idx, idx)],
            counts[:, idx])


def make_influenza_usa(dataset: str = "state360", window: int = 20, horizon: int = 4,
                       stride: int = 1, states: Sequence[str] | None = None) -> Task:
    """Forecast weekly ILI visits per US state ``horizon`` weeks ahead from ``window`` weeks."""
    _check_dataset(dataset)
    for name, value in (("window", window), ("horizon", horizon), ("stride", stride)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    counts, adj, dates = load_state360() if dataset == "state360" else load_ilinet2016()
    names, codes, adj, counts = _select_states(state_names(dataset), adj, counts, states)
    adj = np.maximum(adj, np.eye(len(codes)))  # ones on the diagonal
    season = season_features(dates)
    n_weeks, T = counts.shape[0], window + horizon
    starts = _windows(n_weeks, T, window, stride)
    empty = [k for k, v in starts.items() if len(v) == 0]
    if empty:
        raise ValueError(f"window={window} + horizon={horizon} leaves no {'/'.join(empty)} windows "
                         f"in {n_weeks} weeks (60/20/20 split); use shorter windows")

    def split(s: np.ndarray) -> Split:
        idx = s[:, None] + np.arange(T)[None, :]
        return Split(inputs=season[idx], targets=counts[idx], groups=s.astype(np.int64),
                     window_start=s.astype(np.int64))

    train, val, test = (split(starts[k]) for k in ("train", "val", "test"))
    b1, b2 = int(round(0.6 * n_weeks)), int(round(0.8 * n_weeks))
    fmt = lambda k: f"{dates[k]:%Y-%m-%d}"  # noqa: E731
    src = ("the Cola-GNN 'state360' benchmark (CDC ILINet ILITOTAL, 2010w40-2017w35; New York "
           "state without New York City; Florida removed for missing data)"
           if dataset == "state360" else
           "the CDC ILINet state export 2016w40-2024w44 (New York = New York state + New York "
           "City; DC, PR, VI and the Northern Mariana Islands dropped)")
    description = f"""\
Forecast weekly influenza-like-illness (ILI) visits in {len(codes)} US states {horizon} weeks ahead.
Data: {src}.
{n_weeks} consecutive weeks starting {fmt(0)}. Each value is the number of outpatient visits for
ILI reported by the state's ILINet sentinel providers that week ({UNIT}; range
{counts.min():.0f}-{counts.max():.0f}, median {np.median(counts):.0f}). Counts include a
non-influenza background and depend on how many providers report (which changes over the years).
Targets: one series per state, named by postal code ({', '.join(codes[:6])}{', ...' if len(codes) > 6 else ''}).
Inputs: season_sin, season_cos = sin/cos(2 pi * day-of-year / 365.25) of each week's midweek day
(peaks of influenza are in December-March).
Constant: adjacency ({len(codes)}x{len(codes)}), 1 where two states share a border, ones on the
diagonal (Alaska and Hawaii have no neighbours; the Four Corners point contact is not counted).
Samples: windows of {T} consecutive weeks; the model sees the first {window} (context) and forecasts
the last {horizon} as a full rollout. Stride {stride} week(s); time is in weeks (0..{T - 1}).
Splits are chronological (60/20/20) on the forecast weeks: train forecasts weeks before
{fmt(b1)}, validation weeks {fmt(b1)} to {fmt(b2 - 1)}, test from {fmt(b2)}; windows whose forecast
weeks would straddle a boundary are dropped. A window's context may reach back into the previous
segment (data already observed by then), so validation and test contexts overlap training weeks.
Group = the start week index of the window.
Mechanistic prior: a discrete-time metapopulation SIR/renewal model started from the last context
week: visits = background + I, the background is a fitted share of the context minimum;
I <- R s [(1 - c) I + c mean_neighbours(I)], s <- s - I/N with N = pool x the state's mean weekly
visits. R, c, s0, pool and the background share are fitted and shared by all states."""
    return Task(
        name="influenza_usa", kind=TaskKind.TRAJECTORY, description=description,
        source=DataSource.REAL,
        provenance=(
            "CDC FluView Interactive / ILINet (https://gis.cdc.gov/grasp/fluview/"
            "fluportaldashboard.html), US public domain. "
            + ("Benchmark files from S. Deng, S. Wang, H. Rangwala, L. Wang, Y. Ning, 'Cola-GNN: "
               "Cross-location Attention based Graph Neural Networks for Long-term ILI Prediction', "
               "CIKM 2020 (amy-deng/colagnn @ 7da87d6, data/state360.txt and data/state-adj.txt); "
               "also used by F. Xie et al., EpiGNN, ECML-PKDD 2022."
               if dataset == "state360" else
               "Raw export redistributed in JoooZhou/ST-TSL @ 05c7654 (ILINet.csv); adjacency from "
               "Xiefeng69/EpiGNN @ 1c0bb8c (data/state-adj-50.txt), F. Xie et al., ECML-PKDD 2022.")),
        inputs=[Variable("season_sin", "", "sin of the phase of the week within the year"),
                Variable("season_cos", "", "cos of the phase of the week within the year")],
        targets=[Variable(code, UNIT, f"weekly ILI visits reported in {name}")
                 for name, code in zip(names, codes)],
        train=train, val=val, test=test,
        prior_code=PRIOR_CODE,
        prior_omits=("seasonal forcing of transmission (R does not change with the season, "
                     "school terms or weather); state-specific or time-varying transmission; "
                     "reporting and provider-count changes; travel beyond borders (air "
                     "travel); co-circulating non-influenza ILI; multiple strains and prior "
                     "immunity"),
        hybrid_code=HYBRID_CODE,
        family="epidemic",
        time=np.arange(T, dtype=np.float64),
        context=window,
        constants={"adjacency": adj.astype(np.float64)},
        options={"dataset": dataset, "window": window, "horizon": horizon, "stride": stride,
                 "states": codes, "first_week": fmt(0), "n_weeks": n_weeks,
                 "split_weeks": [b1, b2]},
    )
