"""Evaluation outcome of one candidate: a status value, never a stray exception."""
from __future__ import annotations

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


@dataclass
class SplitScores:
    """RMSE on one split: original units, normalised (divided by the train std), per target."""

    rmse: float = float("nan")
    rmse_norm: float = float("nan")
    per_target: dict[str, float] = field(default_factory=dict)


@dataclass
class EvalResult:
    status: Status
    message: str = ""  # short, actionable text for an LLM or a person (empty when ok)
    train: SplitScores = field(default_factory=SplitScores)
    val: SplitScores = field(default_factory=SplitScores)
    test: SplitScores = field(default_factory=SplitScores)
    loss_curve: list[dict[str, float]] = field(default_factory=list)  # {"epoch","train","val"}
    parameters: dict[str, float] = field(default_factory=dict)  # fitted mechanistic params
    n_parameters: int = 0  # trainable parameter count
    epochs: int = 0
    wall_time: float = 0.0
    device: str = "cpu"
    seed: int = 0
    restarts: int = 1
    weights_path: str | None = None  # state_dict saved by the harness, when asked

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
        d = asdict(self)
        d["status"] = self.status.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EvalResult":
        d = dict(d)
        d["status"] = Status(d["status"])
        for k in ("train", "val", "test"):
            d[k] = SplitScores(**d.get(k, {}))
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})

    def for_proposer(self) -> dict[str, Any]:
        """The view a proposer may see: everything except test scores."""
        d = self.to_dict()
        d.pop("test", None)
        d.pop("weights_path", None)
        return d

    @classmethod
    def failure(cls, status: Status, message: str, **kw: Any) -> "EvalResult":
        return cls(status=status, message=message[:2000], **kw)
