"""The one table of search flags: ``nimm search``/``nimm resume``, ``%%nimm_search`` and
``nimm bench`` all build their options from :data:`SEARCH_OPTIONS` and :data:`DATA_OPTIONS`,
so names, defaults and help cannot drift apart. Defaults shown in the help are read from
:class:`~.config.SearchConfig` and :class:`TrainConfig`; an option left out is simply not
passed on, so the config's own default applies.

:func:`search_overrides` turns parsed options into the flat settings that
:func:`~nimm_jupyter.search.search` and :func:`~nimm_jupyter.search.resume` take;
:func:`task_options` collects the task options. Both raise :class:`OptionError` naming the
flag, which each front end shows as a one-line error.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..modeling.config import TrainConfig
from ..execution.factory import EXECUTOR_NAMES
from .config import RayConfig, SearchConfig
from .policies import POLICIES

__all__ = ["Option", "OptionError", "SEARCH_OPTIONS", "DATA_OPTIONS", "RESUME_OPTIONS",
           "option", "search_overrides", "task_options", "train_override", "data_options"]

_SEARCH = SearchConfig()
_TRAIN = TrainConfig()


class OptionError(ValueError):
    """A bad combination or value of flags (the message names the flag)."""


@dataclass(frozen=True)
class Option:
    """One flag: what it sets, how it parses, and the help every front end shows.

    ``setting`` is a flat search setting (``budget``), a nested one (``train.max_epochs``,
    ``executor.ray.address``, ``proposer_options.path``), a task option
    (``task_options.n_patients``, or ``task_options`` for ``--option``), ``run_dir``, or a
    task-from-data column (``data.time``).
    """

    flag: str
    setting: str
    help: str
    type: Callable[[str], Any] | None = str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    default: Any = None  # what applies when the flag is not given (help text only)
    resumable: bool = False  # may change when a search is resumed
    positive: bool = False  # an integer that must be >= 1
    repeatable: bool = False

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")

    def add_to(self, parser: Any) -> None:
        """Add this flag to an argparse parser or argument group."""
        parser.add_argument(self.flag, **self.argparse_kwargs())

    def argparse_kwargs(self) -> dict[str, Any]:
        """Keywords for ``parser.add_argument(flag, **kw)`` (also IPython's ``@argument``).
        Every default is None (or [] when repeatable): "not given" stays visible."""
        text = self.help if self.default is None else f"{self.help} (default {self.default})"
        kw: dict[str, Any] = {"help": text, "default": [] if self.repeatable else None}
        if self.repeatable:
            kw["action"] = "append"
        if self.type is not str:
            kw["type"] = self.type
        if self.metavar:
            kw["metavar"] = self.metavar
        if self.choices:
            kw["choices"] = self.choices
        return kw


SEARCH_OPTIONS: tuple[Option, ...] = (
    Option("--budget", "budget", "max evaluated nodes", int, "N", default=_SEARCH.budget,
           resumable=True, positive=True),
    Option("--branches", "branches", "integration strategies explored side by side", int, "N",
           default=_SEARCH.branches, positive=True),
    # no argparse choices: the search names the policies when it refuses an unknown one
    Option("--policy", "policy", f"search policy: {' | '.join(POLICIES)}",
           default=_SEARCH.policy),
    Option("--policy-option", "policy_options", "policy option, e.g. distill_at=0 (nimmgen: "
           "never distil; repeatable)", metavar="KEY=VALUE", repeatable=True),
    Option("--seed", "seed", "random seed of the proposer, the policy and training", int, "N",
           default=_SEARCH.seed),
    Option("--proposer", "proposer", "who writes candidates: auto | offline | anthropic | "
           "openai | replay (auto: anthropic when ANTHROPIC_API_KEY is set; openai: any "
           "OpenAI-compatible server, OPENAI_API_KEY and OPENAI_BASE_URL)", default=_SEARCH.proposer,
           resumable=True),
    Option("--replay", "proposer_options.path", "recorded proposals for --proposer replay",
           metavar="FILE", resumable=True),
    Option("--model", "model", "LLM model name for the anthropic or openai proposer", resumable=True),
    Option("--workers", "workers", "parallel evaluations", int, "N", default=_SEARCH.workers,
           resumable=True, positive=True),
    Option("--device", "device", "auto | cpu | cuda | cuda:N", default=_SEARCH.device,
           resumable=True),
    Option("--executor", "executor", "where evaluations run (auto: ray when RAY_ADDRESS is "
           "set)", choices=EXECUTOR_NAMES, default=_SEARCH.executor.kind, resumable=True),
    Option("--ray-address", "executor.ray.address", "Ray cluster address (with --executor ray)",
           metavar="ADDR", resumable=True),
    Option("--cpus-per-eval", "executor.ray.cpus_per_eval", "Ray: CPUs per evaluation", float,
           "F", resumable=True),
    Option("--gpus-per-eval", "executor.ray.gpus_per_eval", "Ray: GPUs per evaluation", float,
           "F", resumable=True),
    Option("--retries", "executor.ray.retries",
           "Ray: re-runs of an evaluation whose worker died", int, "N", resumable=True),
    Option("--max-epochs", "train.max_epochs", "training epochs per candidate", int, "N",
           default=_TRAIN.max_epochs, resumable=True, positive=True),
    Option("--eval-timeout", "eval_timeout", "wall-clock limit of one evaluation (s)", float,
           "S", default=f"{_SEARCH.eval_timeout:g}", resumable=True),
    Option("--time-limit", "time_limit", "wall-clock budget of the search (s)", float, "S",
           resumable=True),
    Option("--max-tokens", "max_tokens", "token budget", int, "N", resumable=True),
    Option("--max-cost", "max_cost", "cost budget (USD)", float, "USD", resumable=True),
    Option("--run-dir", "run_dir", "journal directory (default ./runs/<task>-<time>-<id>)",
           metavar="DIR"),
    Option("--option", "task_options", "task option, e.g. n_patients=200 (repeatable)",
           metavar="KEY=VALUE", repeatable=True),
    Option("--n-patients", "task_options.n_patients", "shortcut for --option n_patients=N",
           int, "N"),
)
# columns of a task built from a table (a CSV file in the CLI, a DataFrame in the magic)
DATA_OPTIONS: tuple[Option, ...] = (
    Option("--time", "data.time", "time column (trajectory task; omit for tabular data)",
           metavar="COL"),
    Option("--targets", "data.targets", "target columns, comma-separated", metavar="A,B"),
    Option("--inputs", "data.inputs", "input columns, comma-separated (exogenous inputs of a "
           "trajectory task, features of a tabular one)", metavar="C,D"),
    Option("--group", "data.group", "column naming the unit (patient, region) of each row",
           metavar="G"),
    Option("--context", "data.context", "observed time steps given to the model before it "
           "forecasts (default: fits the data)", int, "K", positive=True),
    Option("--horizon", "data.horizon", "time steps the model must forecast (default: the "
           "whole test window)", int, "H", positive=True),
    Option("--test-last", "data.test_last", "hold out the last N time points of every "
           "series as the test window (default: about a fifth)", int, "N", positive=True),
    Option("--val-last", "data.val_last", "the N time points before the test window are "
           "validation (default: as many as --test-last)", int, "N", positive=True),
    Option("--split-by", "data.split_by", "many series: hold out whole series (group) or "
           "the end of every series (time)", choices=("group", "time")),
    Option("--test-size", "data.test_size", "tabular data or --split-by group: the test "
           "share (a fraction below 1, or a count of rows/series)", float, "F"),
    Option("--val-size", "data.val_size", "the validation share, as --test-size", float, "F"),
)
RESUME_OPTIONS: tuple[Option, ...] = tuple(o for o in SEARCH_OPTIONS if o.resumable)
_RAY_FLAGS = tuple(o for o in SEARCH_OPTIONS if o.setting.startswith("executor.ray."))


def option(flag: str) -> Option:
    """The table's entry for ``flag``."""
    for o in SEARCH_OPTIONS + DATA_OPTIONS:
        if o.flag == flag:
            return o
    raise KeyError(flag)


def _given(args: Any, options: Iterable[Option]) -> dict[Option, Any]:
    return {o: getattr(args, o.dest) for o in options
            if getattr(args, o.dest, None) not in (None, [])}


def search_overrides(args: Any, options: Iterable[Option] = SEARCH_OPTIONS,
                     train_base: Mapping[str, Any] | None = None,
                     defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The flat search settings the given flags set (flags not given are left out).

    ``train_base`` is the training config ``--max-epochs`` changes (a resumed run's own;
    default: the harness's with the search's seed). ``defaults`` (setting -> value, e.g. the
    magics' ``%config`` values) stand in for flags that are not given, checked the same way.
    """
    options = tuple(options)
    given = {o: defaults[o.setting] for o in options
             if defaults and defaults.get(o.setting) is not None}
    given.update(_given(args, options))
    out: dict[str, Any] = {}
    ray: dict[str, Any] = {}
    for opt, value in given.items():
        if opt.positive and value < 1:
            raise OptionError(f"{opt.flag} must be a positive integer, got {value}")
        if opt.setting.startswith("executor.ray."):
            ray[RayConfig.KEYWORDS[opt.setting.rsplit(".", 1)[1]]] = value
        elif opt.setting == "policy_options":
            out["policy_options"] = _key_values(opt.flag, value)
        elif "." not in opt.setting and opt.setting not in ("run_dir", "task_options"):
            out[opt.setting] = value
    if ray:
        if out.get("executor") not in ("ray", "auto"):
            flags = ", ".join(o.flag for o in _RAY_FLAGS[:-1])
            raise OptionError(f"{flags} and {_RAY_FLAGS[-1].flag} need --executor ray")
        out["executor_options"] = ray
    replay = getattr(args, "replay", None)
    if replay:
        if getattr(args, "proposer", None) not in (None, "replay"):
            raise OptionError("--replay goes with --proposer replay")
        out["proposer"] = f"replay:{Path(replay).resolve()}"
    elif out.get("proposer") == "replay":
        raise OptionError("--proposer replay needs --replay FILE")
    epochs = getattr(args, "max_epochs", None)
    if epochs is not None:
        out["train"] = train_override(epochs, train_base if train_base is not None
                                      else {"seed": out.get("seed", _SEARCH.seed)})
    return out


def _key_values(flag: str, pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs of ``flag`` as a dict (values as :func:`task_options` reads them)."""
    from ..tasks import parse_options

    try:
        return parse_options(pairs, flag=flag)
    except ValueError as exc:  # it names the flag and the malformed pair
        raise OptionError(str(exc)) from None


def train_override(max_epochs: int, base: Mapping[str, Any]) -> TrainConfig:
    """``base`` (TrainConfig fields) with ``max_epochs`` changed."""
    cfg = {k: v for k, v in base.items() if k != "save_weights"}
    return TrainConfig(**{**cfg, "max_epochs": int(max_epochs)})


def task_options(args: Any) -> dict[str, Any]:
    """Task options from ``--option KEY=VALUE`` and the shortcuts such as ``--n-patients``."""
    from ..tasks import parse_options

    out = parse_options(getattr(args, "option", None) or [])  # ValueError names the pair
    for opt, value in _given(args, SEARCH_OPTIONS).items():
        if opt.setting.startswith("task_options."):
            out[opt.setting.split(".", 1)[1]] = value
    return out


_LIST_SETTINGS = ("data.targets", "data.inputs")  # comma-separated column lists


def data_options(args: Any) -> dict[str, Any]:
    """Keywords of :func:`~nimm_jupyter.tasks.task_from_dataframe` from the data flags given
    (``--targets a,b`` -> ``targets=["a", "b"]``, ``--test-last 4`` -> ``test_last=4``)."""
    out: dict[str, Any] = {}
    for opt, value in _given(args, DATA_OPTIONS).items():
        if opt.positive and value < 1:
            raise OptionError(f"{opt.flag} must be a positive integer, got {value}")
        key = opt.setting.split(".", 1)[1]
        if opt.setting in _LIST_SETTINGS:
            value = [c.strip() for c in str(value).split(",") if c.strip()]
            if not value:
                raise OptionError(f"{opt.flag}: empty column list")
        out[key] = value
    return out
