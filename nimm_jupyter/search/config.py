"""The settings of a search, each default defined once: :class:`SearchConfig` and its parts.

A :class:`SearchConfig` is frozen; :meth:`SearchConfig.with_overrides` is the one place where
flat keyword settings (what :func:`~nimm_jupyter.search.search`, ``resume``, the CLI and the
magics pass) are checked and applied. :meth:`SearchConfig.to_dict` writes the flat format the
journal has always stored, and :meth:`SearchConfig.from_dict` reads it back, so run
directories written before these classes existed still load and resume.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..execution.base import EVAL_TIMEOUT_S
from ..modeling.config import TrainConfig
from .tree import NEAR_DUPLICATE

__all__ = ["ConfigError", "RayConfig", "ExecutorConfig", "Limits", "SearchConfig",
           "RESUMABLE", "TrainConfig"]


class ConfigError(ValueError):
    """A bad setting: an unknown key or an out-of-range value (the message names it)."""


@dataclass(frozen=True)
class RayConfig:
    """How evaluations run on a Ray cluster (ignored by the local executor, which refuses
    them when set)."""

    address: str | None = None  # None: RAY_ADDRESS, else a local Ray instance
    cpus_per_eval: float | None = None
    gpus_per_eval: float | None = None
    retries: int | None = None  # re-runs of an evaluation whose worker died (Ray's default 0)

    # field -> the keyword make_executor (and the journal's executor_options) calls it
    KEYWORDS = {"address": "ray_address", "cpus_per_eval": "num_cpus",
                "gpus_per_eval": "num_gpus", "retries": "retries"}

    def options(self) -> dict[str, Any]:
        """The set fields as ``make_executor`` keywords."""
        return {key: getattr(self, name) for name, key in self.KEYWORDS.items()
                if getattr(self, name) is not None}

    @property
    def is_set(self) -> bool:
        return bool(self.options())


@dataclass(frozen=True)
class ExecutorConfig:
    """Where evaluations run. ``kind`` is one of
    :data:`~nimm_jupyter.execution.factory.EXECUTOR_NAMES` (``local``, ``ray``, ``auto``), or,
    in a journal, the class name of an executor instance that was passed in directly.
    ``extra`` holds other constructor keywords (e.g. ``memory_mb``)."""

    kind: str = "local"
    ray: RayConfig = field(default_factory=RayConfig)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        """``executor_options``: the keywords ``make_executor`` gets besides name, workers
        and device (also the journal's format)."""
        return {**self.ray.options(), **dict(self.extra)}

    @classmethod
    def from_options(cls, kind: str, options: Mapping[str, Any] | None) -> "ExecutorConfig":
        opts = dict(options or {})
        ray = {name: opts.pop(key) for name, key in RayConfig.KEYWORDS.items() if key in opts}
        return cls(kind=kind, ray=RayConfig(**ray), extra=opts)


@dataclass(frozen=True)
class Limits:
    """What ends a search besides its budget of evaluated nodes (None: no limit)."""

    time_limit: float | None = None  # wall-clock seconds, earlier sessions included
    max_tokens: int | None = None
    max_cost: float | None = None  # USD

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is not None and v <= 0:
                raise ConfigError(f"{f.name} must be > 0 when given, got {v}")


@dataclass(frozen=True)
class SearchConfig:
    """Everything that shapes a search except the task and where it is journaled.

    ``train`` None means the harness's defaults with the search's ``seed``.
    """

    budget: int = 20  # evaluated nodes
    branches: int = 3  # integration strategies explored side by side
    policy: str = "nimmgen"  # a name in nimm_jupyter.search.policies.POLICIES
    policy_options: Mapping[str, Any] = field(default_factory=dict)
    proposer: str = "auto"  # auto | offline | anthropic | replay (or a recorded class name)
    proposer_options: Mapping[str, Any] = field(default_factory=dict)
    model: str | None = None  # LLM model name for the anthropic proposer
    seed: int = 0
    workers: int = 1  # evaluations in flight
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    limits: Limits = field(default_factory=Limits)
    train: TrainConfig | None = None
    eval_timeout: float = EVAL_TIMEOUT_S  # hard wall-clock limit of one evaluation (s)
    debug_depth: int = 2  # debug attempts on a failed node
    patience: int = 3  # non-improving refinements before a branch is closed
    near_duplicate: float = NEAR_DUPLICATE  # draft code similarity that counts as a duplicate

    # -- checks ------------------------------------------------------------------------
    def validate(self) -> "SearchConfig":
        """Raise :class:`ConfigError` naming the first bad value; returns self."""
        for name in ("budget", "branches", "workers"):
            if getattr(self, name) < 1:
                unit = " node" if name == "budget" else ""
                raise ConfigError(f"{name} must be >= 1{unit}, got {getattr(self, name)}")
        if not self.eval_timeout > 0:  # 0 would time every evaluation out at once
            raise ConfigError(f"eval_timeout must be > 0 seconds, got {self.eval_timeout}")
        self.limits.validate()
        if self.train is not None and not isinstance(self.train, TrainConfig):
            raise ConfigError(f"train must be a TrainConfig, got {type(self.train).__name__}")
        return self

    def train_config(self) -> TrainConfig:
        """The training settings of every candidate (never saving weights by itself)."""
        base = self.train if self.train is not None else TrainConfig(seed=self.seed)
        return dataclasses.replace(base, save_weights=None)

    # -- flat keyword settings -----------------------------------------------------------
    def with_overrides(self, only: frozenset[str] | None = None,
                       **overrides: Any) -> "SearchConfig":
        """A copy with flat settings changed (see :data:`FLAT_KEYS`), validated.

        ``executor`` is a name, ``executor_options`` its keywords (``ray_address``,
        ``num_cpus``, ``num_gpus``, ``retries``, ...); ``time_limit``, ``max_tokens`` and
        ``max_cost`` set :attr:`limits`. ``only`` restricts which keys may change (resume).
        """
        unknown = sorted(set(overrides) - set(FLAT_KEYS))
        if unknown:
            raise ConfigError(_unknown_message(unknown[0], FLAT_KEYS))
        if only is not None:
            fixed = sorted(set(overrides) - only)
            if fixed:
                raise ConfigError(f"cannot change {fixed} of an existing search; allowed: "
                                  f"{', '.join(sorted(only))}")
        top: dict[str, Any] = {}
        limits: dict[str, Any] = {}
        for key, value in overrides.items():
            if key in _LIMIT_KEYS:
                limits[key] = value
            elif key not in ("executor", "executor_options"):
                top[key] = _coerce(key, value)
        if "executor" in overrides or "executor_options" in overrides:
            kind = overrides.get("executor", self.executor.kind)
            if not isinstance(kind, str):
                raise ConfigError(f"executor must be a name, got {type(kind).__name__}")
            opts = overrides.get("executor_options", self.executor.options())
            top["executor"] = ExecutorConfig.from_options(kind, opts)
        if limits:
            top["limits"] = dataclasses.replace(self.limits, **limits)
        return dataclasses.replace(self, **top).validate()

    # -- the journal's format ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Flat and JSON-able, as the journal stores it."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "executor":
                out["executor"], out["executor_options"] = value.kind, value.options()
            elif f.name == "limits":
                out.update(dataclasses.asdict(value))
            elif f.name == "train":
                out["train"] = self.train_config().to_dict()
            elif isinstance(value, Mapping):
                out[f.name] = dict(value)
            else:
                out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SearchConfig":
        """Read :meth:`to_dict`'s format; unknown keys are ignored and missing ones keep
        their defaults (journals of older versions)."""
        kw: dict[str, Any] = {k: d[k] for k in _PLAIN_KEYS if k in d}
        kw["executor"] = ExecutorConfig.from_options(d.get("executor", ExecutorConfig.kind),
                                                     d.get("executor_options"))
        kw["limits"] = Limits(**{k: d[k] for k in _LIMIT_KEYS if k in d})
        train = d.get("train")
        kw["train"] = TrainConfig(**train) if train else None
        return cls(**kw)


_LIMIT_KEYS = tuple(f.name for f in dataclasses.fields(Limits))
_PLAIN_KEYS = tuple(f.name for f in dataclasses.fields(SearchConfig)
                    if f.name not in ("executor", "limits", "train"))
FLAT_KEYS = (*_PLAIN_KEYS, "executor", "executor_options", *_LIMIT_KEYS, "train")
# what resume() may change: budgets and where/how evaluations run, never the search's shape
RESUMABLE = frozenset({"budget", "workers", "device", *_LIMIT_KEYS, "model", "eval_timeout",
                       "patience", "debug_depth", "branches", "executor", "executor_options",
                       "proposer", "train"})
_INTS = frozenset({"budget", "branches", "workers", "seed", "debug_depth", "patience"})


def _coerce(key: str, value: Any) -> Any:
    """Numbers as the journal stores them (a CLI or magic may hand over numpy ints...)."""
    if key in _INTS:
        return int(value)
    if key == "eval_timeout":
        return float(value)
    if key in ("policy_options", "proposer_options"):
        return dict(value or {})
    return value


def _unknown_message(key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown search setting {key!r}{hint}; known: {', '.join(known)}"


@dataclass
class Settings:
    """What the journal stores about a search: the task it runs on and its
    :class:`SearchConfig`, written flat in the format journals have always had."""

    task_name: str
    config: SearchConfig = field(default_factory=SearchConfig)
    task_options: dict[str, Any] = field(default_factory=dict)
    task_source: str = "registry"  # "registry" (rebuilt by name) | "pickle" (run_dir/task.pkl)
    description: str = ""  # the user's notes for the proposer

    def to_dict(self) -> dict[str, Any]:
        return {"task_name": self.task_name, "task_options": dict(self.task_options),
                "task_source": self.task_source, **self.config.to_dict(),
                "description": self.description}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Settings":
        own = {k: d[k] for k in ("task_name", "task_options", "task_source", "description")
               if k in d}
        return cls(config=SearchConfig.from_dict(d), **own)
