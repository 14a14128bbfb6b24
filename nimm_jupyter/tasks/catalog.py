"""The registered tasks as rows and as a text table: what ``nimm tasks`` and ``%nimm tasks``
both show (one home, below both front ends).

Every task is built with its default options; a task that fails to build (missing data, a
module not installed) gets an ``error`` instead of stopping the listing. What a factory prints
or warns goes to stderr, so a caller's stdout can stay one JSON document.
"""
from __future__ import annotations

import contextlib
import shutil
import sys
import time
import warnings
from typing import Any, Iterator

__all__ = ["describe_tasks", "factory_output_to_stderr", "task_table"]


@contextlib.contextmanager
def factory_output_to_stderr(name: str) -> Iterator[None]:
    """Send what a task factory prints or warns to stderr, so stdout stays one document."""
    with warnings.catch_warnings(record=True) as caught, \
            contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                print(f"nimm tasks: {name}: {w.category.__name__}: {w.message}",
                      file=sys.stderr)


def describe_tasks() -> list[dict[str, Any]]:
    """One dict per registered task: :meth:`Task.summary` plus ``build_s``, or ``error``."""
    from . import get, list_tasks

    rows: list[dict[str, Any]] = []
    for name in list_tasks():
        t0 = time.perf_counter()
        with factory_output_to_stderr(name):
            try:
                row: dict[str, Any] = get(name).summary()
                row["name"] = name
            except Exception as exc:  # noqa: BLE001 - reported per task, never fatal
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                row = {"name": name, "error": f"{type(exc).__name__}: {msg}".rstrip(": ")}
        row["build_s"] = round(time.perf_counter() - t0, 3)
        rows.append(row)
    return rows


def task_table(rows: list[dict[str, Any]]) -> str:
    """``rows`` of :func:`describe_tasks` as an aligned text table that fits the terminal."""
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
