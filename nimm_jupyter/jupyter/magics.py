"""IPython magics: ``%%nimm_search`` starts a search from a cell, ``%nimm`` manages searches.

Defaults come from traitlets, so ``%config NimmMagics.budget = 30`` changes them. User
errors are printed as one line on stderr (no traceback); the traceback of an unexpected
failure is kept for ``%nimm traceback``.
"""
from __future__ import annotations

import os
import re
import shlex
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import HTML, display
from traitlets import Int, Unicode

from .comm import CellChannel, current_cell_id, insert_and_report
from .summary import _fmt

DEMO_BUDGET_ENV = "NIMM_DEMO_BUDGET"  # caps every budget (CI runs of the demo notebooks)
DEMO_EPOCHS_ENV = "NIMM_DEMO_MAX_EPOCHS"  # caps training epochs per candidate (same purpose)
NO_WIDGET_ENV = "NIMM_NO_WIDGET"  # "1": text progress even inside a kernel
_FENCE = re.compile(r"```(?:python|py)[ \t]*\n(.*?)```", re.DOTALL)
_KEY_ENVS = ("ANTHROPIC_API_KEY",)


class NimmError(Exception):
    """A user error, shown as one line."""


def parse_cell_body(body: str) -> tuple[str, str | None]:
    """Split a ``%%nimm_search`` cell body into (description, seed code).

    The description is the whole body (the fenced block included, so a proposer reads the
    user's words around it); the seed code is the first fenced ``python`` block, or None.
    """
    text = body.strip("\n")
    match = _FENCE.search(text)
    seed = match.group(1).strip("\n") + "\n" if match else None
    return text.strip(), seed


def _columns(spec: str | None) -> list[str] | None:
    if spec is None:
        return None
    cols = [c.strip() for c in spec.split(",") if c.strip()]
    if not cols:
        raise NimmError(f"empty column list {spec!r}")
    return cols






def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """Task options from ``--option KEY=VALUE`` (see :func:`nimm_jupyter.tasks.parse_options`)."""
    from ..tasks import parse_options as parse

    try:
        return parse(pairs)
    except ValueError as exc:
        raise NimmError(str(exc)) from None


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


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is meant for the user (bad settings, data, task names)."""
    errors: list[type[BaseException]] = [ValueError, KeyError, FileNotFoundError, TypeError]
    try:
        from ..search.api import SearchError

        errors.append(SearchError)
    except Exception:
        pass
    return tuple(errors)


def default_run_dir(run_root: str | Path, task_name: str) -> Path:
    """``<run_root>/<task>-<yyyymmdd-hhmmss>-<hex>``, the layout the search API uses."""
    from ..search.api import _default_run_dir

    return _default_run_dir(task_name, run_root)


def _default_search(task: Any, **kwargs: Any) -> Any:
    from ..search.api import search

    return search(task, **kwargs)


def _default_resume(run_dir: str | Path, **overrides: Any) -> Any:
    from ..search.api import resume

    return resume(run_dir, **overrides)


def _default_open_run(run_dir: str | Path) -> Any:
    from ..search.api import open_run

    return open_run(run_dir)


@dataclass
class SearchRecord:
    """A search started from this kernel, with where its cells and outputs live."""

    search: Any
    cell_id: str | None
    widget: Any = None
    summary_handle: Any = None
    started: float = field(default_factory=time.time)
    summary_shown: bool = False


def status_line(run_id: str, status: dict[str, Any], done: bool, task_name: str = "") -> str:
    """One line describing a search's progress."""
    state = "finished" if done else "running"
    best = status.get("best_node")
    best_txt = f"best val {_fmt(status.get('best_val'))} (node {best})" if best is not None else "no model yet"
    return (f"{run_id}{' ' + task_name if task_name else ''}: {state} · "
            f"{status.get('evaluated', 0)} evaluated, {status.get('failed', 0)} failed, "
            f"{status.get('running', 0)} running, {status.get('pending', 0)} pending · {best_txt}"
            f" · {int(status.get('tokens', 0) or 0)} tokens, ${float(status.get('cost', 0) or 0):.3f}"
            f" · {float(status.get('elapsed', 0) or 0):.0f}s")


def _summary_subscriber(rec: SearchRecord) -> Callable[[Any], None]:
    def on_event(event: Any) -> None:
        if event.type != "search_finished" or rec.summary_shown:
            return
        # Rendering loads the best model and plots; keep it off the search's thread.
        threading.Thread(target=show_summary, args=(rec,), daemon=True,
                         name=f"nimm-summary-{rec.search.run_id}").start()

    return on_event


def show_summary(rec: SearchRecord) -> None:
    """Replace the record's placeholder output with the static summary (table + fit plot).

    Called on the main thread after ``--wait``, or on a helper thread when a background
    search ends: it then updates an existing output by display id, never prints.
    """
    if rec.summary_shown:
        return
    rec.summary_shown = True
    from .summary import summary_html

    try:
        result = rec.search.wait(timeout=60)
    except Exception:
        result = rec.search
    try:
        html = summary_html(result if result is not None else rec.search,
                            task=getattr(rec.search, "task", None))
    except Exception as exc:  # a failed plot must not hide the table: say what failed
        html = f"<p>nimm: summary unavailable ({type(exc).__name__}: {exc})</p>"
    if rec.summary_handle is not None:
        rec.summary_handle.update(HTML(html))
    else:
        display(HTML(html))


def watch(search: Any, summary: bool = True) -> Any:
    """Display the live widget for a search started with ``nimm_jupyter.search(...,
    background=True)``, plus the static summary once it ends. Returns the widget."""
    from .widget import SearchWidget

    rec = SearchRecord(search=search, cell_id=None)
    rec.widget = SearchWidget(search)
    display(rec.widget)
    if summary:
        rec.summary_handle = display({"text/plain": ""}, raw=True, display_id=True)
        if getattr(search, "done", True):
            show_summary(rec)
        else:
            search.subscribe(_summary_subscriber(rec))
            if search.done:  # ended between the check and the subscription
                show_summary(rec)
    return rec.widget


@magics_class
class NimmMagics(Magics):
    """``%%nimm_search`` and ``%nimm``. Settable with ``%config NimmMagics.<name> = value``."""

    budget = Int(20, help="Evaluations per search (default for --budget).").tag(config=True)
    branches = Int(3, help="Branches (integration strategies) per search.").tag(config=True)
    policy = Unicode("nimmgen", help="Search policy.").tag(config=True)
    proposer = Unicode("auto", help="auto | anthropic | offline | replay.").tag(config=True)
    model = Unicode(None, allow_none=True, help="LLM model name for the proposer.").tag(config=True)
    device = Unicode("auto", help="auto | cpu | cuda | cuda:N.").tag(config=True)
    workers = Int(1, help="Parallel evaluations.").tag(config=True)
    run_root = Unicode("runs", help="Folder under which searches keep their run dirs.").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any):
        super().__init__(shell=shell, **kwargs)
        self.runs: dict[str, SearchRecord] = {}
        self.last_run: str | None = None
        self.last_traceback: str = ""
        self.channel = CellChannel(shell)
        # Injection points (tests, other front ends); the defaults call the public API.
        self.search_factory: Callable[..., Any] = _default_search
        self.resume_factory: Callable[..., Any] = _default_resume
        self.open_run_factory: Callable[..., Any] = _default_open_run

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
        if not self.runs:
            raise NimmError("no search has been started in this kernel")
        if ref is None:
            return self.runs[self.last_run or next(reversed(self.runs))]
        if ref in self.runs:
            return self.runs[ref]
        matches = [k for k in self.runs if k.startswith(ref)]
        if len(matches) == 1:
            return self.runs[matches[0]]
        raise NimmError(f"no search {ref!r} in this kernel; known: {', '.join(self.runs)}")

    def _result_for(self, ref: str | None) -> tuple[Any, SearchRecord | None]:
        """A search of this kernel, or a finished run opened from its run dir."""
        if ref is not None and ref not in self.runs and not any(k.startswith(ref) for k in self.runs):
            path = Path(ref)
            if not path.is_dir():
                path = Path(self.run_root) / ref
            if not path.is_dir():
                raise NimmError(f"no search {ref!r} in this kernel and no run dir {ref!r}")
            return self.open_run_factory(path), None
        rec = self._record(ref)
        return rec.search, rec

    # ---------------------------------------------------------------- %%nimm_search --
    @magic_arguments()
    @argument("task", nargs="?", default=None,
              help="Built-in task name (see `%%nimm tasks`), or the name for a --data task.")
    @argument("--data", metavar="VAR", help="A pandas DataFrame in the notebook namespace.")
    @argument("--time", metavar="COL", help="Time column (trajectory task); omit for tabular data.")
    @argument("--targets", metavar="A,B", help="Target columns, comma-separated.")
    @argument("--inputs", metavar="C,D", help="Exogenous input columns (trajectory task).")
    @argument("--group", metavar="G", help="Column naming the unit (patient, region) of each row.")
    @argument("--features", metavar="E,F", help="Feature columns (tabular task).")
    @argument("--budget", type=int, help="Number of evaluations (default: %%config NimmMagics.budget; capped by NIMM_DEMO_BUDGET).")
    @argument("--branches", type=int, help="Number of branches (integration strategies).")
    @argument("--policy", help="nimmgen | greedy | evolution | sampling.")
    @argument("--proposer", help="auto | anthropic | offline | replay.")
    @argument("--model", help="LLM model name for the anthropic proposer.")
    @argument("--device", help="auto | cpu | cuda | cuda:N.")
    @argument("--workers", type=int, help="Parallel evaluations.")
    @argument("--executor", choices=("local", "ray", "auto"),
              help="Where evaluations run: local processes (default), a Ray cluster, or auto "
                   "(Ray when RAY_ADDRESS is set).")
    @argument("--ray-address", metavar="ADDR", help="Ray cluster address (with --executor ray).")
    @argument("--gpus-per-eval", type=float, metavar="F", help="Ray: GPUs per evaluation.")
    @argument("--cpus-per-eval", type=float, metavar="F", help="Ray: CPUs per evaluation.")
    @argument("--seed", type=int, default=0, help="Random seed (default 0).")
    @argument("--max-epochs", type=int,
              help="Training epochs per candidate (default: the harness's; capped by NIMM_DEMO_MAX_EPOCHS).")
    @argument("--run-dir", help="Folder for this run's journal and weights.")
    @argument("--out", metavar="VAR", help="Bind the Search handle to this variable.")
    @argument("--wait", action="store_true",
              help="Block until the search ends (Ctrl-C / interrupt stops it, resumable).")
    @argument("--resume", metavar="RUN_DIR", help="Continue the search journaled in RUN_DIR.")
    @argument("--option", action="append", metavar="K=V",
              help="Task option (repeatable), e.g. --option n_patients=50.")
    @argument("--no-widget", action="store_true", help="Text progress instead of the widget.")
    @line_cell_magic
    def nimm_search(self, line: str, cell: str | None = None) -> None:
        """Search for a neural-integrated mechanistic model of TASK.

        The cell body is your description of the system and what you know about it; a
        fenced ```python block in it is seed model code (a `class Model(nn.Module)`).
        Without --wait the search runs in the background and the kernel stays usable;
        `%nimm status`, `%nimm stop` and `%nimm export` manage it. The environment variable
        NIMM_DEMO_BUDGET caps the budget of every search and NIMM_DEMO_MAX_EPOCHS the
        training epochs of every candidate (used to run the demo notebooks quickly in CI).
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

    def _settings(self, args: Any) -> dict[str, Any]:
        budget = args.budget if args.budget is not None else self.budget
        if budget is None or budget <= 0:
            raise NimmError(f"--budget must be a positive integer, got {budget}")
        cap = demo_budget_cap()
        if cap is not None:
            budget = min(budget, cap)
        branches = args.branches if args.branches is not None else self.branches
        if branches <= 0:
            raise NimmError(f"--branches must be a positive integer, got {branches}")
        workers = args.workers if args.workers is not None else self.workers
        if workers <= 0:
            raise NimmError(f"--workers must be a positive integer, got {workers}")
        proposer = args.proposer or self.proposer
        if proposer == "anthropic" and not os.environ.get("ANTHROPIC_API_KEY"):
            raise NimmError("--proposer anthropic needs the ANTHROPIC_API_KEY environment "
                            "variable (or use --proposer offline)")
        out = dict(budget=budget, branches=branches, policy=args.policy or self.policy,
                   proposer=proposer, model=args.model or self.model,
                   device=args.device or self.device, workers=workers, seed=args.seed)
        out.update(self._executor_settings(args))
        epochs = getattr(args, "max_epochs", None)
        if epochs is not None and epochs <= 0:
            raise NimmError(f"--max-epochs must be a positive integer, got {epochs}")
        epochs_cap = demo_epochs_cap()
        if epochs_cap is not None:
            epochs = min(epochs or epochs_cap, epochs_cap)
        if epochs is not None:
            from ..execution.base import TrainConfig

            out["train"] = TrainConfig(max_epochs=epochs, seed=args.seed)
        return out

    @staticmethod
    def _executor_settings(args: Any) -> dict[str, Any]:
        """``executor`` / ``executor_options`` from ``--executor`` and its Ray options."""
        executor = getattr(args, "executor", None)
        eopts = {k: v for k, v in (("ray_address", getattr(args, "ray_address", None)),
                                   ("num_gpus", getattr(args, "gpus_per_eval", None)),
                                   ("num_cpus", getattr(args, "cpus_per_eval", None)))
                 if v is not None}
        if eopts and executor not in ("ray", "auto"):
            raise NimmError("--ray-address, --gpus-per-eval and --cpus-per-eval need --executor ray")
        out: dict[str, Any] = {}
        if executor is not None:
            out["executor"] = executor
            if eopts:
                out["executor_options"] = eopts
        return out

    def _start(self, args: Any, body: str) -> Any:
        if args.out is not None and not args.out.isidentifier():
            raise NimmError(f"--out needs a Python variable name, got {args.out!r}")
        description, seed_code = parse_cell_body(body)
        if args.resume:
            return self._resume(args)
        if not args.task and args.data:
            args.task = args.data  # a DataFrame task is named after its variable
        if not args.task:
            raise NimmError("give a task name (see `%nimm tasks`) or --resume RUN_DIR")
        settings = self._settings(args)
        task_options = parse_options(args.option)
        task: Any
        if args.data is not None:
            if task_options:
                raise NimmError("--option applies to built-in tasks, not to --data tasks")
            task = self._dataframe_task(args, description, seed_code)
        else:
            self._check_task_name(args.task)
            task = args.task
            stray = [f"--{k}" for k in ("time", "targets", "inputs", "group", "features")
                     if getattr(args, k) is not None]
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
        return self.search_factory(task, **kwargs)

    def _accepted(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Drop ``seed_code`` when the search function does not take it (it is also in
        the description, so nothing is lost)."""
        import inspect

        target = self.search_factory
        if target is _default_search:
            try:
                from ..search.api import search as target
            except Exception:
                return kwargs
        try:
            params = inspect.signature(target).parameters
        except (TypeError, ValueError):
            return kwargs
        if "seed_code" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return kwargs
        return {k: v for k, v in kwargs.items() if k != "seed_code"}

    def _check_task_name(self, name: str) -> None:
        from .. import tasks

        if name not in tasks.list_tasks():
            raise NimmError(f"unknown task {name!r}; available: {', '.join(tasks.list_tasks())}")

    def _dataframe_task(self, args: Any, description: str, seed_code: str | None) -> Any:
        ns = self.shell.user_ns if self.shell is not None else {}
        if args.data not in ns:
            raise NimmError(f"--data: no variable {args.data!r} in the notebook namespace")
        df = ns[args.data]
        if not hasattr(df, "columns"):
            raise NimmError(f"--data: {args.data!r} is a {type(df).__name__}, not a pandas DataFrame")
        targets = _columns(args.targets)
        if not targets:
            raise NimmError("--data needs --targets A,B (the columns to model)")
        named = {"--time": [args.time] if args.time else [], "--targets": targets,
                 "--inputs": _columns(args.inputs) or [], "--group": [args.group] if args.group else [],
                 "--features": _columns(args.features) or []}
        columns = [str(c) for c in df.columns]
        for flag, cols in named.items():
            for col in cols:
                if col not in columns:
                    raise NimmError(f"{flag}: column {col!r} is not in {args.data} "
                                    f"(columns: {', '.join(columns[:20])})")
        from ..tasks import Task

        build = getattr(Task, "from_dataframe", None)
        if build is None:
            from ..tasks.dataframe import task_from_dataframe as build
        kw: dict[str, Any] = {"targets": targets, "description": description}
        for key, value in (("time", args.time), ("inputs", _columns(args.inputs)),
                           ("group", args.group), ("features", _columns(args.features)),
                           ("prior_code", seed_code)):
            if value is not None:
                kw[key] = value
        import inspect

        try:
            params = inspect.signature(build).parameters
            if "name" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
                kw["name"] = args.task
        except (TypeError, ValueError):
            pass
        return build(df, **kw)

    def _resume(self, args: Any) -> Any:
        run_dir = Path(args.resume)
        if not run_dir.is_dir():
            raise NimmError(f"--resume: no run dir {str(run_dir)!r}")
        fixed = [flag for flag, value in (("--branches", args.branches), ("--policy", args.policy),
                                          ("--data", args.data), ("--option", args.option),
                                          ("--max-epochs", getattr(args, "max_epochs", None)))
                 if value is not None]
        if fixed:  # refused rather than silently ignored
            raise NimmError(f"{', '.join(fixed)} cannot be changed when resuming a search")
        overrides: dict[str, Any] = {"background": True, **self._executor_settings(args)}
        for key in ("budget", "workers", "device", "proposer", "model"):
            value = getattr(args, key)
            if value is not None:
                overrides[key] = value
        if "budget" in overrides and overrides["budget"] <= 0:
            raise NimmError(f"--budget must be a positive integer, got {overrides['budget']}")
        cap = demo_budget_cap()
        if cap is not None and "budget" in overrides:
            overrides["budget"] = min(overrides["budget"], cap)
        if overrides.get("proposer") == "anthropic" and not os.environ.get("ANTHROPIC_API_KEY"):
            raise NimmError("--proposer anthropic needs the ANTHROPIC_API_KEY environment variable")
        return self.resume_factory(run_dir, **overrides)

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
            from .widget import SearchWidget

            rec.widget = SearchWidget(search, on_export=lambda ids: self._export_from_widget(rec, ids))
            display(rec.widget)
            # An empty output that the final summary replaces: a saved notebook then keeps
            # a static table and plot even without widget state.
            rec.summary_handle = display({"text/plain": ""}, raw=True, display_id=True)
            if not args.wait:
                search.subscribe(self._summary_subscriber(rec))
                if search.done:  # it ended before the subscription
                    threading.Thread(target=show_summary, args=(rec,), daemon=True).start()
        if args.wait:
            self._wait(rec, progress=not widget)
            if widget:
                self._show_summary(rec)
            else:
                self._print_summary(rec)
        elif not widget:
            print(f"search {search.run_id} running in the background (run dir {search.run_dir}); "
                  f"`%nimm status` to follow, `%nimm stop` to stop")

    def _wait(self, rec: SearchRecord, progress: bool) -> None:
        search = rec.search
        bar = None
        if progress:
            from tqdm.auto import tqdm

            total = getattr(getattr(search, "settings", None), "budget", None)
            if total is None and isinstance(getattr(search, "settings", None), dict):
                total = search.settings.get("budget")
            bar = tqdm(total=total, desc=f"nimm {search.run_id}", unit="eval", file=sys.stderr)
        try:
            while not search.done:
                time.sleep(0.1)
                if bar is not None:
                    self._tick(bar, search)
        except KeyboardInterrupt:
            search.stop()
            deadline = time.time() + 10
            while not search.done and time.time() < deadline:
                try:
                    time.sleep(0.05)
                except KeyboardInterrupt:
                    break
            if bar is not None:
                bar.close()
                bar = None
            st = search.status()
            print(f"nimm_search: interrupted; search {search.run_id} stopped after "
                  f"{st.get('evaluated', 0)} evaluations; continue it with "
                  f"`%%nimm_search --resume {search.run_dir}`", file=sys.stderr)
        finally:
            if bar is not None:
                self._tick(bar, search)
                bar.close()

    @staticmethod
    def _tick(bar: Any, search: Any) -> None:
        st = search.status()
        done = int(st.get("evaluated", 0))
        if done > bar.n:
            bar.update(done - bar.n)
        bar.set_postfix(best=_fmt(st.get("best_val")), failed=st.get("failed", 0),
                        running=st.get("running", 0), refresh=False)

    def _summary_subscriber(self, rec: SearchRecord) -> Callable[[Any], None]:
        return _summary_subscriber(rec)

    def _show_summary(self, rec: SearchRecord) -> None:
        show_summary(rec)

    def _print_summary(self, rec: SearchRecord) -> None:
        from .summary import summary_text

        try:
            result = rec.search.wait(timeout=60)
        except Exception:
            result = rec.search
        print(summary_text(result if result is not None else rec.search))

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
        from .. import tasks

        print("\n".join(tasks.list_tasks()))

    def _cmd_list(self, rest: list[str]) -> None:
        lines = []
        seen: set[str] = set()
        for run_id, rec in self.runs.items():
            s = rec.search
            seen.add(str(Path(s.run_dir).resolve()))
            lines.append(status_line(run_id, s.status(), bool(s.done), self._task_name(s)))
        root = Path(self.run_root)
        found = []
        if root.is_dir():
            for d in sorted(root.iterdir()):
                if d.is_dir() and str(d.resolve()) not in seen and self._looks_like_run(d):
                    found.append(str(d))
        if found:
            lines.append(f"run dirs under {root}/ (open with `%nimm status DIR`, "
                         "continue with `%%nimm_search --resume DIR`):")
            lines += [f"  {d} ({self._run_state(d)})" for d in found]
        print("\n".join(lines) if lines else f"no searches in this kernel and no run dirs under {root}/")

    def _run_state(self, d: str) -> str:
        """A found run's state as its journal and lock tell it (``interrupted``: its process died)."""
        try:
            return str(self.open_run_factory(d).status)
        except Exception as exc:  # noqa: BLE001 - a damaged run dir is listed, not fatal
            return f"unreadable: {exc}"[:200]

    @staticmethod
    def _looks_like_run(d: Path) -> bool:
        return (d / "journal.sqlite").is_file()

    @staticmethod
    def _task_name(s: Any) -> str:
        name = getattr(s, "task_name", None)
        if name:
            return str(name)
        return str(getattr(getattr(s, "task", None), "name", "") or "")

    def _cmd_status(self, rest: list[str]) -> None:
        obj, rec = self._result_for(rest[0] if rest else None)
        if rec is not None:
            print(status_line(str(obj.run_id), obj.status(), bool(obj.done), self._task_name(obj)))
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
        print(f"search {s.run_id} {state}; continue it with `%%nimm_search --resume {s.run_dir}`")

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
        for key in _KEY_ENVS:
            lines.append(f"{key}: {'set' if os.environ.get(key) else 'not set'}")
        lines.append(f"NIMM_DATA_DIR: {os.environ.get('NIMM_DATA_DIR') or 'not set (default cache)'}")
        lines.append("cell insertion: " + ("JupyterLab extension connected" if self.channel.available
                                           else "no extension (exports use a new cell or %nimm save)"))
        print("\n".join(lines))

    def _cmd_traceback(self, rest: list[str]) -> None:
        print(self.last_traceback or "no error recorded")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nimm_jupyter``: register the magics (nothing else global)."""
    magics = NimmMagics(ipython)
    ipython.register_magics(magics)
    if magics not in ipython.configurables:
        ipython.configurables.append(magics)  # so %config NimmMagics.x = ... reaches it


def unload_ipython_extension(ipython: Any) -> None:
    for obj in list(ipython.configurables):
        if isinstance(obj, NimmMagics):
            ipython.configurables.remove(obj)
