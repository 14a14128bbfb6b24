"""The ``prior``, ``neural`` and ``hybrid`` references of every task, trained per seed like
search candidates (isolated) and cached in ``references.csv``."""
from __future__ import annotations

import json
import uuid
from typing import Any, Callable

from ..execution.base import EvalRequest
from ..modeling.references import REFERENCES, reference_code
from ..modeling.result import EvalResult
from .config import REFERENCES_CSV, BenchConfig, BenchError, Log, log_stderr
from .files import _fmt, _read_csv, _write_csv

_REF_FIELDS = ("task", "reference", "seed", "status", "val_rmse", "test_rmse", "val_rmse_norm",
               "test_rmse_norm", "val_rmse_one_step", "test_rmse_one_step", "epochs",
               "wall_time", "n_parameters", "message", "config")


def _config_key(config: BenchConfig, task: str) -> str:
    """What a cached reference depends on besides task, reference and seed."""
    return json.dumps({"options": config.options_for(task), "max_epochs": config.max_epochs},
                      sort_keys=True, default=str)


def _build_tasks(config: BenchConfig) -> dict[str, Any]:
    from .. import tasks as registry

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
                   log: Log = log_stderr) -> int:
    """Train every missing (task, reference, seed) and cache it in ``references.csv``.

    Rows made with other task options or epochs are redone. Returns how many were trained.
    """
    from ..execution.local import LocalExecutor

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
            "val_rmse_one_step": r.val.rmse_one_step if r else None,  # trajectory tasks
            "test_rmse_one_step": r.test.rmse_one_step if r else None,
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
