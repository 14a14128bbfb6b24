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

from ..modeling.result import EvalResult  # noqa: F401  (before execution: import order)
from ..execution.base import Executor, TrainConfig
from ..proposers.base import Proposer
from ..tasks.base import Task
from .events import Event, EventBus
from .errors import SearchError
from .journal import Journal, JournalError, sanitise
from .node import Node
from .results import SearchResult, open_run
from .rundir import JOURNAL_NAME, RunDir
from .policies import make_policy
from .runner import Runner, Settings
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
        return self._runner.tree.best()

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
            "budget": self._runner.settings.budget,
            "status": self._runner.status, "stop_reason": self._runner.stop_reason,
        }

    @property
    def result(self) -> SearchResult:
        r = self._runner
        nodes = r.tree.snapshot()
        return SearchResult(
            run_id=self.run_id, run_dir=self.run_dir, task_name=self.task.name,
            best=r.tree.best(nodes), nodes=nodes, counts=r.tree.counts(), tokens=r.tokens,
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


def _proposer(spec: str | Proposer, settings: Settings) -> Proposer:
    from ..proposers.registry import make_proposer, resolve_name

    if isinstance(spec, Proposer):
        settings.proposer = getattr(spec, "name", type(spec).__name__)
        if getattr(spec, "path", None) and settings.proposer == "replay":
            settings.proposer_options = {**settings.proposer_options, "path": str(spec.path)}
        return spec
    if not isinstance(spec, str):
        raise SearchError(f"proposer must be a name or a Proposer, got {spec!r}")
    if spec.startswith("replay:"):
        spec, path = "replay", spec.split(":", 1)[1]
        settings.proposer_options = {**settings.proposer_options, "path": path}
    name = resolve_name(spec)
    settings.proposer = name
    try:
        return make_proposer(name, model=settings.model, seed=settings.seed,
                             **settings.proposer_options)
    except (ValueError, TypeError) as exc:  # unknown name, bad option, missing replay file
        raise SearchError(str(exc)) from None
    except RuntimeError as exc:
        from ..proposers.anthropic import MissingAPIKeyError  # already imported by now

        if isinstance(exc, MissingAPIKeyError):
            raise SearchError(str(exc)) from None
        raise


def _executor(spec: str | Executor, settings: Settings) -> tuple[Executor, bool]:
    if isinstance(spec, Executor):
        settings.executor = type(spec).__name__
        return spec, False
    from ..execution.factory import ExecutorError, make_executor

    try:
        executor = make_executor(spec, workers=settings.workers, device=settings.device,
                                 **settings.executor_options)
    except (ExecutorError, ValueError, TypeError, ConnectionError) as exc:
        # ExecutorError: unknown name / missing extra; ValueError: a bad device or worker
        # setting (DeviceError); TypeError: an unknown option; ConnectionError: no Ray cluster
        raise SearchError(str(exc)) from None
    settings.executor = "ray" if type(executor).__name__ == "RayExecutor" else "local"
    return executor, True


def _seed_code(description: str) -> str | None:
    for block in _FENCED.findall(description or ""):
        if "class Model" in block:
            return block.strip() + "\n"
    return None


def _context(task: Task, description: str):
    from ..proposers.context import context_for

    return context_for(task, user_notes=description, seed_code=_seed_code(description))


def _default_run_dir(task_name: str, root: str | Path = "runs") -> Path:
    """``<root>/<task>-<yyyymmdd-hhmmss>-<hex>`` (also the magics' layout)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", task_name) or "task"
    return Path(root) / f"{safe}-{stamp}-{secrets.token_hex(3)}"


def _build(*, task: Task, settings: Settings, run_dir: Path, run_id: str, journal: Journal,
           tree: Tree, proposer: Proposer, executor: Executor, own_executor: bool,
           train: TrainConfig, on_event: Callable[[Event], None] | None,
           elapsed_before: float, lock: _RunLock) -> Search:
    policy = make_policy(settings.policy, branches=settings.branches, seed=settings.seed,
                         debug_depth=settings.debug_depth, patience=settings.patience,
                         **settings.policy_options)
    bus = EventBus()
    if on_event is not None:
        bus.subscribe(on_event)
    runner = Runner(run_id=run_id, run_dir=run_dir, task=task, settings=settings,
                    proposer=proposer, executor=executor, policy=policy, journal=journal,
                    tree=tree, bus=bus, context=_context(task, settings.description),
                    elapsed_before=elapsed_before, own_executor=own_executor, train=train)
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


def _train_config(train: TrainConfig | None, settings: Settings) -> TrainConfig:
    if train is None:
        base = dict(settings.train) if settings.train else {"seed": settings.seed}
        train = TrainConfig(**base)
    if not isinstance(train, TrainConfig):
        raise SearchError(f"train must be a TrainConfig, got {type(train).__name__}")
    cfg = dataclasses.replace(train, save_weights=None)
    settings.train = cfg.to_dict()
    return cfg


# -- public entry points ----------------------------------------------------------------
def search(task: str | Task, *, budget: int = 20, branches: int = 3, policy: str = "nimmgen",
           proposer: str | Proposer = "auto", model: str | None = None, workers: int = 1,
           device: str = "auto", seed: int = 0, run_dir: str | Path | None = None,
           description: str = "", background: bool = False, executor: str | Executor = "local",
           time_limit: float | None = None, max_tokens: int | None = None,
           max_cost: float | None = None, train: TrainConfig | None = None,
           task_options: dict | None = None, on_event: Callable[[Event], None] | None = None,
           proposer_options: dict | None = None, policy_options: dict | None = None,
           eval_timeout: float = 600.0, debug_depth: int = 2, patience: int = 3,
           executor_options: dict | None = None) -> Search:
    """Search for a neural-integrated mechanistic model of ``task``.

    ``task`` is a registered task name (built with ``task_options``) or a :class:`Task`.
    ``executor`` is ``"local"`` (sandboxed processes on this machine), ``"ray"`` (a Ray
    cluster; ``executor_options`` such as ``ray_address``, ``num_cpus``, ``num_gpus``,
    ``retries``), ``"auto"`` (Ray when ``RAY_ADDRESS`` is set) or an :class:`Executor`.
    ``budget`` caps evaluated nodes; ``time_limit`` (s), ``max_tokens`` and ``max_cost`` (USD)
    cap the rest. ``description`` reaches the proposer as user notes (a fenced ``class Model``
    block in it becomes seed code). The run is journaled in ``run_dir`` (default
    ``./runs/<task>-<time>-<id>``) and can be continued with :func:`resume`. With
    ``background=True`` the search runs in a daemon thread and this returns at once.
    """
    the_task, source = _resolve_task(task, dict(task_options or {}))
    settings = Settings(
        task_name=the_task.name,
        # registry tasks are rebuilt from the options the caller gave (the factory's own
        # record, task.options, may hold arguments it sets itself, e.g. the variant)
        task_options=(dict(task_options or {}) if source == "registry"
                      else dict(the_task.options or {})),
        task_source=source, budget=int(budget), branches=int(branches), policy=policy,
        policy_options=dict(policy_options or {}), proposer="auto",
        executor_options=dict(executor_options or {}),
        proposer_options=dict(proposer_options or {}), model=model, workers=int(workers),
        device=device, seed=int(seed), description=description or "", time_limit=time_limit,
        max_tokens=max_tokens, max_cost=max_cost, eval_timeout=float(eval_timeout),
        debug_depth=int(debug_depth), patience=int(patience),
    )
    try:
        settings.validate()
        make_policy(settings.policy, branches=settings.branches,
                    **settings.policy_options)  # fail fast on a bad policy name/option
    except ValueError as exc:
        raise SearchError(str(exc)) from None
    cfg = _train_config(train, settings)
    the_proposer = _proposer(proposer, settings)
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
        the_executor, own = _executor(executor, settings)
        run_id = rd.name
        journal = Journal.for_run(rd)
        journal.init_search(run_id, the_task.name, settings.task_options, settings.to_dict())
        s = _build(task=the_task, settings=settings, run_dir=rd, run_id=run_id, journal=journal,
                   tree=Tree(), proposer=the_proposer, executor=the_executor, own_executor=own,
                   train=cfg, on_event=on_event, elapsed_before=0.0, lock=lock)
    except BaseException:
        _abandon(lock, journal, the_executor, own)
        raise
    return s._start(background)


_RESUME_SETTINGS = ("budget", "workers", "device", "time_limit", "max_tokens", "max_cost",
                    "model", "description", "eval_timeout", "patience", "debug_depth",
                    "branches", "executor_options")


def resume(run_dir: str | Path, **overrides: Any) -> Search:
    """Continue the search journaled in ``run_dir``.

    Completed nodes are kept (not re-run, their budget not re-spent); nodes that were
    pending or running are evaluated again. ``overrides`` may change ``budget``, ``workers``,
    ``device``, ``time_limit``, ``max_tokens``, ``max_cost``, ``model``, ``description``,
    ``executor_options`` and give ``proposer``/``executor`` (names or instances; by default the
    run's own kind), ``train``, ``background``, ``on_event``. Budgets count the whole run,
    earlier sessions included.
    """
    rd = Path(run_dir)
    if not (rd / JOURNAL_NAME).exists():
        raise SearchError(f"no search journal in {rd} (expected {rd / JOURNAL_NAME})")
    background = bool(overrides.pop("background", False))
    on_event = overrides.pop("on_event", None)
    proposer = overrides.pop("proposer", None)
    executor = overrides.pop("executor", None)
    train = overrides.pop("train", None)
    unknown = set(overrides) - set(_RESUME_SETTINGS)
    if unknown:
        raise SearchError(f"resume() cannot change {sorted(unknown)}; allowed: "
                          f"{', '.join(_RESUME_SETTINGS)}, proposer, executor, train, "
                          "background, on_event")
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
        for k, v in overrides.items():
            setattr(settings, k, v)
        try:
            settings.validate()
        except ValueError as exc:
            raise SearchError(str(exc)) from None
        task = RunDir(rd).load_task(settings.task_name, settings.task_options,
                                    settings.task_source)
        if proposer is None:
            if settings.proposer not in ("offline", "anthropic", "replay", "auto"):
                raise SearchError(f"run {rd} used proposer {settings.proposer!r}, which cannot "
                                  "be rebuilt by name; pass proposer=... to resume()")
            proposer = settings.proposer
        the_proposer = _proposer(proposer, settings)
        cfg = _train_config(train, settings)  # before the executor: a bad train leaks nothing
        if executor is None:  # the run's own kind of executor (an instance cannot be stored)
            executor = settings.executor if settings.executor in ("local", "ray") else "local"
        the_executor, own = _executor(executor, settings)
        tree = journal.load_tree()
        restore = getattr(the_proposer, "restore", None)
        if callable(restore):
            restore([n.view(tree.branches[n.branch].strategy) for n in tree.snapshot()])
        s = _build(task=task, settings=settings, run_dir=rd, run_id=row["run_id"],
                   journal=journal, tree=tree, proposer=the_proposer, executor=the_executor,
                   own_executor=own, train=cfg, on_event=on_event,
                   elapsed_before=float(journal.get_meta("elapsed", 0.0) or 0.0), lock=lock)
    except BaseException:
        _abandon(lock, journal, the_executor, own)
        raise
    return s._start(background)
