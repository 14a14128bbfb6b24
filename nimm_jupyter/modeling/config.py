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
        patience: epochs without validation progress before early stopping.
        lr: the initial Adam learning rate.
        batch_size: ``None`` for full batch (fastest for small data), else a mini-batch size.
        restarts: differently seeded copies of one candidate; the best by validation is kept.
        time_limit: soft limit in seconds, checked between epochs; ``None`` for none.
        save_weights: path for the trained ``state_dict``; ``None`` to keep nothing.
        threads: torch intra-op threads while training (small models are fastest on one).
    """

    seed: int = 0
    device: str = "cpu"
    max_epochs: int = 300
    patience: int = 40
    lr: float = 1e-2
    batch_size: int | None = None
    restarts: int = 1
    time_limit: float | None = None
    save_weights: str | None = None
    threads: int = 1

    def to_dict(self) -> dict[str, Any]:
        """Plain values, as journals and worker payloads store them."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Rebuild from :meth:`to_dict` output; keys this version does not know are ignored,
        so settings written by another version still load."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
