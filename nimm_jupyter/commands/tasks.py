"""``nimm tasks [NAME] [--option K=V] [--json]``: the registered tasks, or one task in full.

Without NAME every registered task is built with its default options (nothing is cached on
disk) and listed with its kind, source and split sizes; a task that fails to build (missing
data, a module not installed) is listed with an ``error`` instead of stopping the listing.
With NAME one task is built (with the ``--option`` values) and shown in full: the text a
proposer is given, the prior's code, variables with units, split sizes, source label and
provenance. With ``--json`` stdout holds exactly one JSON document (a list, or one object);
anything a factory prints or warns goes to stderr.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..cli import CLIError
from ..tasks.catalog import describe_tasks, factory_output_to_stderr, task_table
from . import parse_options


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "tasks", help="list the registered tasks, or show one in full",
        description="List every registered task: name, kind, source, split sizes, description; "
                    "with NAME, show that task in full.")
    p.add_argument("name", nargs="?", metavar="NAME", help="show this task in full")
    p.add_argument("--option", metavar="KEY=VALUE", action="append", default=[],
                   help="task option for NAME, e.g. policy=window15 (repeatable)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON document on stdout (a list, or the task NAME)")
    return p


def _variables(variables: list[Any]) -> list[dict[str, str]]:
    return [{"name": v.name, "unit": v.unit, "description": v.description} for v in variables]


def describe_task(name: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything about task ``name`` built with ``options``, as JSON-ready values.

    ``prompt`` is the task block exactly as the Claude proposer sends it (description, user
    notes, variables, prior code, what the prior leaves out, candidate interface); the test
    split's size is given, never its data.
    """
    from nimm_jupyter import tasks
    from nimm_jupyter.proposers import prompts
    from nimm_jupyter.proposers.context import context_for

    with factory_output_to_stderr(name):
        task = tasks.get(name, **(options or {}))
    ctx = context_for(task)
    out: dict[str, Any] = {
        "name": task.name, "kind": task.kind.value, "source": task.source.value,
        "splits": task.sizes(), "description": task.description,
        "inputs": _variables(task.inputs), "targets": _variables(task.targets),
        "prior_code": task.prior_code, "prior_omits": task.prior_omits,
        "provenance": task.provenance, "family": task.family, "options": task.options,
        "constants": {k: list(map(int, v.shape)) for k, v in task.constants.items()},
        "prompt": prompts.system_blocks(ctx)[-1]["text"],
    }
    if task.kind.value == "trajectory":
        out["context"] = int(task.context)
        out["time_points"] = int(task.train.targets.shape[1])
    return out


def _json_value(obj: Any) -> Any:
    """numpy scalars and arrays in task options become plain JSON values."""
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)


def _text(info: dict[str, Any]) -> str:
    def named(variables: list[dict[str, str]]) -> str:
        return ", ".join(f"{v['name']} [{v['unit']}]" if v["unit"] else v["name"]
                         for v in variables) or "(none)"

    s = info["splits"]
    return "\n".join([
        f"{info['name']} ({info['kind']}, {info['source']}); "
        f"train/val/test {s['train']}/{s['val']}/{s['test']}",
        f"inputs: {named(info['inputs'])}", f"targets: {named(info['targets'])}",
        f"options: {json.dumps(info['options'], default=_json_value)}", "",
        info["description"], "", f"What the prior leaves out: {info['prior_omits']}", "",
        "Prior code:", info["prior_code"].rstrip(), "", f"Provenance: {info['provenance']}",
    ])


def _one(args: argparse.Namespace) -> int:
    from nimm_jupyter import tasks

    if args.name not in tasks.list_tasks():
        raise CLIError(f"unknown task {args.name!r}; available: {', '.join(tasks.list_tasks())}")
    try:
        info = describe_task(args.name, parse_options(args.option))
    except (TypeError, ValueError) as exc:  # a bad option value or an unknown option
        raise CLIError(f"{args.name}: {exc}") from None
    if args.json:
        sys.stdout.write(json.dumps(info, default=_json_value) + "\n")
    else:
        print(_text(info))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.name is not None:
        return _one(args)
    if args.option:
        raise CLIError("--option needs a task NAME")
    rows = describe_tasks()
    if args.json:
        sys.stdout.write(json.dumps(rows) + "\n")
    else:
        print(task_table(rows))
    return 0
