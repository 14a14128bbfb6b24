"""The flags of ``%%nimm_search`` and the search settings they make.

The search flags come from the shared table (:mod:`nimm_jupyter.search.options`), so the
magic and ``nimm search`` take the same names with the same help; :data:`MAGIC_ONLY_FLAGS`
are the few that only make sense in a notebook. The environment variables
``NIMM_DEMO_BUDGET`` and ``NIMM_DEMO_MAX_EPOCHS`` cap budgets and epochs (CI runs of the
demo notebooks).
"""
from __future__ import annotations

import os
import re
from typing import Any, Callable, Mapping

from IPython.core.magic_arguments import argument, magic_arguments

from ..search.options import (
    DATA_OPTIONS, RESUME_OPTIONS, SEARCH_OPTIONS, OptionError, search_overrides, task_options,
)

DEMO_BUDGET_ENV = "NIMM_DEMO_BUDGET"  # caps every budget (CI runs of the demo notebooks)
DEMO_EPOCHS_ENV = "NIMM_DEMO_MAX_EPOCHS"  # caps training epochs per candidate (same purpose)
KEY_ENVS = ("ANTHROPIC_API_KEY",)
_FENCE = re.compile(r"```(?:python|py)[ \t]*\n(.*?)```", re.DOTALL)


class NimmError(Exception):
    """A user error, shown as one line."""


# flags only the magic has: where the data and the handle live in the notebook, and how the
# cell behaves (the CLI has --csv/--name/--describe/--json instead)
MAGIC_ONLY: tuple[tuple[str, dict[str, Any]], ...] = (
    ("--data", {"metavar": "VAR", "help": "a pandas DataFrame in the notebook namespace"}),
    ("--features", {"metavar": "E,F", "help": "feature columns (tabular task)"}),
    ("--out", {"metavar": "VAR", "help": "bind the Search handle to this variable"}),
    ("--wait", {"action": "store_true",
                "help": "block until the search ends (Ctrl-C / interrupt stops it, resumable)"}),
    ("--resume", {"metavar": "RUN_DIR", "help": "continue the search journaled in RUN_DIR"}),
    ("--no-widget", {"action": "store_true", "help": "text progress instead of the widget"}),
)
MAGIC_ONLY_FLAGS = tuple(flag for flag, _ in MAGIC_ONLY)


def search_arguments(func: Callable) -> Callable:
    """Give a magic function the ``%%nimm_search`` parser (``func.parser``) and usage text."""
    decorators = [argument("task", nargs="?", default=None,
                           help="built-in task name (see `%%nimm tasks`), or the name for a "
                                "--data task")]
    decorators += [argument(f, **kw) for f, kw in MAGIC_ONLY[:1]]
    decorators += [argument(o.flag, **o.argparse_kwargs()) for o in DATA_OPTIONS]
    decorators += [argument(f, **kw) for f, kw in MAGIC_ONLY[1:]]
    decorators += [argument(o.flag, **o.argparse_kwargs()) for o in SEARCH_OPTIONS]
    for deco in reversed(decorators):  # the first listed is the first in the usage text
        func = deco(func)
    func = magic_arguments()(func)
    func.__doc__ = (func.__doc__ or "") + "\n" + defaults_text() + "\n"
    return func


def defaults_text() -> str:
    """The ``Defaults:`` paragraph of ``%%nimm_search?``: what a flag not given means."""
    import textwrap

    shown = [f"{o.flag} {o.default}" for o in SEARCH_OPTIONS
             if getattr(o, "default", None) not in (None, [], "")]
    text = ("Defaults (a flag not given): " + ", ".join(shown) + ". `%config NimmMagics.<name> "
            "= value` changes budget, branches, policy, proposer, model, device and workers; "
            "`%nimm config` shows the values in effect.")
    return "\n".join(textwrap.wrap(text, 88))


def parse_cell_body(body: str) -> tuple[str, str | None]:
    """Split a ``%%nimm_search`` cell body into (description, seed code).

    The description is the whole body (the fenced block included, so a proposer reads the
    user's words around it); the seed code is the first fenced ``python`` block, or None.
    """
    text = body.strip("\n")
    match = _FENCE.search(text)
    seed = match.group(1).strip("\n") + "\n" if match else None
    return text.strip(), seed


def columns(spec: str | None) -> list[str] | None:
    """``"a, b"`` -> ``["a", "b"]`` (None when the flag was not given)."""
    if spec is None:
        return None
    cols = [c.strip() for c in spec.split(",") if c.strip()]
    if not cols:
        raise NimmError(f"empty column list {spec!r}")
    return cols


def _env_cap(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        cap = int(raw)
    except ValueError:
        raise NimmError(f"{name} must be a positive integer, got {raw!r}") from None
    if cap <= 0:
        raise NimmError(f"{name} must be a positive integer, got {raw!r}")
    return cap


def demo_budget_cap() -> int | None:
    """The budget cap from ``NIMM_DEMO_BUDGET`` (None when unset)."""
    return _env_cap(DEMO_BUDGET_ENV)


def demo_epochs_cap() -> int | None:
    """The per-candidate epoch cap from ``NIMM_DEMO_MAX_EPOCHS`` (None when unset)."""
    return _env_cap(DEMO_EPOCHS_ENV)


def _capped(settings: dict[str, Any]) -> dict[str, Any]:
    """The demo budget cap applied, and a missing API key refused before anything starts."""
    cap = demo_budget_cap()
    if cap is not None and "budget" in settings:
        settings["budget"] = min(settings["budget"], cap)
    if settings.get("proposer") == "anthropic" and not os.environ.get("ANTHROPIC_API_KEY"):
        raise NimmError("--proposer anthropic needs the ANTHROPIC_API_KEY environment "
                        "variable (or use --proposer offline)")
    return settings


def search_settings(args: Any, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The search settings of a new search: the flags given, else ``defaults`` (the
    ``%config NimmMagics`` values), with the demo caps applied."""
    epochs_cap = demo_epochs_cap()
    if epochs_cap is not None:
        if args.max_epochs is not None and args.max_epochs <= 0:
            raise NimmError(f"--max-epochs must be a positive integer, got {args.max_epochs}")
        args.max_epochs = min(args.max_epochs or epochs_cap, epochs_cap)
    try:
        return _capped(search_overrides(args, SEARCH_OPTIONS, defaults=defaults))
    except OptionError as exc:
        raise NimmError(str(exc)) from None


def resume_settings(args: Any, run_train: Callable[[], Mapping[str, Any]]) -> dict[str, Any]:
    """The settings a ``--resume`` may change; flags that would change the search itself are
    refused rather than silently ignored. ``run_train()`` reads the run's training config
    (only when ``--max-epochs`` is given)."""
    resumable = {o.flag for o in RESUME_OPTIONS}

    def given(dest: str) -> bool:
        return getattr(args, dest, None) not in (None, [])

    fixed = [o.flag for o in SEARCH_OPTIONS if o.flag not in resumable and given(o.dest)]
    # the run's task (and the data it was built from) is journaled with it: a task name or
    # data flags given here would be silently unused, so they are refused by name
    data = [f for f in ("--data", "--features") if given(f[2:])]
    data += [o.flag for o in DATA_OPTIONS if given(o.dest)]
    if given("task"):
        data.insert(0, f"the task name {args.task!r}")
    problems = []
    if data:
        problems.append(f"{', '.join(data)} cannot be given with --resume: a resumed search "
                        "uses its run's own task and data (start a new search for other data)")
    if fixed:
        problems.append(f"{', '.join(fixed)} cannot be changed when resuming a search")
    if problems:
        raise NimmError("; ".join(problems))
    base = run_train() if args.max_epochs is not None else None
    try:
        return _capped(search_overrides(args, RESUME_OPTIONS, train_base=base))
    except OptionError as exc:
        raise NimmError(str(exc)) from None


def magic_task_options(args: Any) -> dict[str, Any]:
    """Task options from ``--option KEY=VALUE`` and ``--n-patients``."""
    try:
        return task_options(args)
    except ValueError as exc:
        raise NimmError(str(exc)) from None
