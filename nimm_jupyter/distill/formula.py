"""A fitted law as a readable equation: plain text and LaTeX, through sympy."""
from __future__ import annotations

import re

import sympy

from .sparse import Law

__all__ = ["law_expressions", "formula_text", "formula_latex", "refitted", "SIGNIFICANT"]

SIGNIFICANT = 4  # digits of each coefficient shown (the model keeps full precision)


def _term(term: str, xs: list[sympy.Symbol]) -> sympy.Expr:
    """The sympy expression of one :data:`~nimm_jupyter.blocks.LAW_TERMS` name."""
    idx = [int(i) for i in re.findall(r"x(\d+)", term)]
    pattern = re.sub(r"x\d+", "x", term)
    a = xs[idx[0]] if idx else None
    table = {
        "1": lambda: sympy.Integer(1),
        "x": lambda: a,
        "x^2": lambda: a ** 2,
        "x*x": lambda: a * xs[idx[1]],
        "log|x|": lambda: sympy.log(sympy.Abs(a)),
        "exp(-x)": lambda: sympy.exp(-a),
        "x/(1+|x|)": lambda: a / (1 + sympy.Abs(a)),
    }
    if pattern not in table:
        raise ValueError(f"unknown law term {term!r}")
    return table[pattern]()


def law_expressions(law: Law) -> list[sympy.Expr]:
    """One expression per network output over symbols ``x0..x{n-1}`` (its inputs, in the
    order the network is called with), coefficients rounded to :data:`SIGNIFICANT` digits."""
    xs = list(sympy.symbols(f"x0:{max(law.n_in, 1)}"))
    return [sum((sympy.Float(c, SIGNIFICANT) * _term(t, xs) for t, c in out.items()),
                sympy.Integer(0)) for out in law.laws]


def _name(path: str, k: int, n_out: int) -> str:
    return path if n_out == 1 else f"{path}[{k}]"


def formula_text(laws: dict[str, Law]) -> str:
    """``net(x) = 0.1 - 0.02*x0``, one line per network output."""
    lines = []
    for path, law in laws.items():
        for k, expr in enumerate(law_expressions(law)):
            lines.append(f"{_name(path, k, len(law.laws))}(x) = {sympy.sstr(expr)}")
    return "\n".join(lines)


def formula_latex(laws: dict[str, Law]) -> str:
    """The same equations in LaTeX, joined by ``\\\\``."""
    lines = []
    for path, law in laws.items():
        for k, expr in enumerate(law_expressions(law)):
            name = _name(path, k, len(law.laws)).replace("_", r"\_")
            lines.append(rf"\mathrm{{{name}}}(x) = {sympy.latex(expr)}")
    return r" \\ ".join(lines)


def refitted(laws: dict[str, Law], parameters: dict[str, float]) -> dict[str, Law]:
    """``laws`` with the coefficients a trained distilled model reports (its
    :class:`~nimm_jupyter.blocks.SparseLaw` parameter ``<path>.c<k>_<t>`` is term ``t`` of
    output ``k``); a coefficient it does not report keeps its starting value."""
    out = {}
    for path, law in laws.items():
        outs = [{term: float(parameters.get(f"{path}.c{k}_{t}", c))
                 for t, (term, c) in enumerate(terms.items())} for k, terms in enumerate(law.laws)]
        out[path] = Law(n_in=law.n_in, laws=outs, errors=list(law.errors), rows=law.rows)
    return out
