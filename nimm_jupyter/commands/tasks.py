"""``nimm tasks [--json]``: list every registered task with its kind, source and split sizes.

Each task is built with its default options (nothing is cached on disk). A task that fails
to build (missing data, a module not installed) is listed with an ``error`` instead of
stopping the listing. With ``--json`` stdout holds exactly one JSON list; anything a
factory prints or warns goes to stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import time
import warnings
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "tasks", help="list the registered tasks",
        description="List every registered task: name, kind, source, split sizes, description.")
    p.add_argument("--json", action="store_true", help="print one JSON list on stdout")
    return p


def describe_tasks() -> list[dict[str, Any]]:
    """One dict per registered task: :meth:`Task.summary` plus ``build_s``, or ``error``."""
    from nimm_jupyter import tasks

    rows: list[dict[str, Any]] = []
    for name in tasks.list_tasks():
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught, \
                contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("always")
            try:
                row: dict[str, Any] = tasks.get(name).summary()
                row["name"] = name
            except Exception as exc:  # noqa: BLE001 - reported per task, never fatal
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                row = {"name": name, "error": f"{type(exc).__name__}: {msg}".rstrip(": ")}
        for w in caught:
            print(f"nimm tasks: {name}: {w.category.__name__}: {w.message}", file=sys.stderr)
        row["build_s"] = round(time.perf_counter() - t0, 3)
        rows.append(row)
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    width = shutil.get_terminal_size((120, 20)).columns
    head = ("name", "kind", "source", "train/val/test", "description")
    body = []
    for r in rows:
        if "error" in r:
            body.append((r["name"], "-", "-", "-", f"ERROR {r['error']}"))
        else:
            s = r["splits"]
            body.append((r["name"], r["kind"], r["source"],
                         f"{s['train']}/{s['val']}/{s['test']}", r["description"]))
    widths = [max(len(str(x[k])) for x in [head, *body]) for k in range(4)]
    lines = []
    for cells in [head, *body]:
        left = "  ".join(str(c).ljust(w) for c, w in zip(cells[:4], widths))
        room = max(width - len(left) - 2, 20)
        desc = str(cells[4])
        if len(desc) > room:
            desc = desc[: room - 1] + "…"
        lines.append(f"{left}  {desc}".rstrip())
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    rows = describe_tasks()
    if args.json:
        sys.stdout.write(json.dumps(rows) + "\n")
    else:
        print(_table(rows))
    return 0
