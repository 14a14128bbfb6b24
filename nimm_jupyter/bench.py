"""The search benchmark behind ``nimm bench``: a resumable grid of searches and references.

For every (task, policy, seed) a normal search runs into ``OUT/runs/<task>/<policy>/seed<k>/``
(its own journal, so ``nimm show``/``open_run`` work on it). A finished run is not repeated;
an interrupted one (stopped, crashed, errored, or short of a raised budget) is resumed from its
journal. The ``prior``, ``neural`` and ``hybrid`` references of every task are trained per
seed with the same :class:`TrainConfig`, isolated like search candidates, and cached in
``OUT/references.csv``. :func:`aggregate` then writes ``results.csv`` (one row per run),
``results.md`` (per-task tables next to the NIMM paper's NIMMGen numbers, and a stability
summary) and two plots per task.

Nothing here imports IPython; plots use matplotlib's Agg canvas without touching pyplot.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import sys
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from .modeling.result import EvalResult, Status  # noqa: F401  (before execution: import order)
from .execution.base import EvalRequest, TrainConfig
from .modeling.references import REFERENCES, reference_code
from .search.journal import JOURNAL_NAME
from .search.node import PROPOSAL_ERROR, Node
from .tasks import accepts_option

__all__ = [
    "POLICIES", "PAPER_NIMMGEN", "PaperRow", "BenchConfig", "BenchReport", "BenchError",
    "paper_row", "run_benchmark", "run_references", "plan_grid", "run_grid", "aggregate",
    "run_dir_for", "run_state", "best_so_far", "results_markdown",
]

POLICIES = ("nimmgen", "greedy", "evolution", "sampling")
RESULTS_CSV, RESULTS_MD, REFERENCES_CSV = "results.csv", "results.md", "references.csv"
STATUS_COLUMNS = tuple(s.value for s in Status) + (PROPOSAL_ERROR, "pending", "running")
Log = Callable[[str], None]


class BenchError(ValueError):
    """A benchmark could not be set up or continued (the message says what is wrong)."""


# -- the paper's numbers -------------------------------------------------------------------
@dataclass(frozen=True)
class PaperRow:
    """One NIMMGen result reported in the NIMM paper (arXiv 2602.18008)."""

    label: str
    test_rmse: float
    unit: str = ""


PAPER_NIMMGEN: dict[str, PaperRow] = {
    "covid_bogota": PaperRow("COVID-Bogota", 333.9),
    "covid_medellin": PaperRow("COVID-Medellin", 524.3),
    "influenza_usa": PaperRow("Influenza-USA", 4.81),
    "mrsa_virginia": PaperRow("MRSA-Virginia", 39.83),
    "lung_cancer": PaperRow("Lung cancer", 1.41),
    "lung_cancer_chemo": PaperRow("Lung cancer w/ chemo", 0.08),
    "lung_cancer_chemo_radio": PaperRow("Lung cancer w/ chemo & radio", 0.06),
    "hea_fcc_rt": PaperRow("FCC HEA room-temperature yield strength", 139.2, "MPa"),
    "hea_bcc_temp": PaperRow("BCC HEA temperature-dependent yield strength", 180.1, "MPa"),
}


def paper_row(task_name: str) -> tuple[PaperRow | None, bool]:
    """The paper row our task corresponds to, and whether the numbers are comparable.

    A ``*_synthetic`` task is our invented stand-in for a paper dataset we do not have: it is
    mapped to that paper row but never comparable.
    """
    if task_name in PAPER_NIMMGEN:
        return PAPER_NIMMGEN[task_name], True
    if task_name.endswith("_synthetic"):
        row = PAPER_NIMMGEN.get(task_name[: -len("_synthetic")])
        if row is not None:
            return row, False
    return None, False


# -- configuration ---------------------------------------------------------------------------
@dataclass
class BenchConfig:
    """One benchmark grid. ``seeds`` is a count: seeds ``0 .. seeds-1``.

    ``workers`` evaluations run at once, as that many searches side by side (each search
    evaluates one node at a time, so a policy's decisions and a seed's result do not depend
    on ``workers``). ``options`` go to every task whose factory takes them; ``task_options``
    (task -> options) to one task and win over ``options``.
    """

    tasks: list[str]
    out: Path
    policies: list[str] = field(default_factory=lambda: list(POLICIES))
    seeds: int = 3
    budget: int = 8
    proposer: str = "offline"
    workers: int = 1
    max_epochs: int | None = None
    branches: int = 3
    device: str = "auto"
    options: dict[str, Any] = field(default_factory=dict)
    task_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    eval_timeout: float = 600.0
    references: tuple[str, ...] = REFERENCES

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.tasks = list(self.tasks)
        self.policies = list(self.policies)

    def validate(self) -> None:
        """Raise :class:`BenchError` naming the first bad setting."""
        from . import tasks as registry

        if not self.tasks:
            raise BenchError("no tasks given")
        known = registry.list_tasks()
        for t in self.tasks:
            if t not in known:
                raise BenchError(f"unknown task {t!r}; available: {', '.join(known)}")
        if not self.policies:
            raise BenchError("no policies given")
        for p in self.policies:
            if p not in POLICIES:
                raise BenchError(f"unknown policy {p!r}; choose from {', '.join(POLICIES)}")
        for name, values in (("tasks", self.tasks), ("policies", self.policies)):
            if len(set(values)) != len(values):
                raise BenchError(f"{name} are listed more than once: {', '.join(values)}")
        for ref in self.references:
            if ref not in REFERENCES:
                raise BenchError(f"unknown reference {ref!r}; choose from {', '.join(REFERENCES)}")
        checks = (("seeds", self.seeds, 1), ("budget", self.budget, 1),
                  ("workers", self.workers, 1), ("branches", self.branches, 1))
        for name, value, low in checks:
            if not isinstance(value, int) or value < low:
                raise BenchError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.max_epochs is not None and self.max_epochs < 1:
            raise BenchError(f"max_epochs must be >= 1, got {self.max_epochs}")
        if self.eval_timeout <= 0:
            raise BenchError(f"eval_timeout must be > 0, got {self.eval_timeout}")
        for t in self.task_options:
            if t not in self.tasks:
                raise BenchError(f"task option given for {t!r}, which is not among the "
                                 f"benchmark's tasks ({', '.join(self.tasks)})")
        for key in self.options:
            if not any(accepts_option(t, key) for t in self.tasks):
                raise BenchError(f"option {key!r} is accepted by none of the tasks "
                                 f"({', '.join(self.tasks)})")

    def options_for(self, task: str) -> dict[str, Any]:
        """The task options one task is built with."""
        opts = {k: v for k, v in self.options.items() if accepts_option(task, k)}
        opts.update(self.task_options.get(task, {}))
        return opts

    def train_config(self, seed: int) -> TrainConfig:
        """The training settings of every candidate and reference of ``seed``."""
        if self.max_epochs is not None:
            return TrainConfig(seed=seed, max_epochs=self.max_epochs)
        return TrainConfig(seed=seed)

    def seed_list(self) -> list[int]:
        return list(range(self.seeds))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["out"] = str(self.out)
        d["references"] = list(self.references)
        return d


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_dir_for(out: str | Path, task: str, policy: str, seed: int) -> Path:
    """Where the search of one grid cell lives."""
    return Path(out) / "runs" / task / policy / f"seed{seed}"


# -- references ----------------------------------------------------------------------------
_REF_FIELDS = ("task", "reference", "seed", "status", "val_rmse", "test_rmse", "val_rmse_norm",
               "test_rmse_norm", "epochs", "wall_time", "n_parameters", "message", "config")


def _config_key(config: BenchConfig, task: str) -> str:
    """What a cached reference depends on besides task, reference and seed."""
    return json.dumps({"options": config.options_for(task), "max_epochs": config.max_epochs},
                      sort_keys=True, default=str)


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _write_csv(path: Path, fields: Iterable[str], rows: list[dict[str, Any]]) -> None:
    """Write atomically, so an interrupted benchmark never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_value(v) for k, v in r.items()})
    os.replace(tmp, path)


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return "" if not math.isfinite(v) else repr(v)
    return "" if v is None else v


def _build_tasks(config: BenchConfig) -> dict[str, Any]:
    from . import tasks as registry

    built = {}
    for name in config.tasks:
        opts = config.options_for(name)
        try:
            built[name] = registry.get(name, **opts)
        except TypeError as exc:
            raise BenchError(f"bad option for task {name!r} ({opts}): {exc}") from None
        except (ValueError, FileNotFoundError, OSError) as exc:
            raise BenchError(f"cannot build task {name!r}: {exc}") from None
    return built


def run_references(config: BenchConfig, built: dict[str, Any] | None = None,
                   log: Log = _stderr) -> int:
    """Train every missing (task, reference, seed) and cache it in ``references.csv``.

    Rows made with other task options or epochs are redone. Returns how many were trained.
    """
    from .execution.local import LocalExecutor

    path = config.out / REFERENCES_CSV
    cached = {(r["task"], r["reference"], r["seed"]): r for r in _read_csv(path)}
    built = built if built is not None else _build_tasks(config)
    todo: list[tuple[str, str, int]] = []
    for task in config.tasks:
        key = _config_key(config, task)
        for which in config.references:
            for seed in config.seed_list():
                row = cached.get((task, which, str(seed)))
                if row is None or row.get("config") != key:
                    todo.append((task, which, seed))
    if not todo:
        return 0
    rows = dict(cached)

    def record(task: str, which: str, seed: int, result: EvalResult | None, message: str = "",
               status: str | None = None) -> None:
        r = result
        rows[(task, which, str(seed))] = {
            "task": task, "reference": which, "seed": seed,
            "status": status or (r.status.value if r else "missing"),
            "val_rmse": r.val.rmse if r else None, "test_rmse": r.test.rmse if r else None,
            "val_rmse_norm": r.val.rmse_norm if r else None,
            "test_rmse_norm": r.test.rmse_norm if r else None,
            "epochs": r.epochs if r else None, "wall_time": r.wall_time if r else None,
            "n_parameters": r.n_parameters if r else None,
            "message": (message or (r.message if r else ""))[:300].replace("\n", " "),
            "config": _config_key(config, task),
        }
        _write_csv(path, _REF_FIELDS, sorted(rows.values(), key=_ref_order(config)))

    log(f"references: {len(todo)} to train")
    jobs: dict[str, tuple[str, str, int]] = {}
    with LocalExecutor(workers=config.workers, device=config.device) as ex:
        for task, which, seed in todo:
            try:
                source = reference_code(built[task], which)
            except ValueError as exc:  # e.g. a task without a hand-written hybrid
                record(task, which, seed, None, str(exc), status="unavailable")
                continue
            job = f"ref-{task}-{which}-{seed}-{uuid.uuid4().hex[:6]}"
            jobs[job] = (task, which, seed)
            ex.submit(EvalRequest(job_id=job, source=source, task=built[task],
                                  config=config.train_config(seed), timeout=config.eval_timeout))
        while jobs:
            for ev in ex.poll(0.5):
                if ev.kind != "done" or ev.job_id not in jobs:
                    continue
                task, which, seed = jobs.pop(ev.job_id)
                record(task, which, seed, ev.result)
                r = ev.result
                if r is not None:
                    log(f"  reference {task} {which} seed{seed}: {r.status.value}, test RMSE "
                        f"{_fmt(r.test.rmse)} ({_fmt(r.wall_time)} s)")
    return len(todo)


def _ref_order(config: BenchConfig) -> Callable[[dict[str, Any]], tuple]:
    def key(r: dict[str, Any]) -> tuple:
        t = config.tasks.index(r["task"]) if r["task"] in config.tasks else len(config.tasks)
        ref = REFERENCES.index(r["reference"]) if r["reference"] in REFERENCES else 99
        return (t, str(r["task"]), ref, int(r["seed"]))
    return key


# -- the search grid -----------------------------------------------------------------------
def run_state(run_dir: str | Path, budget: int) -> str:
    """``new`` (no journal), ``done`` (completed, budget reached or nothing left to try) or
    ``resume`` (stopped, crashed, errored, or completed below a since-raised budget)."""
    from .search.api import open_run

    rd = Path(run_dir)
    if not (rd / JOURNAL_NAME).exists():
        return "new"
    r = open_run(rd)
    if r.status != "completed":
        return "resume"
    completed = sum(n.completed for n in r.nodes)
    if r.stop_reason == "budget" and completed < budget:
        return "resume"
    return "done"


def _check_same_run(run_dir: Path, config: BenchConfig, task: str, policy: str,
                    seed: int) -> None:
    """An existing run must have been made with this grid's settings, or results would mix."""
    from .proposers.registry import resolve_name
    from .search.api import open_run

    s = open_run(run_dir).settings
    want = {"policy": policy, "seed": seed,
            "proposer": resolve_name(config.proposer), "branches": config.branches,
            "task_options": config.options_for(task),
            "max_epochs": config.train_config(seed).max_epochs}
    have = dict(s, max_epochs=(s.get("train") or {}).get("max_epochs"))
    for k, v in want.items():
        if have.get(k) != v:
            raise BenchError(f"{run_dir} holds a run with {k}={have.get(k)!r}, but this "
                             f"benchmark asks for {k}={v!r}; use another --out directory")


@dataclass
class _Cell:
    task: str
    policy: str
    seed: int
    run_dir: Path
    mode: str  # new | resume


def plan_grid(config: BenchConfig) -> tuple[list[_Cell], list[str]]:
    """The cells still to run (new or to resume) and the labels of finished ones.

    Raises :class:`BenchError` when an existing run was made with other settings.
    """
    todo: list[_Cell] = []
    done: list[str] = []
    for task in config.tasks:
        for policy in config.policies:
            for seed in config.seed_list():
                rd = run_dir_for(config.out, task, policy, seed)
                state = run_state(rd, config.budget)
                if state != "new":
                    _check_same_run(rd, config, task, policy, seed)
                if state == "done":
                    done.append(f"{task}/{policy}/seed{seed}")
                else:
                    todo.append(_Cell(task, policy, seed, rd, state))
    return todo, done


def run_grid(config: BenchConfig, log: Log = _stderr) -> dict[str, list[str]]:
    """Run or resume every grid cell that is not done; returns cell labels by outcome
    (``ran``, ``resumed``, ``skipped``, ``errors``)."""
    from .execution.local import LocalExecutor
    from .search.api import resume, search

    todo, skipped = plan_grid(config)
    outcome: dict[str, list[str]] = {"ran": [], "resumed": [], "skipped": skipped, "errors": []}
    if skipped:
        log(f"runs: {len(skipped)} already finished (kept)")
    if not todo:
        return outcome
    log(f"runs: {len(todo)} to run ({sum(c.mode == 'resume' for c in todo)} resumed)")
    # One executor per lane, reused by the lane's successive searches: a fork server per
    # search would cost a torch import each time. Lanes never share an executor, since a
    # search takes every event its executor reports.
    lanes = [LocalExecutor(workers=1, device=config.device) for _ in range(config.workers)]
    active: dict[int, tuple[_Cell, Any, float]] = {}
    total, started = len(todo), 0
    try:
        while todo or active:
            for lane in range(len(lanes)):
                if lane in active or not todo:
                    continue
                cell = todo.pop(0)
                started += 1
                label = f"{cell.task}/{cell.policy}/seed{cell.seed}"
                try:
                    if cell.mode == "new":
                        s = search(cell.task, budget=config.budget, branches=config.branches,
                                   policy=cell.policy, proposer=config.proposer, workers=1,
                                   device=config.device, seed=cell.seed, run_dir=cell.run_dir,
                                   background=True, executor=lanes[lane],
                                   train=config.train_config(cell.seed),
                                   task_options=config.options_for(cell.task) or None,
                                   eval_timeout=config.eval_timeout)
                    else:
                        s = resume(cell.run_dir, budget=config.budget, background=True,
                                   executor=lanes[lane])
                except Exception as exc:  # one broken cell must not stop the grid
                    outcome["errors"].append(label)
                    log(f"[{started}/{total}] {label}: could not start: {exc}")
                    continue
                log(f"[{started}/{total}] {label}"
                    + (" (resumed)" if cell.mode == "resume" else ""))
                active[lane] = (cell, s, time.time())
            for lane, (cell, s, t0) in list(active.items()):
                if not s.done:
                    continue
                del active[lane]
                label = f"{cell.task}/{cell.policy}/seed{cell.seed}"
                try:
                    r = s.wait()
                except Exception as exc:
                    outcome["errors"].append(label)
                    log(f"  {label}: search failed: {type(exc).__name__}: {exc}")
                    continue
                outcome["ran" if cell.mode == "new" else "resumed"].append(label)
                best = r.best
                found = (f"best node {best.id}: val {_fmt(best.rmse('val'))}, test "
                         f"{_fmt(best.rmse('test'))}" if best else "no valid model")
                log(f"  {label}: {r.stop_reason}, {len(r.nodes)} nodes, {found} "
                    f"({time.time() - t0:.0f} s)")
            if active:
                time.sleep(0.2)
    except BaseException:
        for _, s, _ in active.values():  # leave every journal resumable
            try:
                s.stop(timeout=10.0)
            except Exception:
                pass
        raise
    finally:
        for ex in lanes:
            ex.shutdown()
    return outcome


# -- aggregation ---------------------------------------------------------------------------
RUN_FIELDS = (("task", "policy", "seed", "status", "stop_reason", "best_node", "best_val_rmse",
               "best_test_rmse", "best_val_rmse_norm", "best_test_rmse_norm", "n_nodes",
               "n_completed", "n_failed") + tuple(f"n_{s}" for s in STATUS_COLUMNS)
              + ("wall_time", "tokens", "cost", "run_dir"))


def _run_row(config: BenchConfig, task: str, policy: str,
             seed: int) -> tuple[dict[str, Any], list[float]]:
    """The results.csv row of one run and its best-so-far validation RMSE per evaluation."""
    from .search.api import SearchError, open_run

    rd = run_dir_for(config.out, task, policy, seed)
    row: dict[str, Any] = {"task": task, "policy": policy, "seed": seed, "run_dir": str(rd)}
    try:
        r = open_run(rd)
    except SearchError:
        row.update(status="missing", n_nodes=0, n_completed=0, n_failed=0, n_ok=0)
        return row, []
    best = r.best
    completed = [n for n in r.nodes if n.completed]
    row.update(
        status=r.status, stop_reason=r.stop_reason, best_node=best.id if best else None,
        best_val_rmse=best.rmse("val") if best else None,
        best_test_rmse=best.rmse("test") if best else None,
        best_val_rmse_norm=best.result.val.rmse_norm if best and best.result else None,
        best_test_rmse_norm=best.result.test.rmse_norm if best and best.result else None,
        n_nodes=len(r.nodes), n_completed=len(completed),
        n_failed=sum(not n.ok for n in completed),
        wall_time=r.wall_time, tokens=r.tokens, cost=r.cost,
    )
    for s in STATUS_COLUMNS:
        row[f"n_{s}"] = r.counts.get(s, 0)
    return row, best_so_far(r.nodes)


def best_so_far(nodes: Iterable[Node]) -> list[float]:
    """Lowest validation RMSE (original units) after each completed evaluation, in the order
    evaluations finished; NaN until the first valid model."""
    done = sorted((n for n in nodes if n.completed),
                  key=lambda n: (n.finished if n.finished is not None else math.inf, n.id))
    out, best = [], math.inf
    for n in done:
        if n.ok and math.isfinite(n.rmse("val")):
            best = min(best, n.rmse("val"))
        out.append(best if math.isfinite(best) else math.nan)
    return out


def _num(v: Any) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return math.nan
    return x


def _stats(values: list[float]) -> dict[str, float]:
    """Mean, sample std (0 for one value) and worst case of the finite values."""
    v = np.array([x for x in values if math.isfinite(x)], dtype=float)
    if v.size == 0:
        return {"mean": math.nan, "std": math.nan, "worst": math.nan, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "worst": float(v.max()), "n": int(v.size)}


def _summarise_policy(rows: list[dict[str, Any]]) -> dict[str, Any]:
    tests = [_num(r.get("best_test_rmse")) for r in rows]
    completed = sum(int(r.get("n_completed") or 0) for r in rows)
    ok = sum(int(r.get("n_ok") or 0) for r in rows)
    walls = [_num(r.get("wall_time")) for r in rows if r.get("status") != "missing"]
    st = _stats(tests)
    return {**st, "runs": len(rows), "valid_runs": st["n"],
            "valid_run_rate": st["n"] / len(rows) if rows else math.nan,
            "valid_node_rate": ok / completed if completed else math.nan,
            "wall_time": float(np.mean(walls)) if walls else math.nan,
            "finished_runs": sum(r.get("status") == "completed" for r in rows)}


def _summarise_reference(rows: list[dict[str, str]]) -> dict[str, Any]:
    if rows and all(r["status"] == "unavailable" for r in rows):
        return {"available": False, "runs": len(rows)}
    tests = [_num(r["test_rmse"]) if r["status"] == "ok" else math.nan for r in rows]
    st = _stats(tests)
    walls = [_num(r["wall_time"]) for r in rows if math.isfinite(_num(r["wall_time"]))]
    return {**st, "available": True, "runs": len(rows), "valid_runs": st["n"],
            "valid_run_rate": st["n"] / len(rows) if rows else math.nan,
            "valid_node_rate": st["n"] / len(rows) if rows else math.nan,
            "wall_time": float(np.mean(walls)) if walls else math.nan}


def _checks(task_summary: dict[str, Any], refs: dict[str, Any]) -> dict[str, Any]:
    """The stability questions: does NIMMGen beat the prior and the neural reference on
    average, and is its spread at most half of greedy's?"""
    n = task_summary.get("nimmgen")
    g = task_summary.get("greedy")

    def beats(ref: str) -> bool | None:
        r = refs.get(ref)
        if not n or not r or not r.get("available") or not (
                math.isfinite(n["mean"]) and math.isfinite(r["mean"])):
            return None
        return bool(n["mean"] < r["mean"])

    half = None
    if n and g and n["n"] > 1 and g["n"] > 1:  # a spread needs two runs with a model
        half = bool(n["std"] <= 0.5 * g["std"])
    return {"nimmgen_beats_prior": beats("prior"), "nimmgen_beats_neural": beats("neural"),
            "nimmgen_beats_hybrid": beats("hybrid"), "nimmgen_std_le_half_greedy": half}


@dataclass
class BenchReport:
    """What a benchmark invocation did and where its outputs are."""

    out: Path
    results_csv: Path
    results_md: Path
    references_csv: Path
    plots: list[Path]
    ran: list[str]
    resumed: list[str]
    skipped: list[str]
    errors: list[str]
    references_trained: int
    summary: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return _finite({
            "out": str(self.out), "results_csv": str(self.results_csv),
            "results_md": str(self.results_md), "references_csv": str(self.references_csv),
            "plots": [str(p) for p in self.plots],
            "runs": {"ran": self.ran, "resumed": self.resumed, "skipped": self.skipped,
                     "errors": self.errors},
            "references_trained": self.references_trained, "summary": self.summary,
        })


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def aggregate(config: BenchConfig, built: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read every run journal and ``references.csv``; write ``results.csv``, ``results.md``
    and the plots. Returns the per-task summary (policies, references, checks, plots)."""
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    rows, curves = [], {}
    for task in config.tasks:
        for policy in config.policies:
            for seed in config.seed_list():
                row, curve = _run_row(config, task, policy, seed)
                rows.append(row)
                curves[(task, policy, seed)] = curve
    _write_csv(out / RESULTS_CSV, RUN_FIELDS, rows)
    refs = [r for r in _read_csv(out / REFERENCES_CSV)
            if r["task"] in config.tasks and int(r["seed"]) < config.seeds
            and r["reference"] in config.references]
    summary: dict[str, Any] = {}
    for task in config.tasks:
        pol = {p: _summarise_policy([r for r in rows if r["task"] == task and r["policy"] == p])
               for p in config.policies}
        ref = {}
        for w in config.references:
            mine = [r for r in refs if r["task"] == task and r["reference"] == w]
            if mine:
                ref[w] = _summarise_reference(mine)
        paper, comparable = paper_row(task)
        info = _task_info(task, built)
        summary[task] = {
            "policies": pol, "references": ref, "checks": _checks(pol, ref),
            "paper": None if paper is None else {"label": paper.label, "test_rmse": paper.test_rmse,
                                                   "unit": paper.unit, "comparable": comparable},
            **info,
        }
        summary[task]["plots"] = [str(p) for p in _plots(out, task, config, curves, rows, refs)]
    (out / RESULTS_MD).write_text(results_markdown(config, summary))
    return summary


def _task_info(task: str, built: dict[str, Any] | None) -> dict[str, Any]:
    t = (built or {}).get(task)
    if t is None:
        return {"source": None, "targets": []}
    return {"source": t.source.value,
            "targets": [f"{v.name} [{v.unit}]" if v.unit else v.name for v in t.targets]}


# -- markdown --------------------------------------------------------------------------------
def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return "-" if not math.isfinite(x) else f"{x:.4g}"
    return str(x)


def _pct(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{100 * x:.0f}%"


def _yes(v: bool | None) -> str:
    return "n/a" if v is None else ("yes" if v else "no")


def results_markdown(config: BenchConfig, summary: dict[str, Any]) -> str:
    """``results.md``: per task a table of references and policies beside the paper's
    NIMMGen number, then the stability summary."""
    from .proposers.registry import resolve_name

    lines = ["# NIMM benchmark results", "",
             f"Tasks: {', '.join(config.tasks)}. Policies: {', '.join(config.policies)}. "
             f"Seeds: {config.seeds} (0..{config.seeds - 1}). Budget: {config.budget} evaluated "
             f"nodes per run, {config.branches} branches. Proposer: "
             f"{resolve_name(config.proposer)}. Max epochs: "
             f"{config.max_epochs if config.max_epochs is not None else TrainConfig().max_epochs}"
             + (f". Options: {json.dumps(config.options)}" if config.options else "")
             + (f". Task options: {json.dumps(config.task_options)}" if config.task_options else "")
             + ".", "",
             "Test RMSE is in the task's original units, of the node with the best validation "
             "RMSE in each run (references: one training per seed). Mean ± sample std over the "
             "runs that produced a valid model; worst = the largest of those. Valid-node rate = "
             "ok evaluations / all evaluations; runs with a valid model = runs whose best node "
             "exists. Wall time: mean per run (s).", ""]
    for task, s in summary.items():
        lines += _task_section(task, s, config)
    lines += ["## Stability", "",
              "Spread of the final test RMSE across seeds, per task and policy.", "",
              "| task | policy | runs with a model | mean | std | worst |",
              "| --- | --- | --- | --- | --- | --- |"]
    for task, s in summary.items():
        for p, st in s["policies"].items():
            lines.append(f"| {task} | {p} | {st['valid_runs']}/{st['runs']} | {_fmt(st['mean'])} "
                         f"| {_fmt(st['std'])} | {_fmt(st['worst'])} |")
    lines += ["", "| task | NIMMGen mean | prior mean | neural mean | NIMMGen beats prior "
              "| NIMMGen beats neural | NIMMGen std | greedy std | NIMMGen std ≤ ½ greedy std |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for task, s in summary.items():
        n, g = s["policies"].get("nimmgen", {}), s["policies"].get("greedy", {})
        pr, ne = s["references"].get("prior", {}), s["references"].get("neural", {})
        c = s["checks"]
        lines.append(f"| {task} | {_fmt(n.get('mean'))} | {_fmt(pr.get('mean'))} | "
                     f"{_fmt(ne.get('mean'))} | {_yes(c['nimmgen_beats_prior'])} | "
                     f"{_yes(c['nimmgen_beats_neural'])} | {_fmt(n.get('std'))} | "
                     f"{_fmt(g.get('std'))} | {_yes(c['nimmgen_std_le_half_greedy'])} |")
    return "\n".join(lines) + "\n"


def _task_section(task: str, s: dict[str, Any], config: BenchConfig) -> list[str]:
    paper = s["paper"]
    head = f"## {task}" + (f" ({s['source']})" if s.get("source") else "")
    lines = [head, ""]
    targets = s.get("targets") or []
    if len(targets) > 6:  # e.g. one target per US state: name a few, not all
        lines.append(f"Targets: {len(targets)} ({', '.join(targets[:4])}, ...).")
    elif targets:
        lines.append(f"Targets: {', '.join(targets)}.")
    if paper is None:
        lines.append("No corresponding row in the NIMM paper.")
        paper_cell = "-"
    elif paper["comparable"]:
        unit = f" {paper['unit']}" if paper["unit"] else ""
        lines.append(f"Paper row: {paper['label']} (NIMMGen test RMSE {paper['test_rmse']}{unit}). "
                     "Units and scales may differ from ours (data version, splits, horizon, "
                     "normalisation), so compare with care.")
        paper_cell = f"{paper['test_rmse']}{unit}"
    else:
        lines.append(f"Synthetic stand-in for the paper's {paper['label']} row: our data is "
                     "invented because the real data is not available, so the numbers are "
                     "**not comparable**.")
        paper_cell = f"{paper['test_rmse']} (synthetic stand-in, not comparable)"
    lines += ["", "| model | test RMSE mean ± std | worst test RMSE | valid-node rate "
              "| runs with a valid model | wall time (s) | NIMM paper NIMMGen test RMSE |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for which, st in s["references"].items():
        if not st.get("available", True):
            lines.append(f"| {which} (reference) | n/a | n/a | n/a | n/a | - | |")
            continue
        lines.append(_table_row(f"{which} (reference)", st, ""))
    for p, st in s["policies"].items():
        lines.append(_table_row(p, st, paper_cell if p == "nimmgen" else ""))
    if "nimmgen" not in s["policies"] and paper is not None:
        lines.append(f"| NIMMGen (paper) | | | | | | {paper_cell} |")
    c = s["checks"]
    lines += ["", f"NIMMGen beats prior: {_yes(c['nimmgen_beats_prior'])}; beats neural: "
              f"{_yes(c['nimmgen_beats_neural'])}; beats hand-written hybrid: "
              f"{_yes(c['nimmgen_beats_hybrid'])}; NIMMGen std ≤ ½ greedy std: "
              f"{_yes(c['nimmgen_std_le_half_greedy'])}.", ""]
    plots = [Path(p).name for p in s.get("plots", [])]
    if plots:
        lines += ["Plots: " + ", ".join(f"[{p}]({p})" for p in plots) + ".", ""]
    return lines


def _table_row(name: str, st: dict[str, Any], paper_cell: str) -> str:
    mean = (f"{_fmt(st['mean'])} ± {_fmt(st['std'])}" if math.isfinite(st["mean"])
            else "no valid model")
    return (f"| {name} | {mean} | {_fmt(st['worst'])} | {_pct(st['valid_node_rate'])} | "
            f"{st['valid_runs']}/{st['runs']} | {_fmt(st['wall_time'])} | {paper_cell} |")


# -- plots -------------------------------------------------------------------------------------
def _figure(width: float = 6.4, height: float = 4.0) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _log_scale_if_wide(ax: Any, values: Iterable[float]) -> None:
    v = [x for x in values if math.isfinite(x) and x > 0]
    if v and max(v) / min(v) > 30:
        ax.set_yscale("log")


def _plots(out: Path, task: str, config: BenchConfig, curves: dict[tuple, list[float]],
           rows: list[dict[str, Any]], refs: list[dict[str, str]]) -> list[Path]:
    paths = [out / f"best_so_far_{task}.png", out / f"spread_{task}.png"]
    # best-so-far: mean over seeds at each evaluation; a finished seed keeps its last value
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    seen: list[float] = []
    for policy in config.policies:
        runs = [curves.get((task, policy, s), []) for s in config.seed_list()]
        length = max((len(c) for c in runs), default=0)
        if not length:
            continue
        grid = np.full((len(runs), length), np.nan)
        for i, c in enumerate(runs):
            if c:
                grid[i, :len(c)] = c
                grid[i, len(c):] = c[-1]
        with warnings.catch_warnings():  # an evaluation where no seed has a model yet
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(grid, axis=0)
        x = np.arange(1, length + 1)
        ax.plot(x, mean, marker="o", markersize=3, label=policy)
        seen += [float(v) for v in mean if math.isfinite(v)]
    _log_scale_if_wide(ax, seen)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("evaluations")
    ax.set_ylabel("best-so-far validation RMSE (mean over seeds)")
    ax.set_title(f"{task}: best-so-far validation RMSE")
    if seen:
        ax.legend()
    fig.tight_layout()
    fig.savefig(paths[0])
    # spread: final test RMSE per seed (points) and the mean (bar), references included
    fig = _figure(max(6.4, 0.9 * (len(config.policies) + len(config.references)) + 1.5))
    ax = fig.add_subplot(1, 1, 1)
    labels, values = [], []
    for which in config.references:
        v = [_num(r["test_rmse"]) for r in refs
             if r["task"] == task and r["reference"] == which and r["status"] == "ok"]
        if any(r["task"] == task and r["reference"] == which for r in refs):
            labels.append(which)
            values.append(v)
    for policy in config.policies:
        labels.append(policy)
        values.append([_num(r.get("best_test_rmse")) for r in rows
                       if r["task"] == task and r["policy"] == policy])
    allv: list[float] = []
    for i, (label, v) in enumerate(zip(labels, values)):
        v = [x for x in v if math.isfinite(x)]
        allv += v
        color = "0.55" if label in REFERENCES else f"C{i % 10}"
        if v:
            ax.scatter([i] * len(v), v, color=color, zorder=3, s=22)
            ax.hlines(float(np.mean(v)), i - 0.3, i + 0.3, color=color, linewidth=2.5)
    _log_scale_if_wide(ax, allv)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=20)
    ax.set_ylabel("final test RMSE (original units)")
    ax.set_title(f"{task}: test RMSE per seed (points) and mean (bar)")
    fig.tight_layout()
    fig.savefig(paths[1])
    return paths


# -- everything ----------------------------------------------------------------------------------
def run_benchmark(config: BenchConfig, log: Log = _stderr, *, run: bool = True) -> BenchReport:
    """Validate, train the missing references, run or resume the grid, then aggregate.

    With ``run=False`` nothing is trained: the outputs are rebuilt from what ``config.out``
    already holds. Interrupting (Ctrl-C) stops the running searches cleanly; calling this
    again continues where it stopped.
    """
    config.validate()
    if run:
        _check_proposer(config.proposer)
    config.out.mkdir(parents=True, exist_ok=True)
    built = _build_tasks(config)
    trained, outcome = 0, {"ran": [], "resumed": [], "skipped": [], "errors": []}
    if run:
        (config.out / "bench.json").write_text(json.dumps(config.to_dict(), indent=1, default=str))
        plan_grid(config)  # refuse a mismatched OUT before training anything
        trained = run_references(config, built, log)
        outcome = run_grid(config, log)
    summary = aggregate(config, built)
    plots = [Path(p) for s in summary.values() for p in s["plots"]]
    return BenchReport(out=config.out, results_csv=config.out / RESULTS_CSV,
                       results_md=config.out / RESULTS_MD,
                       references_csv=config.out / REFERENCES_CSV, plots=plots,
                       ran=outcome["ran"], resumed=outcome["resumed"],
                       skipped=outcome["skipped"], errors=outcome["errors"],
                       references_trained=trained, summary=summary)


def _check_proposer(name: str) -> None:
    """Fail once, before the grid, instead of once per run (e.g. no API key)."""
    from .proposers.registry import make_proposer

    try:
        make_proposer(name, seed=0)
    except Exception as exc:  # a proposer's constructor may raise its own error types
        raise BenchError(f"cannot use proposer {name!r}: {exc}") from None
