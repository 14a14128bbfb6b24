"""From neural closure to law: fit a trained network's sampled input-output table with a
sparse closed-form expression (:mod:`.sparse`), show it as an equation (:mod:`.formula`)
and write the child candidate that uses it in place of the network (:mod:`.rewrite`).

Pure driver-side numerics and text: the table comes from a jailed probe job
(:mod:`nimm_jupyter.modeling.network_probe`); nothing here runs candidate code.
"""
from __future__ import annotations

from .formula import formula_latex, formula_text, refitted
from .rewrite import distilled_source
from .sparse import Law, fit_law, library_terms, laws_from_meta, laws_to_meta

__all__ = ["Law", "fit_law", "library_terms", "formula_text", "formula_latex", "refitted",
           "distilled_source", "laws_from_meta", "laws_to_meta"]
