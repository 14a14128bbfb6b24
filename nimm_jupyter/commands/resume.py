"""``nimm resume RUN_DIR``: continue a stopped or crashed search from its journal."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..cli import CLIError
from .search import add_run_options, executor_spec, proposer_spec, run_search, train_config


def add_parser(sub: Any) -> None:
    p = sub.add_parser("resume", help="continue a search from its run directory",
                       description="Continue the search journaled in RUN_DIR. Completed nodes "
                                   "are kept; budgets count the whole run.")
    p.add_argument("run_dir", help="the search's run directory")
    add_run_options(p)


def run(args: argparse.Namespace) -> int:
    from ..search.api import SearchError, open_run, resume

    run_dir = Path(args.run_dir)
    try:
        before = open_run(run_dir)
    except SearchError as exc:
        raise CLIError(str(exc)) from None
    overrides: dict[str, Any] = {}
    for key in ("budget", "workers", "device", "time_limit", "max_tokens", "max_cost", "model"):
        value = getattr(args, key)
        if value is not None:
            overrides[key] = value
    executor, eopts = executor_spec(args)
    if executor is not None:
        overrides["executor"] = executor
    if eopts:
        overrides["executor_options"] = eopts
    name, popts = proposer_spec(args)
    if name == "replay":
        from ..proposers.replay import ReplayError, ReplayProposer

        try:
            overrides["proposer"] = ReplayProposer(popts["path"])
        except ReplayError as exc:  # missing or malformed file: one line, no traceback
            raise CLIError(str(exc)) from None
    elif name is not None:
        overrides["proposer"] = name
    cfg = train_config(args.max_epochs, before.settings.get("train"))
    if cfg is not None:
        overrides["train"] = cfg
    budget = int(overrides.get("budget", before.settings.get("budget", 20)))
    done = sum(n.completed for n in before.nodes)

    def start(on_event: Any) -> Any:
        return resume(run_dir, background=True, on_event=on_event, **overrides)

    return run_search(start, args, budget, done)
