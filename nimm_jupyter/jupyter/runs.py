"""The searches a kernel has started, and the run dirs it can open: lookup and one-line
status. The engine functions (search, resume, open_run) are called through the public API."""
from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..search.layout import JOURNAL_NAME
from .options import NimmError
from .summary import _fmt, end_state


@dataclass
class SearchRecord:
    """A search started from this kernel, with where its cells and outputs live."""

    search: Any
    cell_id: str | None
    widget: Any = None
    summary_handle: Any = None
    started: float = field(default_factory=time.time)
    summary_shown: bool = False


def default_run_dir(run_root: str | Path, task_name: str) -> Path:
    """``<run_root>/<task>-<yyyymmdd-hhmmss>-<hex>``, the layout the search API uses."""
    from ..search.api import _default_run_dir

    return _default_run_dir(task_name, run_root)


def default_search(task: Any, **kwargs: Any) -> Any:
    from ..search.api import search

    return search(task, **kwargs)


def default_resume(run_dir: str | Path, **overrides: Any) -> Any:
    from ..search.api import resume

    return resume(run_dir, **overrides)


def default_open_run(run_dir: str | Path) -> Any:
    from ..search.api import open_run

    return open_run(run_dir)


def resume_command(run_dir: str | Path) -> str:
    """The cell line that continues the search journaled in ``run_dir``."""
    return f"%nimm_search --resume {shlex.quote(str(run_dir))}"


def status_line(run_id: str, status: dict[str, Any], done: bool, task_name: str = "") -> str:
    """One line describing a search's progress."""
    state = end_state(done, status.get("stop_reason"))
    best = status.get("best_node")
    best_txt = f"best val {_fmt(status.get('best_val'))} (node {best})" if best is not None else "no model yet"
    tokens = int(status.get("tokens", 0) or 0)
    spend = f" · {tokens} tokens, ${float(status.get('cost', 0) or 0):.3f}" if tokens else ""
    budget = status.get("budget")
    evaluated = f"{status.get('evaluated', 0)}{f'/{budget}' if budget else ''} evaluated"
    return (f"{run_id}{' ' + task_name if task_name else ''}: {state} · "
            f"{evaluated}, {status.get('failed', 0)} failed, "
            f"{status.get('running', 0)} running, {status.get('pending', 0)} pending · {best_txt}"
            f"{spend} · {float(status.get('elapsed', 0) or 0):.0f}s")


def task_name(s: Any) -> str:
    name = getattr(s, "task_name", None)
    if name:
        return str(name)
    return str(getattr(getattr(s, "task", None), "name", "") or "")


def find_record(runs: dict[str, SearchRecord], last: str | None,
                ref: str | None) -> SearchRecord:
    """The search ``ref`` (an id or a unique prefix; default: the latest) of this kernel."""
    if not runs:
        raise NimmError("no search has been started in this kernel")
    if ref is None:
        return runs[last or next(reversed(runs))]
    if ref in runs:
        return runs[ref]
    matches = [k for k in runs if k.startswith(ref)]
    if len(matches) == 1:
        return runs[matches[0]]
    raise NimmError(f"no search {ref!r} in this kernel; known: {', '.join(runs)}")


def known(runs: dict[str, SearchRecord], ref: str | None) -> bool:
    return ref is None or ref in runs or any(k.startswith(ref) for k in runs)


def run_dir_of(ref: str, run_root: str | Path) -> Path:
    """A run dir named by path, or by name under the run root."""
    path = Path(ref)
    if not path.is_dir():
        path = Path(run_root) / ref
    if not path.is_dir():
        raise NimmError(f"no search {ref!r} in this kernel and no run dir {ref!r}")
    return path


def run_state(run_dir: str | Path, open_run: Callable[[str], Any] = default_open_run) -> str:
    """A found run's state as its journal and lock tell it (``interrupted``: its process died)."""
    try:
        return str(open_run(str(run_dir)).status)
    except Exception as exc:  # noqa: BLE001 - a damaged run dir is listed, not fatal
        return f"unreadable: {exc}"[:200]


def list_lines(runs: dict[str, SearchRecord], run_root: str | Path,
               open_run: Callable[[str], Any] = default_open_run) -> str:
    """``%nimm list``: this kernel's searches, then the other run dirs under the run root
    with their state (``completed``, ``stopped``, ``interrupted`` …)."""
    lines = []
    seen: set[str] = set()
    for run_id, rec in runs.items():
        s = rec.search
        seen.add(str(Path(s.run_dir).resolve()))
        lines.append(status_line(run_id, s.status(), bool(s.done), task_name(s)))
        if s.done:
            lines.append(f"  continue: {resume_command(s.run_dir)}")
    root = Path(run_root)
    found = []
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if d.is_dir() and str(d.resolve()) not in seen and (d / JOURNAL_NAME).is_file():
                found.append(str(d))
    if found:
        lines.append(f"run dirs under {root}/ (`%nimm status DIR` shows one):")
        lines += [f"  {d} ({run_state(d, open_run)})    continue: {resume_command(d)}"
                  for d in found]
    return "\n".join(lines) if lines else f"no searches in this kernel and no run dirs under {root}/"
