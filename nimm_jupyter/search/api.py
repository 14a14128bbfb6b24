"""The public search API: :func:`search`, :func:`resume`, :func:`open_run`.

A :class:`Search` is a running (or finished) search; a :class:`SearchResult`
(:mod:`.results`) is a snapshot of one, live or read back from a run directory's journal
with :func:`open_run`. The run directory's layout belongs to :class:`~.rundir.RunDir`.
The Jupyter layer and the CLI use only this module.
"""
from __future__ import annotations

import dataclasses
import os
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ..execution.base import Executor
from ..proposers.base import Proposer
from ..tasks.base import Task
from .events import Event, EventBus
from .errors import SearchError
from .journal import Journal, JournalError, sanitise
from .node import Node
from .results import SearchResult, open_run
from .rundir import JOURNAL_NAME, RunDir
from .policies import make_policy
from .config import RESUMABLE, SearchConfig, Settings
from .runner import Runner
from .tree import Tree

__all__ = ["Search", "SearchError", "SearchResult", "open_run", "resume", "search"]

_FENCED = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.S)


# -- a running search -------------------------------------------------------------------
class Search:
    """A search in progress (or finished). Safe to query from any thread."""

    def __init__(self, runner: Runner, bus: EventBus, lock: "_RunLock") -> None:
        self._runner, self._bus, self._lock = runner, bus, lock
        self.run_id: str = runner.run_id
        self.run_dir: Path = runner.run_dir
        self.task: Task = runner.task
        # sanitised like the journal's copy: an api_key in proposer_options must not show up
        # in reprs, SearchResult.settings or exports
        self.settings: dict[str, Any] = sanitise(runner.settings.to_dict())
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        st = self.status()
        return (f"<Search {self.run_id} {'done' if self.done else 'running'}: "
                f"{st['evaluated']} evaluated, best val {st['best_val']}>")

    # -- lifecycle -----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._runner.run()
        except BaseException as exc:
            self._error = exc
            if self._thread is None:  # foreground: the caller sees the exception
                raise
        finally:
            self._lock.release()

    def _start(self, background: bool) -> "Search":
        if background:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"nimm-search-{self.run_id}")
            self._thread.start()
        else:
            self._run()
        return self

    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``fn(event)`` for every later event; returns an unsubscribe function."""
        return self._bus.subscribe(fn)

    def wait(self, timeout: float | None = None) -> SearchResult:
        """Block until the search ends (or ``timeout`` s pass: then the result so far).
        Re-raises the error that ended the search, if any."""
        if self._thread is not None:
            self._thread.join(timeout)
        else:
            self._runner.finished.wait(timeout)
        if self._error is not None and not isinstance(self._error, KeyboardInterrupt):
            raise self._error
        return self.result

    def stop(self, timeout: float = 2.0) -> None:
        """Stop now: running evaluations are cancelled and the journal stays resumable."""
        self._runner.stop()
        if self._thread is not None:
            self._thread.join(timeout)
        else:
            self._runner.finished.wait(timeout)

    @property
    def done(self) -> bool:
        return self._runner.finished.is_set()

    @property
    def error(self) -> BaseException | None:
        return self._error

    # -- views ---------------------------------------------------------------------------
    @property
    def nodes(self) -> list[Node]:
        return self._runner.tree.snapshot()

    @property
    def best(self) -> Node | None:
        """The node handed back (:meth:`~.tree.Tree.answer`: the simplest within noise of the
        lowest validation score)."""
        return self._runner.tree.answer()

    def status(self) -> dict[str, Any]:
        nodes = self.nodes
        best = self._runner.tree.best(nodes)
        states = [n.state for n in nodes]
        return {
            "evaluated": sum(n.completed for n in nodes),
            "failed": states.count("failed"),
            "running": states.count("running"),
            "pending": states.count("pending"),
            "proposing": self._runner.proposing(),
            "tokens": self._runner.tokens, "cost": self._runner.cost,
            "elapsed": self._runner.elapsed,
            "best_val": best.rmse("val") if best else None,
            "best_node": best.id if best else None,
            "budget": self._runner.settings.config.budget,
            "status": self._runner.status, "stop_reason": self._runner.stop_reason,
        }

    @property
    def result(self) -> SearchResult:
        r = self._runner
        nodes = r.tree.snapshot()
        return SearchResult(
            run_id=self.run_id, run_dir=self.run_dir, task_name=self.task.name,
            best=r.tree.answer(nodes), nodes=nodes, counts=r.tree.counts(), tokens=r.tokens,
            cost=r.cost, wall_time=r.elapsed, stop_reason=r.stop_reason, status=r.status,
            branches=r.tree.branch_stats(), settings=self.settings, _task=self.task,
        )


class _RunLock:
    """An exclusive lock on a run directory, released by the OS if the process dies."""

    def __init__(self, run_dir: Path) -> None:
        self.path = RunDir(run_dir).lock_path
        self._fh = None

    def acquire(self) -> "_RunLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory lock
            return self
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise SearchError(f"run {self.path.parent} is being searched by another process "
                              "or search; stop it first") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing drops the flock
            self._fh = None


# -- building blocks --------------------------------------------------------------------
def _resolve_task(task: str | Task, options: dict[str, Any]) -> tuple[Task, str]:
    from .. import tasks

    if isinstance(task, Task):
        if options:
            raise SearchError("task_options only apply to a task given by name")
        return task, "pickle"
    if not isinstance(task, str) or not task.strip():
        raise SearchError(f"task must be a task name or a Task, got {task!r}")
    try:
        return tasks.get(task, **options), "registry"
    except tasks.UnknownTaskError as exc:
        raise SearchError(str(exc)) from None
    except TypeError as exc:
        raise SearchError(f"bad task option for {task!r}: {exc}") from None


def _proposer(spec: str | Proposer, config: SearchConfig) -> tuple[Proposer, SearchConfig]:
    """The proposer, and the config recording which one it is (name and options)."""
    from ..proposers.registry import make_proposer, parse_spec

    options = dict(config.proposer_options)
    if isinstance(spec, Proposer):
        name = getattr(spec, "name", type(spec).__name__)
        if getattr(spec, "path", None) and name == "replay":
            options["path"] = str(spec.path)
        return spec, dataclasses.replace(config, proposer=name, proposer_options=options)
    if not isinstance(spec, str):
        raise SearchError(f"proposer must be a name or a Proposer, got {spec!r}")
    name, spec_options = parse_spec(spec)  # "replay:FILE" carries its path, "auto" resolves
    options.update(spec_options)
    config = dataclasses.replace(config, proposer=name, proposer_options=options)
    try:
        return make_proposer(name, model=config.model, seed=config.seed, **options), config
    except (ValueError, TypeError) as exc:  # unknown name, bad option, missing replay file
        raise SearchError(str(exc)) from None
    except RuntimeError as exc:
        from ..proposers.anthropic import MissingAPIKeyError  # already imported by now

        if isinstance(exc, MissingAPIKeyError):
            raise SearchError(str(exc)) from None
        raise


def _executor(spec: Executor | None,
              config: SearchConfig) -> tuple[Executor, bool, SearchConfig]:
    """The executor (``spec``, else built from ``config.executor``), whether the search owns
    it, and the config recording its kind."""
    if isinstance(spec, Executor):
        kind = type(spec).__name__
        return spec, False, dataclasses.replace(
            config, executor=dataclasses.replace(config.executor, kind=kind))
    from ..execution.factory import ExecutorError, make_executor

    try:
        executor = make_executor(config.executor.kind, workers=config.workers,
                                 device=config.device, **config.executor.options())
    except (ExecutorError, ValueError, TypeError, ConnectionError) as exc:
        # ExecutorError: unknown name / missing extra; ValueError: a bad device or worker
        # setting (DeviceError); TypeError: an unknown option; ConnectionError: no Ray cluster
        raise SearchError(str(exc)) from None
    kind = "ray" if type(executor).__name__ == "RayExecutor" else "local"
    return executor, True, dataclasses.replace(
        config, executor=dataclasses.replace(config.executor, kind=kind))


def _seed_code(description: str) -> str | None:
    for block in _FENCED.findall(description or ""):
        if "class Model" in block:
            return block.strip() + "\n"
    return None


def _check_seed(task: Task, description: str) -> None:
    """Refuse seed code that fails the contract check, before any budget is spent on it.

    The seed code is the user's own (their cell or file), so it runs here with their rights;
    candidates a proposer writes are only ever run in the sandbox.
    """
    seed = _seed_code(description)
    if seed is None:
        return
    from ..modeling.contract import check_candidate

    report = check_candidate(seed, task)
    if not report.ok:
        raise SearchError(f"the seed code fails the contract check "
                          f"({report.status.value}): {report.message}")


def _context(task: Task, description: str):
    from ..proposers.context import context_for

    return context_for(task, user_notes=description, seed_code=_seed_code(description))


def _default_run_dir(task_name: str, root: str | Path = "runs") -> Path:
    """``<root>/<task>-<yyyymmdd-hhmmss>-<hex>`` (also the magics' layout)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", task_name) or "task"
    return Path(root) / f"{safe}-{stamp}-{secrets.token_hex(3)}"


def _policy(config: SearchConfig) -> Any:
    """The search policy; its errors (unknown name, bad option) become SearchError."""
    try:
        return make_policy(config.policy, branches=config.branches, seed=config.seed,
                           debug_depth=config.debug_depth, patience=config.patience,
                           **config.policy_options)
    except ValueError as exc:
        raise SearchError(str(exc)) from None


def _build(*, task: Task, settings: Settings, run_dir: Path, run_id: str, journal: Journal,
           tree: Tree, proposer: Proposer, executor: Executor, own_executor: bool,
           on_event: Callable[[Event], None] | None, elapsed_before: float,
           lock: _RunLock) -> Search:
    bus = EventBus()
    if on_event is not None:
        bus.subscribe(on_event)
    runner = Runner(run_id=run_id, run_dir=run_dir, task=task, settings=settings,
                    proposer=proposer, executor=executor, policy=_policy(settings.config),
                    journal=journal, tree=tree, bus=bus,
                    context=_context(task, settings.description),
                    elapsed_before=elapsed_before, own_executor=own_executor)
    return Search(runner, bus, lock)


def _abandon(lock: _RunLock, journal: Journal | None, executor: Executor | None,
             own: bool) -> None:
    """Undo a start that failed part-way: what was opened for the search is closed again."""
    try:
        if executor is not None and own:
            executor.shutdown()
        if journal is not None:
            journal.close()
    finally:
        lock.release()


def _configure(base: SearchConfig, overrides: dict[str, Any],
               only: frozenset[str] | None = None
               ) -> tuple[SearchConfig, Proposer | None, Executor | None]:
    """``base`` with ``overrides`` applied; a proposer or executor *instance* among them is
    returned apart (a config holds names, not live objects)."""
    proposer = overrides.pop("proposer") \
        if isinstance(overrides.get("proposer"), Proposer) else None
    executor = overrides.pop("executor") \
        if isinstance(overrides.get("executor"), Executor) else None
    try:
        config = base.with_overrides(only=only, **overrides)
    except ValueError as exc:
        raise SearchError(str(exc)) from None
    return config, proposer, executor


# -- public entry points ----------------------------------------------------------------
def search(task: str | Task, config: SearchConfig | None = None, *,
           run_dir: str | Path | None = None, description: str = "",
           background: bool = False, task_options: dict | None = None,
           on_event: Callable[[Event], None] | None = None, **overrides: Any) -> Search:
    """Search for a neural-integrated mechanistic model of ``task``.

    ``task`` is a registered task name (built with ``task_options``) or a :class:`Task`.
    ``config`` (default :class:`SearchConfig()`) holds every setting; ``overrides`` change
    single ones by their flat names (:data:`~.config.FLAT_KEYS`: ``budget``, ``branches``,
    ``policy``, ``proposer``, ``model``, ``seed``, ``workers``, ``device``, ``executor``,
    ``executor_options``, ``time_limit``, ``max_tokens``, ``max_cost``, ``train``, ...); an
    unknown name is a :class:`SearchError` naming it. ``proposer`` may also be a
    :class:`Proposer` and ``executor`` an :class:`Executor` instance. ``executor`` is
    ``"local"`` (sandboxed processes on this machine), ``"ray"`` (a Ray cluster;
    ``executor_options`` such as ``ray_address``, ``num_cpus``, ``num_gpus``, ``retries``) or
    ``"auto"`` (Ray when ``RAY_ADDRESS`` is set). ``description`` reaches the proposer as
    user notes (a fenced ``class Model`` block in it becomes seed code). The run is journaled
    in ``run_dir`` (default ``./runs/<task>-<time>-<id>``) and can be continued with
    :func:`resume`. With ``background=True`` the search runs in a daemon thread and this
    returns at once.
    """
    the_task, source = _resolve_task(task, dict(task_options or {}))
    _check_seed(the_task, description)
    cfg, proposer, executor = _configure(config or SearchConfig(), overrides)
    _policy(cfg)  # fail fast on a bad policy name/option
    settings = Settings(
        task_name=the_task.name,
        # registry tasks are rebuilt from the options the caller gave (the factory's own
        # record, task.options, may hold arguments it sets itself, e.g. the variant)
        task_options=(dict(task_options or {}) if source == "registry"
                      else dict(the_task.options or {})),
        task_source=source, description=description or "")
    the_proposer, cfg = _proposer(proposer if proposer is not None else cfg.proposer, cfg)
    rd = Path(run_dir) if run_dir is not None else _default_run_dir(the_task.name)
    if (rd / JOURNAL_NAME).exists():
        raise SearchError(f"{rd} already holds a search; continue it with resume({str(rd)!r}) "
                          "or choose another run_dir")
    rd.mkdir(parents=True, exist_ok=True)
    lock = _RunLock(rd).acquire()
    journal: Journal | None = None
    the_executor: Executor | None = None
    own = False
    try:
        if source == "pickle":
            RunDir(rd).save_task(the_task)
        the_executor, own, cfg = _executor(executor, cfg)
        settings.config = cfg
        run_id = rd.name
        journal = Journal.for_run(rd)
        journal.init_search(run_id, the_task.name, settings.task_options, settings.to_dict())
        s = _build(task=the_task, settings=settings, run_dir=rd, run_id=run_id, journal=journal,
                   tree=Tree(), proposer=the_proposer, executor=the_executor, own_executor=own,
                   on_event=on_event, elapsed_before=0.0, lock=lock)
    except BaseException:
        _abandon(lock, journal, the_executor, own)
        raise
    return s._start(background)


_REBUILDABLE_PROPOSERS = ("offline", "anthropic", "openai", "replay", "auto")


def resume(run_dir: str | Path, *, background: bool = False,
           on_event: Callable[[Event], None] | None = None, description: str | None = None,
           **overrides: Any) -> Search:
    """Continue the search journaled in ``run_dir``.

    Completed nodes are kept (not re-run, their budget not re-spent); nodes that were
    pending or running (cancelled by a stop) are evaluated again, oldest first, as far as the
    budget allows: the run never evaluates more nodes than its budget, and those left over
    stay pending for a resume with a larger one. ``overrides`` may change the settings in
    :data:`~.config.RESUMABLE` (budgets and limits, ``workers``, ``device``, ``model``,
    ``executor``/``executor_options``, ``train``, ...) and give ``proposer``/``executor`` as
    names or instances (by default the run's own kind). Budgets count the whole run,
    earlier sessions included.
    """
    rd = Path(run_dir)
    if not (rd / JOURNAL_NAME).exists():
        raise SearchError(f"no search journal in {rd} (expected {rd / JOURNAL_NAME})")
    lock = _RunLock(rd).acquire()
    journal: Journal | None = None
    the_executor: Executor | None = None
    own = False
    try:
        journal = Journal.for_run(rd)
        try:
            row = journal.search_row()
        except JournalError as exc:  # a journal created but never initialised
            raise SearchError(f"cannot resume {rd}: {exc}") from None
        settings = Settings.from_dict(row["settings"])
        named_proposer = isinstance(overrides.get("proposer"), str)
        cfg, proposer, executor = _configure(settings.config, overrides, only=RESUMABLE)
        if description is not None:
            settings.description = description
        task = RunDir(rd).load_task(settings.task_name, settings.task_options,
                                    settings.task_source)
        if proposer is None and not named_proposer \
                and cfg.proposer not in _REBUILDABLE_PROPOSERS:
            raise SearchError(f"run {rd} used proposer {cfg.proposer!r}, which cannot "
                              "be rebuilt by name; pass proposer=... to resume()")
        the_proposer, cfg = _proposer(proposer if proposer is not None else cfg.proposer, cfg)
        if executor is None and cfg.executor.kind not in ("local", "ray"):
            # the run's own executor was an instance, which cannot be stored: run locally
            cfg = dataclasses.replace(
                cfg, executor=dataclasses.replace(cfg.executor, kind="local"))
        the_executor, own, settings.config = _executor(executor, cfg)
        tree = journal.load_tree()
        restore = getattr(the_proposer, "restore", None)
        if callable(restore):
            restore([n.view(tree.branches[n.branch].strategy) for n in tree.snapshot()])
        s = _build(task=task, settings=settings, run_dir=rd, run_id=row["run_id"],
                   journal=journal, tree=tree, proposer=the_proposer, executor=the_executor,
                   own_executor=own, on_event=on_event,
                   elapsed_before=float(journal.get_meta("elapsed", 0.0) or 0.0), lock=lock)
    except BaseException:
        _abandon(lock, journal, the_executor, own)
        raise
    return s._start(background)
