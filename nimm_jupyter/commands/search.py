"""``nimm search TASK``: run a search headless, with a progress bar and a summary (or JSON)."""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from ..cli import CLIError


def add_parser(sub: Any) -> None:
    from ..search.options import SEARCH_OPTIONS

    p = sub.add_parser("search", help="search for a neural-integrated mechanistic model",
                       description="Search for a neural-integrated mechanistic model of TASK "
                                   "(a registered task, or a CSV file with --csv).")
    add_data_arguments(p)
    for opt in SEARCH_OPTIONS:
        opt.add_to(p)
    p.add_argument("--describe", metavar="TEXT", default="",
                   help="notes for the proposer (what you know about the system)")
    add_seed_code_option(p)
    add_json_option(p)


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """TASK, or ``--csv FILE`` with the data options of the option table (search and eval)."""
    from ..search.options import DATA_OPTIONS

    p.add_argument("task", nargs="?", help="task name (see `nimm tasks`); omit with --csv")
    g = p.add_argument_group("data from a CSV file")
    g.add_argument("--csv", metavar="FILE", help="build the task from this CSV file")
    for opt in DATA_OPTIONS:
        opt.add_to(g)
    g.add_argument("--name", metavar="NAME", help="task name for a CSV task")


def add_seed_code_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed-code", metavar="FILE.py",
                   help="your own candidate (a Model class) to start the search from; it is "
                        "checked against the contract before anything runs")


def add_json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def overrides_from(args: argparse.Namespace, options: Any = None,
                   train_base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The search settings the command's flags set (see ``search.options``)."""
    from ..search.options import SEARCH_OPTIONS, OptionError, search_overrides

    try:
        return search_overrides(args, options or SEARCH_OPTIONS, train_base)
    except OptionError as exc:
        raise CLIError(str(exc)) from None


def csv_task(args: argparse.Namespace, prior_code: str | None = None) -> Any:
    """A Task from ``--csv`` and its data options (the same flags as ``%%nimm_search --data``)."""
    from ..search.options import OptionError, data_options

    if not args.targets:
        raise CLIError("--csv needs --targets A,B")
    if getattr(args, "option", None) or getattr(args, "n_patients", None) is not None:
        raise CLIError("--option/--n-patients apply to built-in tasks; for --csv use the data "
                       "options (--context, --horizon, --test-last, --val-last, --split-by, "
                       "--test-size, --val-size)")
    path = Path(args.csv)
    if not path.exists():
        raise CLIError(f"CSV file {path} does not exist")
    try:
        import pandas as pd
    except ImportError:
        raise CLIError("--csv needs pandas: pip install pandas") from None
    from ..tasks import task_from_dataframe as build
    try:
        kw = data_options(args)
    except OptionError as exc:
        raise CLIError(str(exc)) from None
    kw["name"] = args.name or path.stem
    if prior_code is not None:
        kw["prior_code"] = prior_code
    try:
        task = build(_dated(pd.read_csv(path), args.time), **kw)
    except (ValueError, KeyError) as exc:
        raise CLIError(f"cannot build a task from {path}: {exc}") from None
    print(f"{task.name}: {task.options.get('layout', '')}", file=sys.stderr)
    return task


def refuse_data_flags(args: argparse.Namespace) -> None:
    """Data options describe the columns of ``--csv``; with a built-in task they are errors."""
    from ..search.options import DATA_OPTIONS

    stray = [o.flag for o in DATA_OPTIONS if getattr(args, o.dest, None) is not None]
    if stray:
        raise CLIError(f"{', '.join(stray)} describe the columns of --csv FILE; built-in "
                       f"tasks take --option KEY=VALUE")


def _dated(df: Any, time: str | None) -> Any:
    """A CSV's text time column read as dates when every value is one (``2021-03-01``)."""
    import pandas as pd

    if time in df.columns and pd.api.types.is_string_dtype(df[time]):
        try:
            df[time] = pd.to_datetime(df[time], format="ISO8601")
        except (ValueError, TypeError):
            pass  # not dates: task_from_dataframe names the first non-numeric value
    return df


def seed_code(args: argparse.Namespace) -> str | None:
    """The text of ``--seed-code FILE`` (None without it)."""
    if not getattr(args, "seed_code", None):
        return None
    path = Path(args.seed_code)
    try:
        code = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CLIError(f"cannot read --seed-code {path}: {exc}") from None
    if "class Model" not in code:
        raise CLIError(f"--seed-code {path} defines no `class Model` (see docs/CANDIDATES.md)")
    return code


def with_seed(description: str, code: str | None) -> str:
    """The proposer's notes with the seed code as the fenced block the search reads."""
    if code is None:
        return description
    return f"{description}\n\n```python\n{code.rstrip()}\n```\n".lstrip("\n")


@contextlib.contextmanager
def stdout_to_stderr(active: bool) -> Iterator[None]:
    """While active, anything written to stdout (by us, libraries or child processes)
    goes to stderr, so that ``--json`` leaves exactly one JSON document on stdout."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    old, sys.stdout = sys.stdout, sys.stderr
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)
        sys.stdout = old


class Progress:
    """Search progress on stderr: a tqdm bar on a terminal, one line per finished node when
    stderr is a file or pipe (a log without bar redraws); nothing with ``--json`` then."""

    def __init__(self, total: int, done: int, quiet: bool) -> None:
        from tqdm import tqdm

        self.lines = not sys.stderr.isatty()
        self.quiet = quiet
        self.total, self.done = total, done
        self.bar = tqdm(total=total, initial=done, unit="node", file=sys.stderr,
                        dynamic_ncols=True, disable=self.lines)
        self.best: float | None = None

    def __call__(self, event: Any) -> None:
        if event.type == "node_finished":
            self.bar.update(1)
            self.done += 1
            if self.lines and not self.quiet:
                d = event.data
                val = "" if d.get("val") is None else f", val RMSE {_fmt(d['val'])}"
                best = "" if self.best is None else f"; best {self.best:.4g}"
                print(f"node {d['node']} {d.get('status') or d.get('state')}{val} "
                      f"[{self.done}/{self.total}]{best}", file=sys.stderr, flush=True)
        elif event.type == "log" and event.data.get("kind") == "notice":
            print(f"note: {event.data['message']}", file=sys.stderr, flush=True)
        elif event.type == "best_changed" and event.data.get("val") is not None:
            self.best = float(event.data["val"])
        elif event.type == "node_created" and event.data.get("change"):
            self.bar.set_description(f"node {event.data['node']} ({event.data['operator']})")
        if self.best is not None:
            self.bar.set_postfix_str(f"best val RMSE {self.best:.4g}")

    def close(self) -> None:
        self.bar.close()


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return "-" if x != x else f"{x:.4g}"
    return str(x)


def _vs_prior(node: Any, prior: Any) -> str:
    """A node's validation RMSE as a multiple of the prior's (``0.42x``: better than it)."""
    v, p = node.rmse("val"), prior.rmse("val")
    if v is None or p is None or v != v or p != p or p <= 0:
        return "-"
    return f"{v / p:.3g}x"


def _se_text(node: Any) -> str:
    """`` ± SE`` of a node's validation RMSE in original units (from the bootstrap standard
    error of its normalised score), or "" when none was computed."""
    se, score = node.score_se, node.score
    if se is None or not math.isfinite(se) or not score or not math.isfinite(score):
        return ""
    return f" ± {_fmt(node.rmse('val') * se / score)} (bootstrap SE)"


def _answer_lines(answer: Any, nodes: list[Any]) -> list[str]:
    """Why the answer is not the lowest-scoring node, when it is not."""
    from ..search.tree import lowest_score

    low = lowest_score(nodes)
    if low is None or low.id == answer.id:
        return []
    return [f"  (the simplest model within one standard error of the lowest validation score, "
            f"node {low.id}'s val RMSE {_fmt(low.rmse('val'))}: "
            f"{answer.result.n_parameters} trainable parameters against {low.result.n_parameters})"]


def summary_text(result: Any) -> str:
    """The tree summary and the best model, for people."""
    lines = [f"run {result.run_id} ({result.task_name}): {result.status}, "
             f"stop reason {result.stop_reason or '-'}; {len(result.nodes)} nodes "
             f"{dict(sorted(result.counts.items()))}; {result.tokens} tokens, "
             f"${result.cost:.4f}, {result.wall_time:.1f} s", "", "branches:"]
    for b in result.branches:
        lines.append(f"  [{b['branch']}] {b['strategy']} ({b['status']}"
                     f"{': ' + b['note'] if b.get('note') else ''}) nodes {b['nodes']}, "
                     f"best node {_fmt(b['best_node'])} val RMSE {_fmt(b['best_val_rmse'])}")
    from ..search.prior_root import prior_node

    prior = prior_node(result.nodes)
    vs = (lambda n: "") if prior is None else (lambda n: f"{_vs_prior(n, prior):>9} ")
    lines += ["", f"{'id':>4} {'parent':>6} {'br':>3} {'op':<7} {'status':<15} "
              f"{'val RMSE':>10} {'test RMSE':>10} {'' if prior is None else 'vs prior  '} change"]
    for n in result.nodes:
        lines.append(f"{n.id:>4} {_fmt(n.parent):>6} {n.branch:>3} {n.operator:<7} "
                     f"{n.status:<15} {_fmt(n.rmse('val')):>10} {_fmt(n.rmse('test')):>10} "
                     f"{vs(n)} {n.change[:70]}")
    best = result.best
    lines.append("")
    if best is None:
        lines.append("no model evaluated successfully")
    else:
        lines.append(f"best: node {best.id} (branch {best.branch}, {best.strategy or '-'}): "
                     f"{best.change}")
        lines += _answer_lines(best, result.nodes)
        lines.append(f"  val RMSE {_fmt(best.rmse('val'))}{_se_text(best)}, "
                     f"test RMSE {_fmt(best.rmse('test'))}"
                     f", train RMSE {_fmt(best.rmse('train'))}"
                     + ("" if prior is None else f"; {_vs_prior(best, prior)} the prior's "
                        f"val RMSE {_fmt(prior.rmse('val'))}"))
        scenarios = best.result.scenarios if best.result is not None else {}
        if scenarios:
            against = prior.result.scenarios if prior is not None and prior.result else {}
            lines.append("  held-out interventions (never used for selection), RMSE: " + ", ".join(
                f"{k} {_fmt(v.rmse)}" + (f" (prior {_fmt(against[k].rmse)})" if k in against else "")
                for k, v in scenarios.items()))
        params = best.result.parameters if best.result is not None else {}
        if params:
            lines.append("  fitted parameters: " + ", ".join(
                f"{k}={_fmt(float(v))}" for k, v in list(params.items())[:20]))
    lines += _law_lines(result.nodes)
    return "\n".join(lines)


def _law_lines(nodes: list[Any]) -> list[str]:
    """The neural -> law lineage: each distilled node against its neural parent."""
    by_id = {n.id: n for n in nodes}
    out = []
    for n in nodes:
        formula = (n.proposer_meta or {}).get("formula") if n.operator == "distill" else None
        if not formula:
            continue
        parent = by_id.get(n.parent)
        removed = (n.proposer_meta or {}).get("removed_network_parameters", "?")
        out.append(f"  node {n.parent} (neural, {removed} network parameters) -> node {n.id} "
                   f"(law, {n.status}): val RMSE {_fmt(parent.rmse('val') if parent else None)} "
                   f"-> {_fmt(n.rmse('val'))}")
        out += [f"      {line}" for line in str(formula.get("text", "")).splitlines()]
    return ["", "distilled laws (neural -> law; x0, x1, ...: each network's inputs):"] + out \
        if out else []


def run_search(start: Any, args: argparse.Namespace, total: int, done: int) -> int:
    """Start a search (``start(on_event) -> Search``), wait with a progress bar, report.

    Ctrl-C stops it cleanly and prints how to resume (exit 130); a search in which no
    candidate evaluated successfully exits 1.
    """
    from ..search.api import SearchError

    progress = Progress(total, done, quiet=args.json)
    interrupted = False
    with stdout_to_stderr(args.json):
        try:
            s = start(progress)
        except SearchError as exc:
            progress.close()
            raise CLIError(str(exc)) from None
        try:
            while not s.done:
                time.sleep(0.1)
        except KeyboardInterrupt:
            interrupted = True
            s.stop()
        progress.close()
        try:
            result = s.wait()
        except Exception as exc:
            raise CLIError(f"search failed: {type(exc).__name__}: {exc}") from None
        if interrupted or result.status == "stopped":
            print(f"search stopped; continue it with: nimm resume {s.run_dir}", file=sys.stderr)
    if args.json:
        d = result.to_dict()
        d.pop("nodes", None)
        print(json.dumps(d))
    else:
        print(summary_text(result))
    if interrupted:
        return 130
    return 0 if result.best is not None else 1  # no model at all is a failed search


def run(args: argparse.Namespace) -> int:
    from .. import tasks
    from ..search.api import search
    from ..search.config import SearchConfig
    from ..search.options import task_options

    from ..search.rundir import JOURNAL_NAME

    code = seed_code(args)
    if args.csv:
        if args.task:
            raise CLIError("give either a task name or --csv FILE, not both")
        task: Any = csv_task(args, code)
        options: dict[str, Any] = {}
    else:
        if not args.task:
            raise CLIError("give a task name (see `nimm tasks`) or --csv FILE")
        if args.task not in tasks.list_tasks():
            raise CLIError(f"unknown task {args.task!r}; available: {', '.join(tasks.list_tasks())}")
        task = args.task
        refuse_data_flags(args)
        try:
            options = task_options(args)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    if args.run_dir and (Path(args.run_dir) / JOURNAL_NAME).exists():
        raise CLIError(f"{args.run_dir} already holds a search; continue it with: nimm resume "
                       f"{args.run_dir} (or choose another --run-dir)")
    overrides = overrides_from(args)
    description = with_seed(args.describe, code)
    budget = overrides.get("budget", SearchConfig().budget)

    def start(on_event: Any) -> Any:
        return search(task, run_dir=args.run_dir, description=description, background=True,
                      task_options=options or None, on_event=on_event, **overrides)

    return run_search(start, args, budget, 0)
