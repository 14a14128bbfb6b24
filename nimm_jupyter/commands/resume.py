"""``nimm resume RUN_DIR``: continue a stopped or crashed search from its journal."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..cli import CLIError
from .search import add_json_option, overrides_from, run_search


def add_parser(sub: Any) -> None:
    from ..search.options import RESUME_OPTIONS

    p = sub.add_parser("resume", help="continue a search from its run directory",
                       description="Continue the search journaled in RUN_DIR. Completed nodes "
                                   "are kept; budgets count the whole run.")
    p.add_argument("run_dir", help="the search's run directory")
    for opt in RESUME_OPTIONS:
        opt.add_to(p)
    add_json_option(p)


def run(args: argparse.Namespace) -> int:
    from ..search.api import SearchError, open_run, resume
    from ..search.config import Settings
    from ..search.options import RESUME_OPTIONS

    run_dir = Path(args.run_dir)
    try:
        before = open_run(run_dir)
    except SearchError as exc:
        raise CLIError(str(exc)) from None
    overrides = overrides_from(args, RESUME_OPTIONS, before.settings.get("train") or {})
    spec = overrides.get("proposer")
    if isinstance(spec, str) and spec.startswith("replay:"):
        # read the file now: a missing or malformed one is one line, before any progress bar
        from ..proposers.replay import ReplayError, ReplayProposer

        try:
            overrides["proposer"] = ReplayProposer(spec.split(":", 1)[1])
        except ReplayError as exc:
            raise CLIError(str(exc)) from None
    budget = overrides.get("budget", Settings.from_dict(before.settings).config.budget)
    done = sum(n.completed for n in before.nodes)

    def start(on_event: Any) -> Any:
        return resume(run_dir, background=True, on_event=on_event, **overrides)

    return run_search(start, args, budget, done)
