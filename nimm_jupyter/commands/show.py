"""``nimm show RUN_DIR``: every node of a run, the best model and per-branch best scores."""
from __future__ import annotations

import argparse
import json
from typing import Any

from ..cli import CLIError
from .search import summary_text


def add_parser(sub: Any) -> None:
    p = sub.add_parser("show", help="show a search's tree and best model",
                       description="Read a run directory's journal (also while it runs).")
    p.add_argument("run_dir", help="the search's run directory")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def run(args: argparse.Namespace) -> int:
    from ..search.api import SearchError, open_run

    try:
        result = open_run(args.run_dir)
    except SearchError as exc:
        raise CLIError(str(exc)) from None
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(summary_text(result))
    return 0
