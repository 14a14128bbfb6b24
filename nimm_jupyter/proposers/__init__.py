"""Proposers layer: who writes candidate code (Claude, the offline grammar, a replay file).

Build one with :func:`make_proposer` (specs: see :func:`parse_spec`); the interface every
proposer implements is :class:`~.base.Proposer`.
"""
from .registry import PROPOSER_NAMES, make_proposer, parse_spec, resolve_name

__all__ = ["PROPOSER_NAMES", "make_proposer", "parse_spec", "resolve_name"]
