"""``nimm``: headless command line. Each subcommand lives in ``nimm_jupyter/commands/``.

A command module defines ``add_parser(subparsers)`` and ``run(args) -> int``. With
``--json`` a command prints exactly one JSON document on stdout and nothing else.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ["tasks", "eval", "search", "resume", "show", "bench"]


class CLIError(Exception):
    """A user error: printed as one line on stderr, exit status 2."""


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, object]]:
    parser = argparse.ArgumentParser(prog="nimm", description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"nimm_jupyter.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"nimm_jupyter.commands.{name}":
                continue  # command not built yet
            raise
        mod.add_parser(sub)
        modules[name] = mod
    for command in sub.choices.values():
        command.allow_abbrev = False  # `--time` must never be read as `--timeout`
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(modules[args.command].run(args) or 0)
    except CLIError as exc:
        print(f"nimm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nimm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # run the package module, so CLIError is the class the commands raise
    from nimm_jupyter.cli import main as _main

    sys.exit(_main())
