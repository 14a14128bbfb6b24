"""Subcommands of the ``nimm`` CLI (see ``nimm_jupyter.cli``)."""
from __future__ import annotations

from ..cli import CLIError


def parse_options(pairs: list[str]) -> dict:
    """Task options from ``--option KEY=VALUE`` (see :func:`nimm_jupyter.tasks.parse_options`)."""
    from ..tasks import parse_options as parse

    try:
        return parse(pairs)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
