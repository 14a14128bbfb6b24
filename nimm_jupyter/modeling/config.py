"""The training settings of one candidate evaluation: the one home of every harness default.

:class:`TrainConfig` is frozen so a config shared by a search, its executor and its journal
cannot be changed behind their backs; derive a variant with ``dataclasses.replace``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """Harness knobs; the defaults are what a search uses.

    Attributes:
        seed: seeds data order and the initialisation of copy 0 (copy ``k`` gets ``seed + k``).
        device: ``"cpu"`` or ``"cuda[:N]"``.
        max_epochs: epoch cap of the training loop.
        patience: epochs without hold-out progress before early stopping.
        lr: the initial Adam learning rate.
        batch_size: ``None`` for full batch (fastest for small data), else a mini-batch size.
        restarts: copies of one candidate, the best by validation kept; copy ``k > 0`` is
            seeded ``seed + k`` and starts from jittered mechanistic values (copy 0 does not).
        time_limit: soft limit in seconds, checked between epochs; ``None`` for none.
        save_weights: path for the trained ``state_dict``; ``None`` to keep nothing.
        threads: torch intra-op threads while training (small models are fastest on one).
        polish_iters: L-BFGS iterations of the full-batch polish that follows Adam (0: none).
        val_every: validate every this many epochs (patience still counts epochs).
        dtype: ``"float32"``, or ``"float64"`` for mechanistic fits that float32 limits.
        holdout: share of the training units (windows, groups or samples) held out for early
            stopping, weight selection and the polish (:func:`~nimm_jupyter.tasks.splits.
            holdout_indices`): the process that trains never holds validation targets.

    "Validation" in the training loop, its curves and its copy selection means this hold-out;
    the validation split itself is only scored, by the driver.
    """

    seed: int = 0
    device: str = "cpu"
    max_epochs: int = 150  # Adam's job is the basin; the L-BFGS polish does the rest
    patience: int = 40
    lr: float = 3e-2  # measured with the polish (docs/BENCHMARKS.md, fitting engine)
    batch_size: int | None = None
    restarts: int = 1
    time_limit: float | None = None
    save_weights: str | None = None
    threads: int = 1
    polish_iters: int = 100
    val_every: int = 5  # validating every epoch cost +30% of an epoch loop
    dtype: str = "float32"
    holdout: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout < 1.0:
            raise ValueError(f"holdout must be a share in (0, 1), got {self.holdout:g}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.polish_iters < 0 or self.val_every < 1:
            raise ValueError(f"need polish_iters >= 0 and val_every >= 1, got "
                             f"{self.polish_iters}, {self.val_every}")

    def describe(self) -> str:
        """How a candidate will be trained, as text for a proposer's prompt."""
        polish = (f" Then all parameters are polished jointly with full-batch L-BFGS (strong "
                  f"Wolfe line search, up to {self.polish_iters} iterations); whichever weights "
                  "are better on the hold-out are kept." if self.polish_iters else "")
        batch = "full batch" if self.batch_size is None else f"mini-batches of {self.batch_size}"
        restarts = (f" {self.restarts} copies are trained and the best on the hold-out is kept: "
                    "copy 0 from the given starting values, the others under other seeds with "
                    "jittered mechanistic starting values (Positive and nonzero Real within a "
                    "factor of 2, Bounded anywhere in the inner 90% of its range); one copy when "
                    "the model has neither random initialisation nor such a parameter."
                    if self.restarts > 1 else "")
        return (
            f"Training ({self.dtype}, {batch}): Adam at learning rate {self.lr:g} on the "
            "mean squared error of the normalised targets (each target divided by its training "
            "standard deviation; trajectory tasks: the full rollout), gradient norm clipped to "
            f"1, learning rate halved after {max(5, self.patience // 2)} epochs without "
            f"progress on a hold-out ({self.holdout:.0%} of the training trajectories, groups or "
            "rows; for windowed series the latest training windows), early stopping after "
            f"{self.patience} such epochs, at most {self.max_epochs} epochs; the best weights on "
            "the hold-out are kept. The validation and test splits are scored afterwards, on "
            "predictions, by a process the model never runs in." + polish
            + restarts + " Parameters: Positive is trained as its logarithm (steps are relative "
            "changes), Bounded through a logit, Real with steps scaled to its initial magnitude "
            "(at least 1), network weights as they are. Write starting values of the right "
            "order of magnitude; the harness reports when the fit never moved from them."
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain values, as journals and worker payloads store them."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Rebuild from :meth:`to_dict` output; keys this version does not know are ignored,
        so settings written by another version still load."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
