"""The ``distill`` child's source: its parent, with each network swapped for its law.

The rewrite is generic rather than grammar-specific: the child is the parent's source text
unchanged, followed by a subclass ``Model(_NeuralModel)`` whose ``__init__`` builds the
parent and then replaces each sampled ``blocks.mlp`` module, by its attribute path, with a
:class:`~nimm_jupyter.blocks.SparseLaw` of the same call signature (coefficients as
``Real`` parameters starting at the sparse fit's values). This works for any candidate,
an LLM's as well as the offline grammars', without parsing where the network is called or
what it is fed; the diff against the parent is exactly the law, and the class docstring
carries the equation into exported cells.
"""
from __future__ import annotations

import textwrap

from .formula import formula_text
from .sparse import Law

__all__ = ["distilled_source"]


def _law_literal(law: Law) -> str:
    outs = ", ".join("{" + ", ".join(f"{t!r}: {c!r}" for t, c in out.items()) + "}"
                     for out in law.laws)
    return f"_SparseLaw({law.n_in}, [{outs}])"


def distilled_source(parent_source: str, laws: dict[str, Law], parent_id: int | None = None) -> str:
    """``parent_source`` with every network named in ``laws`` (module path -> law)
    replaced by its law; the equations (over each network's inputs ``x0, x1, ...`` in the
    order it is called with) go into the new ``Model``'s docstring."""
    if not laws:
        raise ValueError("nothing to distill: no network laws given")
    where = f"node {parent_id}" if parent_id is not None else "the neural parent"
    equations = textwrap.indent(formula_text(laws), "        ")
    entries = "\n".join(f"            {path!r}: {_law_literal(law)}," for path, law in laws.items())
    return (parent_source.rstrip() + "\n\n\n"
            "# -- distilled: the network(s) above replaced by closed-form laws -------------\n"
            "from nimm_jupyter.blocks import SparseLaw as _SparseLaw, replace_networks as _replace_networks\n"
            "\n"
            "_NeuralModel = Model\n"
            "\n"
            "\n"
            "class Model(_NeuralModel):\n"
            f'    """{where} with its network(s) distilled into laws (x0, x1, ...: each\n'
            "    network's inputs, in the order it is called with):\n"
            "\n"
            f"{equations}\n"
            "\n"
            "    The coefficients are fitted parameters, starting at the sparse fit's values.\n"
            '    """\n'
            "\n"
            "    def __init__(self, spec):\n"
            "        super().__init__(spec)\n"
            "        _replace_networks(self, {\n"
            f"{entries}\n"
            "        })\n")
