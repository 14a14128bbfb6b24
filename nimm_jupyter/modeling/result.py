"""Evaluation outcome of one candidate: a status value, never a stray exception."""
from __future__ import annotations

import dataclasses
import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class Status(str, enum.Enum):
    OK = "ok"
    SYNTAX_ERROR = "syntax_error"
    CONTRACT_ERROR = "contract_error"
    RUNTIME_ERROR = "runtime_error"
    DIVERGED = "diverged"
    TIMEOUT = "timeout"
    OUT_OF_MEMORY = "out_of_memory"
    CRASHED = "crashed"
    CANCELLED = "cancelled"

    def is_candidate_fault(self) -> bool:
        """Whether the candidate itself caused this outcome (so a proposer should fix it).

        Candidate faults: bad source (syntax, contract), an exception while training, a fit that
        diverged, and running past the time or memory limit. The limits are the same for every
        candidate and a search sets them generously, so exceeding one is the model's cost (an
        infinite loop, a huge network, a stiff rollout), not the machine's. ``crashed`` (the
        worker process died without reporting: it cannot be told apart from a lost worker or
        node, so it is worth a retry) and ``cancelled`` are infrastructure outcomes; ``ok`` is
        no fault.
        """
        return self in _CANDIDATE_FAULTS


class StopReason(str, enum.Enum):
    """Why training ended (of the copy that was kept)."""

    CONVERGED = "converged"  # the L-BFGS polish met its gradient/step tolerance
    PATIENCE = "patience"  # validation error stopped improving (early stopping)
    EPOCH_CAP = "epoch_cap"  # the epoch / iteration budget ran out first
    TIME_LIMIT = "time_limit"  # the soft time limit of the config was reached
    DIVERGED = "diverged"  # the loss became non-finite for good


_CANDIDATE_FAULTS = frozenset({
    Status.SYNTAX_ERROR, Status.CONTRACT_ERROR, Status.RUNTIME_ERROR, Status.DIVERGED,
    Status.TIMEOUT, Status.OUT_OF_MEMORY,
})


@dataclass
class SplitScores:
    """RMSE on one split: original units, normalised (divided by the train std), per target.

    ``rmse``/``rmse_norm``/``per_target`` score the model's rollout (what a search selects
    on). The ``*_one_step`` fields score its teacher-forced one-step predictions (each step
    from the true previous steps, :func:`~.scoring.forward_one_step`) on trajectory tasks;
    they are None for tabular tasks (where one-step is the plain RMSE), for rows written
    before they existed, and where the job's model failed on a longer context. Validation
    and test ones come from the sequential reveal (:mod:`nimm_jupyter.execution.reveal`):
    the job never holds a target before it has predicted it. Test one-step fields leave
    with ``test`` in :meth:`EvalResult.for_proposer`.
    ``rmse_norm_se`` is the bootstrap standard error of ``rmse_norm`` over the split's
    trajectories or rows (:mod:`.noise`; None for one unit and for older rows).
    """

    rmse: float = float("nan")
    rmse_norm: float = float("nan")
    per_target: dict[str, float] = field(default_factory=dict)
    rmse_one_step: float | None = None
    rmse_norm_one_step: float | None = None
    per_target_one_step: dict[str, float] | None = None
    # trajectory tasks: normalised rollout RMSE over ranges of forecast steps ("1-10": ...)
    by_horizon: dict[str, float] | None = None
    rmse_norm_se: float | None = None
    # normalised rollout RMSE by input regime (e.g. "chemo_dose total 0 (n=5)"), driver-scored
    by_regime: dict[str, float] | None = None


@dataclass
class EvalResult:
    status: Status
    message: str = ""  # what went wrong: short, actionable text for an LLM or a person (errors only)
    train: SplitScores = field(default_factory=SplitScores)
    val: SplitScores = field(default_factory=SplitScores)
    test: SplitScores = field(default_factory=SplitScores)
    # {"epoch","train","val"} at each validated Adam epoch, then one point per L-BFGS round
    # (numbered on from the last epoch)
    loss_curve: list[dict[str, float]] = field(default_factory=list)
    parameters: dict[str, float] = field(default_factory=dict)  # fitted mechanistic params
    n_parameters: int = 0  # trainable parameter count
    n_network_parameters: int = 0  # of those, the ones inside blocks.mlp networks
    epochs: int = 0  # Adam epochs trained (the polish is counted in notes)
    wall_time: float = 0.0
    device: str = "cpu"
    seed: int = 0
    restarts: int = 1  # copies asked for (notes say when the model allowed only one)
    weights_path: str | None = None  # state_dict saved by the harness, when asked
    notes: list[str] = field(default_factory=list)  # remarks on a run that worked (restarts, time limit)
    # How the fit ended (None for results that never trained, and for rows from older versions)
    stop_reason: StopReason | None = None
    grad_norm: float = float("nan")  # norm of the training-loss gradient at the kept weights
    still_improving: bool = False  # the loss was still falling when training stopped
    untrained: bool = False  # the kept weights are (as good as) the initial ones: see notes
    # RMSE on each held-out intervention scenario of the task (Task.scenarios), computed by
    # the driver; never used for selection, never shown to a proposer
    scenarios: dict[str, SplitScores] = field(default_factory=dict)
    # a distill probe's answer only (modeling.network_probe): network path -> (inputs,
    # outputs) on the training split; handed to the caller, never journaled (see to_dict)
    network_samples: dict[str, tuple[Any, Any]] = field(default_factory=dict, repr=False)
    # a what-if's answer only (EvalRequest.predict_with): split/scenario -> the predictions
    # the driver scored; handed to the caller, never journaled (see to_dict)
    predictions: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def score(self) -> float:
        """What a search minimises: validation RMSE on the normalised scale (inf if failed)."""
        if not self.ok or self.val.rmse_norm != self.val.rmse_norm:
            return float("inf")
        return float(self.val.rmse_norm)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(dataclasses.replace(self, network_samples={}, predictions={}))
        d.pop("network_samples")
        d.pop("predictions")
        d["status"] = self.status.value
        d["stop_reason"] = self.stop_reason.value if self.stop_reason is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EvalResult":
        d = dict(d)
        d["status"] = Status(d["status"])
        if d["status"] is Status.OK and d.get("message") and "notes" not in d:
            # rows written before ``notes`` existed carried an ok run's remarks in ``message``
            d["notes"], d["message"] = [d["message"]], ""
        if d.get("stop_reason") is not None:
            d["stop_reason"] = StopReason(d["stop_reason"])
        for k in ("train", "val", "test"):
            d[k] = SplitScores(**d.get(k, {}))
        d["scenarios"] = {k: SplitScores(**v) for k, v in (d.get("scenarios") or {}).items()}
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})

    def for_proposer(self) -> dict[str, Any]:
        """The view a proposer may see: everything except test and scenario scores (the
        convergence fields ``stop_reason``, ``grad_norm``, ``still_improving`` and
        ``untrained`` included)."""
        d = self.to_dict()
        d.pop("test", None)
        d.pop("scenarios", None)
        d.pop("weights_path", None)
        return d

    @classmethod
    def failure(cls, status: Status, message: str, **kw: Any) -> "EvalResult":
        return cls(status=status, message=message[:2000], **kw)
