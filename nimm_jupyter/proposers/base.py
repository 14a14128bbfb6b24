"""Proposer interface: who writes candidate code (Claude, the offline grammar, a replay file)."""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


@dataclass
class Strategy:
    """One way of joining a neural part to the mechanism; it roots a branch."""

    title: str  # short, e.g. "neural time-varying growth rate"
    description: str  # what attaches where, and why
    key: str = ""  # stable identifier used by grammar-based proposers


@dataclass(frozen=True)
class TrainSeries:
    """The training split of a trajectory task as arrays, for a proposer that screens
    residuals against it (the offline proposer's term ranking). Never put into a prompt:
    raw values can coincide with a simulator's constants."""

    time: "np.ndarray"  # (T,)
    states: "np.ndarray"  # (N, T, S) the observed targets, NaN where missing
    inputs: "np.ndarray"  # (N, T, U)
    context: int  # observed steps the model is given before it forecasts


@dataclass(frozen=True)
class MechanismFit:
    """A fitted mechanism's teacher-forced one-step predictions ``(N, T-C, S)`` on the
    training split and their sensitivity to each scalar constant (by name), as its
    sandboxed job returned them."""

    one_step: "np.ndarray"
    sensitivity: "dict[str, np.ndarray]" = field(default_factory=dict)


@dataclass
class ProposalContext:
    """Everything a proposer may know about the task; never test scores, never keys."""

    task_name: str
    kind: str
    description: str  # the task's natural-language description
    user_notes: str  # the notebook cell body / --describe text
    input_names: list[str]
    target_names: list[str]
    units: dict[str, str]
    sizes: dict[str, int]
    prior_code: str
    prior_omits: str
    interface: str  # the per-kind candidate interface text (docs/CANDIDATES.md excerpt)
    family: str = "generic"
    seed_code: str | None = None  # model code the user gave in a fenced block
    extras: dict[str, Any] = field(default_factory=dict)
    training: str = ""  # how candidates are trained (TrainConfig.describe()), set by the search
    data_view: str = ""  # bounded summary of the training data (dataview.data_view)
    train_series: TrainSeries | None = None  # trajectory tasks: the training split's arrays
    # Per call (the search sets these on a copy; they are not part of the cached task block):
    memory: list[str] = field(default_factory=list)  # search-wide findings: edit -> effect
    in_progress: list[str] = field(default_factory=list)  # nodes proposed but not yet scored
    # teacher-forced one-step predictions ``(N, T-C, S)`` on the training split of a fitted
    # mechanism, as its sandboxed job returned them, to rank terms on its residual: the
    # user's prior (node 0) once scored ok, else the best ok node its proposer marked
    # ``meta["mechanistic"]`` (search.prior_root.reference_one_step); None before that
    reference_one_step: "np.ndarray | None" = None
    # how those predictions move with each scalar constant of that mechanism, by name:
    # d(prediction)/d(log constant), each (N, T-C, S) (modeling.sensitivity); {} without
    reference_sensitivity: "dict[str, np.ndarray]" = field(default_factory=dict)
    # the same two arrays for every ok node that is the prior or that its proposer marked
    # ``meta["mechanistic"]``, by node id: what an edit of one of them ranks on
    fits: "dict[int, MechanismFit]" = field(default_factory=dict)
    prior_status: str | None = None  # the user's prior's (node 0) evaluation status once scored
    prior_note: str = ""  # where the scored prior's validation error is largest (prior_root)


@dataclass
class NodeView:
    """A node as shown to a proposer: code, the change it made, metrics without test."""

    id: int
    branch: int
    operator: str
    change: str
    code: str
    status: str  # evaluation status value ("ok", "runtime_error", ...)
    metrics: dict[str, Any]  # EvalResult.for_proposer()
    strategy: Strategy | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # proposer-private (e.g. grammar genome)


@dataclass
class Proposal:
    code: str | None  # None when the proposer failed to produce code
    change: str  # the one change it claims to make (or the draft's summary)
    error: str | None = None  # why there is no code (shown as the node's failure)
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0  # USD
    raw: str = ""  # full response text (for the journal; never contains keys)
    meta: dict[str, Any] = field(default_factory=dict)


class Proposer(abc.ABC):
    name: str = "base"

    @abc.abstractmethod
    def strategies(self, ctx: ProposalContext, k: int, exclude: list[Strategy]) -> list[Strategy]:
        """Up to ``k`` distinct integration strategies, none near-duplicate of ``exclude``."""

    @abc.abstractmethod
    def draft(self, ctx: ProposalContext, strategy: Strategy | None) -> Proposal:
        """A first model for a branch (or an independent draft when ``strategy`` is None)."""

    @abc.abstractmethod
    def refine(self, ctx: ProposalContext, parent: NodeView, history: list[NodeView]) -> Proposal:
        """A child that changes exactly one thing in ``parent``; ``history`` = earlier edits."""

    @abc.abstractmethod
    def debug(self, ctx: ProposalContext, failed: NodeView) -> Proposal:
        """A fix for a failed node, given its error message."""

    def distill(self, ctx: ProposalContext, parent: NodeView, table: str, law: str,
                law_error: str) -> Proposal | None:
        """A closed-form child of ``parent`` from its networks' sampled ``table`` and the
        sparse fit's ``law`` (the ``distill`` operator), or None to keep the sparse fit's
        own child (the default: only an LLM adds a physical reading)."""
        return None

    def notice(self, ctx: ProposalContext) -> str | None:
        """One line the user should read once before the search starts (what this proposer
        cannot use of what they gave), or None."""
        return None

    def close(self) -> None:  # pragma: no cover - optional
        pass
