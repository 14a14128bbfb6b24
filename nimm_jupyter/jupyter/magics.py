"""IPython magics: ``%%nimm_search`` starts a search from a cell, ``%nimm`` manages searches.

Defaults come from traitlets, so ``%config NimmMagics.budget = 30`` changes them. User
errors are printed as one line on stderr (no traceback); the traceback of an unexpected
failure is kept for ``%nimm traceback``. The flags live in :mod:`.options`, the run registry
in :mod:`.runs`, displaying in :mod:`.present`, DataFrame tasks in :mod:`.data`.
"""
from __future__ import annotations

import os
import re
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from traitlets import Int, Unicode

from ..search.config import SearchConfig
from ..search.options import option
from . import present, runs
from .comm import CellChannel, current_cell_id, insert_and_report
from .data import dataframe_task, stray_column_flags
from .options import (  # noqa: F401  (DEMO_EPOCHS_ENV: a public name of this module)
    DEMO_BUDGET_ENV, DEMO_EPOCHS_ENV, KEY_ENVS, NimmError, magic_task_options, parse_cell_body,
    resume_settings, search_arguments, search_settings,
)
from .present import watch  # noqa: F401  (public: nimm_jupyter.jupyter.watch)
from .runs import SearchRecord, default_open_run, default_resume, default_run_dir, status_line

NO_WIDGET_ENV = "NIMM_NO_WIDGET"  # "1": text progress even inside a kernel
_DEFAULT = SearchConfig()
# the %config traits that stand in for flags not given
_TRAIT_SETTINGS = ("budget", "branches", "policy", "proposer", "model", "device", "workers")
_default_search = runs.default_search  # the engine entry point (tests swap the factory)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is meant for the user (bad settings, data, task names)."""
    errors: list[type[BaseException]] = [ValueError, KeyError, FileNotFoundError, TypeError]
    try:
        from ..search.api import SearchError

        errors.append(SearchError)
    except Exception:
        pass
    return tuple(errors)


def nearest(word: str, choices: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or ""."""
    import difflib

    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


_UNEXPECTED = re.compile(r"(\w+)\(\) got an unexpected keyword argument '(\w+)'")


def unknown_option_message(exc: TypeError, task: str) -> str | None:
    """The user's words for a task factory refusing an ``--option``: the valid options and
    the nearest one, instead of "_make() got an unexpected keyword argument" (None when
    ``exc`` is another TypeError)."""
    import inspect

    match = _UNEXPECTED.search(str(exc))
    if match is None:
        return None
    func_name, bad = match.groups()
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next  # the frame that made the call names the function it called
    frame = tb.tb_frame if tb is not None else None
    func = (frame.f_locals.get(func_name) or frame.f_globals.get(func_name)) if frame else None
    try:
        params = inspect.signature(func).parameters.values() if func is not None else []
    except (TypeError, ValueError):
        params = []
    # the factory's own leading positional (a variant name) is not an option
    valid = [p.name for p in params if p.default is not p.empty or p.kind is p.KEYWORD_ONLY]
    listed = ", ".join(valid) if valid else "see the task's documentation"
    return f"task {task!r} has no option {bad!r}{nearest(bad, valid)}; its options: {listed}"


def _trait_help(flag: str) -> str:
    return option(flag).help[:1].upper() + option(flag).help[1:] + "."


@magics_class
class NimmMagics(Magics):
    """``%%nimm_search`` and ``%nimm``. Settable with ``%config NimmMagics.<name> = value``."""

    budget = Int(_DEFAULT.budget, help=_trait_help("--budget")).tag(config=True)
    branches = Int(_DEFAULT.branches, help=_trait_help("--branches")).tag(config=True)
    policy = Unicode(_DEFAULT.policy, help=_trait_help("--policy")).tag(config=True)
    proposer = Unicode(_DEFAULT.proposer, help=_trait_help("--proposer")).tag(config=True)
    model = Unicode(_DEFAULT.model, allow_none=True,
                    help=_trait_help("--model")).tag(config=True)
    device = Unicode(_DEFAULT.device, help=_trait_help("--device")).tag(config=True)
    workers = Int(_DEFAULT.workers, help=_trait_help("--workers")).tag(config=True)
    run_root = Unicode("runs", help="Folder under which searches keep their run dirs.").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any):
        super().__init__(shell=shell, **kwargs)
        self.runs: dict[str, SearchRecord] = {}
        self.last_run: str | None = None
        self.last_traceback: str = ""
        self.channel = CellChannel(shell)
        # Injection points (tests, other front ends); the defaults call the public API.
        self.search_factory: Callable[..., Any] = _default_search
        self.resume_factory: Callable[..., Any] = default_resume
        self.open_run_factory: Callable[..., Any] = default_open_run

    # ---------------------------------------------------------------- helpers -------
    def _error(self, where: str, message: str) -> None:
        print(f"{where}: error: {message}", file=sys.stderr)

    def _report(self, where: str, exc: BaseException) -> None:
        """One line for any failure; the traceback is kept for ``%nimm traceback``."""
        self.last_traceback = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        raw = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        text = raw.strip().splitlines()[0] if raw.strip() else ""
        if isinstance(exc, _user_errors()) and text:
            self._error(where, text)  # the message was written for the user
        else:
            self._error(where, f"{type(exc).__name__}: {text} (full traceback: %nimm traceback)")

    def _use_widget(self) -> bool:
        if os.environ.get(NO_WIDGET_ENV, "").strip() not in ("", "0"):
            return False
        return getattr(self.shell, "kernel", None) is not None

    def _record(self, ref: str | None) -> SearchRecord:
        return runs.find_record(self.runs, self.last_run, ref)

    def _result_for(self, ref: str | None) -> tuple[Any, SearchRecord | None]:
        """A search of this kernel, or a finished run opened from its run dir."""
        if not runs.known(self.runs, ref):
            return self.open_run_factory(runs.run_dir_of(ref, self.run_root)), None
        rec = self._record(ref)
        return rec.search, rec

    # ---------------------------------------------------------------- %%nimm_search --
    @search_arguments
    @line_cell_magic
    def nimm_search(self, line: str, cell: str | None = None) -> None:
        """Search for a neural-integrated mechanistic model of TASK.

        The cell body is your description of the system and what you know about it; a
        fenced ```python block in it is seed model code (a `class Model(nn.Module)`).
        Without --wait the search runs in the background and the kernel stays usable;
        `%nimm status`, `%nimm stop` and `%nimm export` manage it. Defaults of --budget,
        --branches, --policy, --proposer, --model, --device and --workers are settable with
        `%config NimmMagics.<name> = value`. The environment variable NIMM_DEMO_BUDGET caps
        the budget of every search and NIMM_DEMO_MAX_EPOCHS the training epochs of every
        candidate (used to run the demo notebooks quickly in CI).
        """
        try:
            # POSIX quoting (IPython's own splitter keeps the quotes in `--option "k=a b"`).
            args = self.nimm_search.parser.parse_args(shlex.split(line))
        except ValueError as exc:  # unbalanced quotes
            self._error("nimm_search", str(exc))
            return None
        except UsageError as exc:
            self._error("nimm_search", str(exc).strip().splitlines()[-1])
            return None
        try:
            search = self._start(args, cell or "")
        except NimmError as exc:
            self._error("nimm_search", str(exc))
            return None
        except Exception as exc:  # noqa: BLE001 - engine errors become one line
            self._report("nimm_search", exc)
            return None
        self._present(search, args)
        return None

    def _start(self, args: Any, body: str) -> Any:
        if args.out is not None and not args.out.isidentifier():
            raise NimmError(f"--out needs a Python variable name, got {args.out!r}")
        description, seed_code = parse_cell_body(body)
        if args.resume:
            if description:  # it would be silently unused, like a data flag
                raise NimmError("--resume takes no cell body: a resumed search keeps its run's "
                                "own description and seed code (leave the body empty)")
            return self._resume(args)
        if not args.task and args.data:
            args.task = args.data  # a DataFrame task is named after its variable
        if not args.task:
            raise NimmError("give a task name (see `%nimm tasks`) or --resume RUN_DIR")
        settings = search_settings(args, {k: getattr(self, k) for k in _TRAIT_SETTINGS})
        task_options = magic_task_options(args)
        task: Any
        if args.data is not None:
            if task_options:
                raise NimmError("--option applies to built-in tasks, not to --data tasks")
            ns = self.shell.user_ns if self.shell is not None else {}
            task = dataframe_task(ns, args, description, seed_code)
        else:
            self._check_task_name(args.task)
            task = args.task
            stray = stray_column_flags(args)
            if stray:
                raise NimmError(f"{', '.join(stray)} need --data VAR (a DataFrame)")
        kwargs: dict[str, Any] = dict(settings, description=description, background=True)
        kwargs["run_dir"] = args.run_dir or default_run_dir(
            self.run_root or "runs", getattr(task, "name", None) or str(task))
        if task_options:
            kwargs["task_options"] = task_options
        if seed_code is not None:
            kwargs["seed_code"] = seed_code
        kwargs = self._accepted(kwargs)
        try:
            return self.search_factory(task, **kwargs)
        except TypeError as exc:  # a task option its factory does not take
            message = unknown_option_message(exc, str(task)) if task_options else None
            if message is None:
                raise
            raise NimmError(message) from None

    def _accepted(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Drop ``seed_code`` when the search function does not take it (it is also in
        the description, so nothing is lost)."""
        import inspect

        if self.search_factory is _default_search:  # the API reads it from the description
            return {k: v for k, v in kwargs.items() if k != "seed_code"}
        try:
            params = inspect.signature(self.search_factory).parameters
        except (TypeError, ValueError):
            return kwargs
        if "seed_code" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return kwargs
        return {k: v for k, v in kwargs.items() if k != "seed_code"}

    def _check_task_name(self, name: str) -> None:
        from .. import tasks

        if name not in tasks.list_tasks():
            raise NimmError(f"unknown task {name!r}{nearest(name, tasks.list_tasks())}; "
                            f"available: {', '.join(tasks.list_tasks())}")

    def _resume(self, args: Any) -> Any:
        run_dir = Path(args.resume)
        if not run_dir.is_dir():
            raise NimmError(f"--resume: no run dir {str(run_dir)!r}")
        overrides = resume_settings(
            args, lambda: self.open_run_factory(run_dir).settings.get("train") or {})
        return self.resume_factory(run_dir, background=True, **overrides)

    # ---------------------------------------------------------------- presenting -----
    def _present(self, search: Any, args: Any) -> None:
        rec = SearchRecord(search=search, cell_id=current_cell_id(self.shell))
        self.runs[str(search.run_id)] = rec
        self.last_run = str(search.run_id)
        if args.out:
            self.shell.user_ns[args.out] = search
        self.channel.start()
        widget = self._use_widget() and not args.no_widget
        if widget:
            present.show_widget(rec, lambda ids: self._export_from_widget(rec, ids),
                                background=not args.wait)
        if args.wait:
            present.wait(search, progress=not widget)
            if widget:
                present.show_summary(rec)
            else:
                present.print_summary(rec)
        elif not widget:
            if getattr(self.shell, "kernel", None) is not None:
                rec.widget = present.HtmlView(search)  # live HTML where widgets cannot render
            print(f"search {search.run_id} running in the background (run dir {search.run_dir}); "
                  f"`%nimm status` to follow, `%nimm stop` to stop")

    # ---------------------------------------------------------------- export ---------
    def _export_from_widget(self, rec: SearchRecord, node_ids: list[int]) -> str:
        from ..export import export_cells, export_notebook

        search = rec.search
        cells = export_cells(search, node_ids)
        outcome = self.channel.insert_cells(str(search.run_id), cells, rec.cell_id)
        if outcome.sent:
            return outcome.message()
        path = Path(search.run_dir) / "export.ipynb"
        export_notebook(search, path, node_ids)
        return (f"wrote node {', '.join(map(str, node_ids))} to {path} "
                f"(`%nimm export` inserts it as a cell)")

    # ---------------------------------------------------------------- %nimm ----------
    @line_magic
    def nimm(self, line: str) -> None:
        """Manage searches.

        %nimm tasks                      built-in task names
        %nimm list                       searches of this kernel and run dirs under the run root
        %nimm status [ID]                progress of a search (default: the latest)
        %nimm stop [ID]                  stop a search (running evaluations are cancelled)
        %nimm export [--run ID] [best|NODE ...]   best (or given) models as new cells
        %nimm save PATH.ipynb [--run ID] [best|NODE ...]   write/update a notebook file
        %nimm config                     current defaults and which keys are set (never values)
        %nimm traceback                  full traceback of the last unexpected error
        """
        try:
            words = shlex.split(line)
        except ValueError as exc:
            self._error("nimm", str(exc))
            return None
        if not words:
            print(self.nimm.__doc__)
            return None
        cmd, rest = words[0], words[1:]
        handler = getattr(self, f"_cmd_{cmd}", None)
        if handler is None:
            self._error("nimm", f"unknown subcommand {cmd!r}; use tasks, list, status, stop, "
                        "export, save, config or traceback")
            return None
        try:
            handler(rest)
        except NimmError as exc:
            self._error(f"nimm {cmd}", str(exc))
        except Exception as exc:  # noqa: BLE001
            self._report(f"nimm {cmd}", exc)
        return None

    def _cmd_tasks(self, rest: list[str]) -> None:
        present.show_tasks()

    def _cmd_list(self, rest: list[str]) -> None:
        print(runs.list_lines(self.runs, self.run_root, self.open_run_factory))

    def _cmd_status(self, rest: list[str]) -> None:
        obj, rec = self._result_for(rest[0] if rest else None)
        if rec is not None:
            print(status_line(str(obj.run_id), obj.status(), bool(obj.done), runs.task_name(obj)))
            return
        from .summary import summary_text

        print(summary_text(obj))

    def _cmd_stop(self, rest: list[str]) -> None:
        rec = self._record(rest[0] if rest else None)
        s = rec.search
        if s.done:
            print(f"search {s.run_id} has already finished")
            return
        s.stop()
        deadline = time.time() + 2.0
        while not s.done and time.time() < deadline:
            time.sleep(0.05)
        state = "stopped" if s.done else "stopping (running evaluations are being cancelled)"
        print(f"search {s.run_id} {state}; run dir {s.run_dir}; continue it with "
              f"`{runs.resume_command(s.run_dir)}`")

    def _node_args(self, rest: list[str]) -> tuple[str | None, list[int] | None, list[str]]:
        ref = None
        nodes: list[int] = []
        positional: list[str] = []
        it = iter(rest)
        for word in it:
            if word == "--run":
                ref = next(it, None)
                if ref is None:
                    raise NimmError("--run needs a search id or run dir")
            elif word == "best":
                continue
            elif word.isdigit():
                nodes.append(int(word))
            else:
                positional.append(word)
        return ref, (nodes or None), positional

    def _cmd_export(self, rest: list[str]) -> None:
        from ..export import combined_source, export_cells

        ref, nodes, extra = self._node_args(rest)
        if extra:
            raise NimmError(f"unexpected {' '.join(extra)!r}; use best or node ids")
        obj, rec = self._result_for(ref)
        cells = export_cells(obj, nodes)
        if rec is not None and insert_and_report(self.channel, str(obj.run_id), cells,
                                                 rec.cell_id).sent:
            return
        if self.shell is None:
            raise NimmError("no IPython shell to insert the cell into; use %nimm save PATH.ipynb")
        self.shell.set_next_input(combined_source(cells), replace=False)

    def _cmd_save(self, rest: list[str]) -> None:
        from ..export import export_notebook

        ref, nodes, extra = self._node_args(rest)
        paths = [w for w in extra if w.endswith(".ipynb")]
        if len(paths) != 1 or len(extra) != 1:
            raise NimmError("usage: %nimm save PATH.ipynb [--run ID] [best|NODE ...]")
        obj, _ = self._result_for(ref)
        path = export_notebook(obj, paths[0], nodes)
        print(f"wrote {path}")

    def _cmd_config(self, rest: list[str]) -> None:
        lines = ["NimmMagics defaults (%config NimmMagics.<name> = value):"]
        for name in ("budget", "branches", "policy", "proposer", "model", "device", "workers", "run_root"):
            lines.append(f"  {name} = {getattr(self, name)!r}")
        cap = os.environ.get(DEMO_BUDGET_ENV)
        lines.append(f"{DEMO_BUDGET_ENV}: {cap if cap else 'not set'}")
        for key in KEY_ENVS:
            lines.append(f"{key}: {'set' if os.environ.get(key) else 'not set'}")
        lines.append(f"NIMM_DATA_DIR: {os.environ.get('NIMM_DATA_DIR') or 'not set (default cache)'}")
        lines.append("cell insertion: " + ("JupyterLab extension connected" if self.channel.available
                                           else "no extension (exports use a new cell or %nimm save)"))
        print("\n".join(lines))

    def _cmd_traceback(self, rest: list[str]) -> None:
        print(self.last_traceback or "no error recorded")


def empty_body_as_line_magic(lines: list[str]) -> list[str]:
    """Input transformer: ``%%nimm_search ARGS`` with an empty body becomes the line magic.

    IPython refuses a cell magic whose body is empty before the magic is called, but
    ``%%nimm_search --resume RUN_DIR`` (nothing to describe) is the natural way to continue
    a search from a cell; the line form means the same thing.
    """
    if not lines or not lines[0].startswith("%%nimm_search"):
        return lines
    if any(line.strip() for line in lines[1:]):
        return lines
    first = lines[0].rstrip("\n")
    if first[len("%%nimm_search"):][:1] not in ("", " ", "\t"):
        return lines  # another magic whose name starts the same way
    return ["%" + first[2:] + "\n"]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nimm_jupyter``: register the magics (nothing else global)."""
    magics = NimmMagics(ipython)
    ipython.register_magics(magics)
    if magics not in ipython.configurables:
        ipython.configurables.append(magics)  # so %config NimmMagics.x = ... reaches it
    if empty_body_as_line_magic not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(empty_body_as_line_magic)


def unload_ipython_extension(ipython: Any) -> None:
    for obj in list(ipython.configurables):
        if isinstance(obj, NimmMagics):
            ipython.configurables.remove(obj)
    if empty_body_as_line_magic in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.remove(empty_body_as_line_magic)
