"""Helper library that candidate models may import (``from nimm_jupyter.blocks import ...``).

Small, dependency-free building blocks so a candidate reads as a normal model definition:

* constrained mechanistic parameters (:class:`Positive`, :class:`Bounded`, :class:`Real`),
  reported by name as fitted parameters after training;
* :func:`mlp`, whose last layer starts at zero so a hybrid starts as its mechanistic core
  (an :class:`MLP`: the harness counts its weights as network parameters);
* :class:`SparseLaw`, a closed-form replacement for an :func:`mlp` (the ``distill``
  operator's child swaps it in with :func:`replace_networks`);
* :func:`euler_rollout` for uniformly sampled data (one step per sample, batched) and
  :func:`ode_rollout`, a torchdiffeq wrapper with a step cap and piecewise-constant inputs;
* :class:`Dynamics`, the dynamics form of a trajectory prior (``rhs(t, y, u)`` with named
  parameters), which the offline proposer can edit inside the equations.
"""
from __future__ import annotations

import math
import re
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

__all__ = [
    "Param", "Positive", "Bounded", "Real", "mlp", "euler_rollout", "ode_rollout",
    "normalise", "SolverStepLimit", "safe_log", "param_memo", "Dynamics", "MLP",
    "network_parameters", "law_features", "SparseLaw", "replace_networks",
]

# While a forward pass runs under param_memo(), each Param computes its constrained value once
# (a candidate calls self.rho() inside every Euler step: exp() per step, forward and backward).
_memo: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None


@contextmanager
def param_memo() -> Iterator[None]:
    """Within this block every :class:`Param` returns the value it computed first (per
    parameter tensor); the harness wraps each forward pass in one. Not needed in candidates."""
    global _memo
    outer, _memo = _memo, {}
    try:
        yield
    finally:
        _memo = outer


class Param(nn.Module):
    """A scalar (or small vector) mechanistic parameter; call it to get its value."""

    def __init__(self, init: float | list[float], shape: tuple[int, ...] | None = None):
        super().__init__()
        value = torch.as_tensor(init, dtype=torch.float32)
        if shape is not None:
            value = value.expand(shape).clone()
        self.raw = nn.Parameter(self._inverse(value))

    def _inverse(self, value: torch.Tensor) -> torch.Tensor:
        return value

    def value(self) -> torch.Tensor:
        """The constrained value computed from ``self.raw`` (subclasses override this)."""
        return self.raw

    def forward(self) -> torch.Tensor:
        if _memo is None:
            return self.value()
        hit = _memo.get(id(self))
        # the raw tensor differs between a plain forward and each functional/vmapped call
        if hit is not None and hit[0] is self.raw:
            return hit[1]
        v = self.value()
        _memo[id(self)] = (self.raw, v)
        return v


class Real(Param):
    """An unconstrained parameter."""


class Positive(Param):
    """A positive parameter, stored as its logarithm (good for rates spanning decades)."""

    def _inverse(self, value: torch.Tensor) -> torch.Tensor:
        if torch.any(value <= 0):
            raise ValueError(f"Positive parameter needs init > 0, got {value.tolist()}")
        return torch.log(value)

    def value(self) -> torch.Tensor:
        return torch.exp(self.raw)


class Bounded(Param):
    """A parameter kept inside ``(low, high)`` through a sigmoid."""

    def __init__(self, init: float, low: float, high: float, shape: tuple[int, ...] | None = None):
        if not low < init < high:
            raise ValueError(f"Bounded parameter needs low < init < high, got {low}, {init}, {high}")
        self.low, self.high = float(low), float(high)
        super().__init__(init, shape)

    def _inverse(self, value: torch.Tensor) -> torch.Tensor:
        p = (value - self.low) / (self.high - self.low)
        return torch.log(p) - torch.log1p(-p)

    def value(self) -> torch.Tensor:
        return self.low + (self.high - self.low) * torch.sigmoid(self.raw)


class MLP(nn.Sequential):
    """What :func:`mlp` returns: a plain ``nn.Sequential`` whose type marks it as the
    model's network part (counted by :func:`network_parameters`, sampled by the distill
    probe). Its ``state_dict`` keys are those of the ``nn.Sequential``."""


def network_parameters(model: nn.Module) -> int:
    """Trainable parameters inside the :class:`MLP` modules of ``model`` (0 for a model
    with no network, or whose networks were replaced by laws)."""
    seen: set[int] = set()
    n = 0
    for module in model.modules():
        if isinstance(module, MLP):
            for p in module.parameters():
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    n += p.numel()
    return n


def mlp(n_in: int, n_out: int, hidden: int = 32, depth: int = 2,
        activation: str = "tanh", zero_last: bool = True) -> MLP:
    """A small fully connected network; ``zero_last`` makes its initial output exactly 0."""
    acts = {"tanh": nn.Tanh, "relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU, "softplus": nn.Softplus}
    if activation not in acts:
        raise ValueError(f"unknown activation {activation!r}; choose from {sorted(acts)}")
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(max(depth - 1, 0)):
        layers += [nn.Linear(width, hidden), acts[activation]()]
        width = hidden
    last = nn.Linear(width, n_out)
    if zero_last:
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    layers.append(last)
    return MLP(*layers)


def normalise(x: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / scale`` with broadcasting over the last dimension."""
    return (x - mean) / scale


def euler_rollout(step: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor],
                  y0: torch.Tensor, u: torch.Tensor | None, n_steps: int,
                  dt: float = 1.0, clamp: tuple[float, float] | None = None) -> torch.Tensor:
    """Explicit Euler for uniformly sampled data, batched over trajectories.

    ``step(y, u_t, k)`` returns dy/dt for state ``y`` ``(B, S)`` and inputs ``u_t``
    ``(B, U)`` at step ``k`` (``u`` is ``(B, T, U)``; ``k`` indexes it). Returns the
    ``n_steps`` states *after* ``y0``: ``(B, n_steps, S)``. ``clamp`` bounds the state
    to keep an unstable candidate finite while it trains.
    """
    ys = []
    y = y0
    empty = y0.new_zeros(y0.shape[0], 0)
    for k in range(n_steps):
        u_k = u[:, k] if u is not None and u.shape[-1] else empty
        y = y + dt * step(y, u_k, k)
        if clamp is not None:
            y = y.clamp(*clamp)
        ys.append(y)
    return torch.stack(ys, dim=1)


class SolverStepLimit(RuntimeError):
    """Raised when an adaptive ODE solve needs more steps than allowed."""


# Steppers of the plain-torch path. Each gets its stage times as ready scalar tensors and
# fuses "y + a * k" into one torch.add(alpha=...): on a small system every operator costs a
# few microseconds on CPU whatever its size, and the solver's own were a large share of an
# epoch (docs/BENCHMARKS.md, ode_rollout), so every op saved per stage counts.
def _euler(f: Callable, ts: tuple, y: torch.Tensor, h: float, u: torch.Tensor) -> torch.Tensor:
    return torch.add(y, f(ts[0], y, u), alpha=h)


def _midpoint(f: Callable, ts: tuple, y: torch.Tensor, h: float, u: torch.Tensor) -> torch.Tensor:
    k1 = f(ts[0], y, u)
    return torch.add(y, f(ts[1], torch.add(y, k1, alpha=h / 2), u), alpha=h)


def _rk4(f: Callable, ts: tuple, y: torch.Tensor, h: float, u: torch.Tensor) -> torch.Tensor:
    # the classic RK4 tableau (torchdiffeq's "rk4" is the 3/8 rule: same order, not bitwise)
    k1 = f(ts[0], y, u)
    k2 = f(ts[1], torch.add(y, k1, alpha=h / 2), u)
    k3 = f(ts[1], torch.add(y, k2, alpha=h / 2), u)
    k4 = f(ts[2], torch.add(y, k3, alpha=h), u)
    return torch.add(y, torch.add(k1, k2 + k3, alpha=2.0) + k4, alpha=h / 6)


# the fixed-step methods integrated in plain torch: stepper, function evaluations per step
_STEPPERS: dict[str, tuple[Callable, int]] = {"euler": (_euler, 1), "midpoint": (_midpoint, 2),
                                              "rk4": (_rk4, 4)}


def _fixed_steps(f: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                 y0: torch.Tensor, t: torch.Tensor, u: torch.Tensor | None, method: str,
                 substeps: list[int], clamp: tuple[float, float] | None = None) -> list[torch.Tensor]:
    """Fixed-step integration in plain torch, batched over the rows of ``y0`` ``(B, S)``:
    ``substeps[k]`` equal steps over ``t[k] -> t[k+1]`` with the inputs ``u[:, k]`` held
    (``u`` ``(B, T, U)`` or None), the state clamped after every step when ``clamp`` is
    given. Returns the ``len(t) - 1`` states after ``y0``. The shared core of
    :func:`ode_rollout` and :class:`Dynamics`; a candidate calls those instead."""
    step = _STEPPERS[method][0]
    empty = y0.new_zeros(y0.shape[0], 0)
    has_u = u is not None and u.shape[-1] > 0
    dts = (t[1:] - t[:-1]).tolist()
    if not dts:
        return []
    # every step's stage times (start, middle, end), built by a few ops and unbound once
    steps = [(k, j, dt / n) for k, (dt, n) in enumerate(zip(dts, substeps)) for j in range(n)]
    interval, j, h_of = (torch.tensor(c, dtype=dtype, device=t.device)
                         for c, dtype in zip(zip(*steps), (torch.long, t.dtype, t.dtype)))
    start = t[interval] + j * h_of
    stages = torch.stack([start, start + h_of / 2, start + h_of], dim=1).flatten().unbind(0)
    y, out, i = y0, [], 0
    for k, (dt, n) in enumerate(zip(dts, substeps)):
        u_k = u[:, k] if has_u else empty
        h = dt / n
        for _ in range(n):
            y = step(f, stages[i:i + 3], y, h, u_k)
            i += 3
            if clamp is not None:
                y = y.clamp(*clamp)
        out.append(y)
    return out


def ode_rollout(f: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                y0: torch.Tensor, t: torch.Tensor, u: torch.Tensor | None = None,
                method: str = "rk4", max_steps: int = 10_000, step_size: float | None = None,
                **options) -> torch.Tensor:
    """Solve dy/dt = f(t, y, u(t)), batched over the rows of ``y0``; returns ``(B, len(t), S)``.

    ``u`` ``(B, T, U)`` is held piecewise constant between the sample times ``t``.
    Fixed-step methods take one step per interval unless ``step_size`` is given (then each
    interval is split into equal steps no longer than it; a smaller step stabilises a stiff
    prior). ``"euler"``, ``"midpoint"`` and ``"rk4"`` (classic tableau) run in plain torch,
    which costs far less per step than torchdiffeq's solver loop on small systems
    (docs/BENCHMARKS.md, ode_rollout); other methods, or any further solver keyword, go to
    torchdiffeq's ``odeint`` (``rtol``, ``atol``, ``options={...}``). At most ``max_steps``
    function evaluations are allowed, else :class:`SolverStepLimit` is raised (before
    integrating, for a fixed step), so a stiff candidate cannot hang a search.
    """
    solver_options = dict(options.pop("options", None) or {})
    fixed = method in ("euler", "midpoint", "rk4", "explicit_adams", "implicit_adams")
    if step_size is not None:
        if not fixed:
            raise ValueError(f"step_size applies to fixed-step methods, not {method!r} "
                             "(adaptive solvers take rtol/atol)")
        solver_options["step_size"] = float(step_size)
    if method in _STEPPERS and not options and set(solver_options) <= {"step_size"}:
        dts = (t[1:] - t[:-1]).tolist()
        step = solver_options.get("step_size")
        # 1e-9: an interval that is a whole number of steps is not split once more by rounding
        substeps = [1 if step is None else max(1, math.ceil(dt / float(step) - 1e-9))
                    for dt in dts]
        evals = _STEPPERS[method][1] * sum(substeps)
        if evals > max_steps:
            raise SolverStepLimit(f"fixed-step {method} needs {evals} function evaluations, "
                                  f"over max_steps={max_steps}")
        ys = _fixed_steps(f, y0, t, u, method, substeps)
        return torch.stack([y0, *ys], dim=1)
    if fixed and "step_size" not in solver_options:
        solver_options["step_size"] = float((t[1] - t[0]).item()) if t.shape[0] > 1 else 1.0
    if solver_options:
        options["options"] = solver_options
    return _torchdiffeq_rollout(f, y0, t, u, method, max_steps, **options)


def _torchdiffeq_rollout(f: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                        y0: torch.Tensor, t: torch.Tensor, u: torch.Tensor | None, method: str,
                        max_steps: int, **options) -> torch.Tensor:
    """:func:`ode_rollout` through torchdiffeq's ``odeint`` (``options`` go to it unchanged),
    counting function evaluations against ``max_steps``; kept separate so
    ``benchmarks/bench_ode_rollout.py`` can time it against the plain-torch path."""
    from torchdiffeq import odeint

    counter = {"n": 0}
    t0 = t[0]
    span = (t[-1] - t[0]).clamp_min(1e-12)
    T = t.shape[0]

    def rhs(tt: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        counter["n"] += 1
        if counter["n"] > max_steps:
            raise SolverStepLimit(f"ODE solver exceeded max_steps={max_steps}")
        if u is None or u.shape[-1] == 0:
            ut = y.new_zeros(y.shape[0], 0)
        else:
            idx = int(((tt - t0) / span * (T - 1)).floor().clamp(0, T - 1).item())
            ut = u[:, idx]
        return f(tt, y, ut)

    sol = odeint(rhs, y0, t, method=method, **options)
    return sol.transpose(0, 1)


def safe_log(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``log(max(x, eps))``: mechanistic laws with ln(K/V) stay finite when V reaches 0."""
    return torch.log(x.clamp_min(eps))



class Dynamics(nn.Module):
    """Base class of a trajectory prior written in dynamics form: ``dy/dt = rhs(t, y, u)``.

    Subclass it as ``class Model(Dynamics)``, call ``super().__init__(spec)`` first, make each
    constant a :class:`Param` attribute and write :meth:`rhs`. The state is the task's targets
    in ``spec.target_names`` order (``self.state_names``); inputs follow ``spec.input_names``.
    :meth:`forward` (the trajectory contract) integrates from the last context step with
    fixed-step RK4 in plain torch, ``substeps`` steps per sample interval, inputs held
    piecewise constant; set ``clamp = (low, high)`` to bound the state of an unstable prior.
    Because the equations are a method, the offline proposer can add a network or a
    mechanistic term to one state's derivative in a subclass (``super().rhs(...) + term``).
    """

    substeps: int = 1
    clamp: tuple[float, float] | None = None

    def __init__(self, spec) -> None:
        super().__init__()
        self.state_names: list[str] = list(spec.target_names)
        self.input_names: list[str] = list(spec.input_names)

    def rhs(self, t: torch.Tensor, y: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """dy/dt ``(B, S)`` for state ``y`` ``(B, S)`` and inputs ``u`` ``(B, U)`` at time ``t``."""
        raise NotImplementedError("a Dynamics prior must define rhs(self, t, y, u)")

    def forward(self, y_context: torch.Tensor, u: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        c = y_context.shape[1]
        n = max(int(self.substeps), 1)
        ys = _fixed_steps(self.rhs, y_context[:, -1], t[c - 1:], u[:, c - 1:], "rk4",
                          [n] * (t.shape[0] - c), self.clamp)
        return torch.stack(ys, dim=1)


# -- closed-form laws (the distill operator) --------------------------------------------------
# The term library of a distilled law, one home for its meaning: the driver's sparse fit
# evaluates these (numbers only) and a distilled candidate's SparseLaw evaluates the same
# ones, so a fitted coefficient means the same thing in both. ``{i}`` is an input index.
LAW_TERMS: dict[str, Callable[..., torch.Tensor]] = {
    "1": lambda x: torch.ones_like(x[:, 0]),
    "x{i}": lambda x, i: x[:, i],
    "x{i}^2": lambda x, i: x[:, i] ** 2,
    "x{i}*x{j}": lambda x, i, j: x[:, i] * x[:, j],
    "log|x{i}|": lambda x, i: torch.log(x[:, i].abs().clamp_min(1e-8)),
    "exp(-x{i})": lambda x, i: torch.exp(-x[:, i].clamp(-30.0, 30.0)),
    "x{i}/(1+|x{i}|)": lambda x, i: x[:, i] / (1.0 + x[:, i].abs()),
}


def _parse_term(term: str) -> tuple[Callable[..., torch.Tensor], tuple[int, ...]]:
    indices = tuple(int(i) for i in re.findall(r"x(\d+)", term))
    pattern = re.sub(r"x\d+", "x{}", term)
    for name, fn in LAW_TERMS.items():
        if name.replace("{i}", "{}").replace("{j}", "{}") == pattern:
            bound: dict[str, int] = {}
            for slot, i in zip(re.findall(r"\{(\w)\}", name), indices):
                if bound.setdefault(slot, i) != i:
                    break
            else:
                return fn, tuple(bound.values())
    raise ValueError(f"unknown law term {term!r}; terms: {', '.join(LAW_TERMS)}")


def law_features(x: torch.Tensor, terms: list[str]) -> torch.Tensor:
    """The library matrix ``(N, len(terms))`` of ``terms`` at inputs ``x`` ``(N, n_in)``;
    a term is ``1``, ``xi``, ``xi^2``, ``xi*xj``, ``log|xi|``, ``exp(-xi)`` or
    ``xi/(1+|xi|)`` with ``i``, ``j`` input indices (e.g. ``"x0*x1"``)."""
    cols = []
    for term in terms:
        fn, idx = _parse_term(term)
        cols.append(fn(x, *idx))
    return torch.stack(cols, dim=-1)


class SparseLaw(nn.Module):
    """A closed-form stand-in for an :func:`mlp` with the same call (``(..., n_in) ->
    (..., n_out)``), output ``k`` being ``sum_t c_kt * term_t(x)``. ``laws[k]`` maps term names (see
    :func:`law_features`) to starting coefficients for output ``k``; each coefficient is a
    :class:`Real` parameter ``c<k>_<t>``, so training refits it and reports it by name."""

    def __init__(self, n_in: int, laws: list[dict[str, float]]):
        super().__init__()
        self.n_in = int(n_in)
        self.terms = [list(law) for law in laws]
        for k, law in enumerate(laws):
            for t, (term, c) in enumerate(law.items()):
                _, idx = _parse_term(term)
                if any(i >= self.n_in for i in idx):
                    raise ValueError(f"law term {term!r} needs more than {n_in} inputs")
                setattr(self, f"c{k}_{t}", Real(float(c)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        outs = []
        for k, terms in enumerate(self.terms):
            y = flat.new_zeros(flat.shape[0])
            if terms:
                feats = law_features(flat, terms)
                coef = torch.stack([getattr(self, f"c{k}_{t}")().reshape(()) for t in range(len(terms))])
                y = feats @ coef.to(feats.dtype)
            outs.append(y)
        return torch.stack(outs, dim=-1).reshape(*x.shape[:-1], len(self.terms))


def replace_networks(model: nn.Module, laws: dict[str, nn.Module]) -> None:
    """Swap each :class:`MLP` of ``model`` named by a key of ``laws`` (a dotted module path
    as ``named_modules`` gives it, e.g. ``"net"``) for its replacement, in place."""
    for path, law in laws.items():
        parent_path, _, name = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        if not isinstance(getattr(parent, name, None) if not name.isdigit() else parent[int(name)], MLP):
            raise ValueError(f"{path!r} is not an mlp() of this model")
        if name.isdigit():
            parent[int(name)] = law
        else:
            setattr(parent, name, law)
