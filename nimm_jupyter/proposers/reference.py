"""The candidate-interface reference: signatures and docs of :mod:`nimm_jupyter.blocks`,
generated from the library itself so the prompt cannot drift from the code."""
from __future__ import annotations

import inspect
from functools import lru_cache

MAX_DOC_LINES = 8  # per helper: the summary and the argument conventions, not the prose


def _doc(obj: object) -> str:
    lines = [ln.rstrip() for ln in (inspect.getdoc(obj) or "(undocumented)").splitlines()]
    # "``formula``: why" summaries keep the formula only: the why may name one task's law
    # (safe_log's names a growth law a task asks the proposer to discover)
    if lines[0].startswith("``") and "``: " in lines[0]:
        lines[0] = lines[0].split("``: ", 1)[0] + "``."
    return "\n".join("    " + ln if ln else "" for ln in lines[:MAX_DOC_LINES]).rstrip()


class _Text(str):
    """An annotation written as source text (these modules use postponed annotations)."""

    def __repr__(self) -> str:
        return str(self)


def _signature(name: str, obj: object) -> str:
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return f"exception {name}({obj.__mro__[1].__name__})"
    target = obj.__init__ if inspect.isclass(obj) else obj  # type: ignore[misc]
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return name
    params = [p.replace(annotation=_Text(p.annotation)) if isinstance(p.annotation, str) else p
              for p in sig.parameters.values() if p.name != "self"]
    text = str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty))
    return f"{'class ' if inspect.isclass(obj) else ''}{name}{text}"


@lru_cache(maxsize=None)
def blocks_reference() -> str:
    """Every public helper of ``nimm_jupyter.blocks`` with its signature and docstring."""
    from .. import blocks

    parts = []
    for name in blocks.__all__:
        obj = getattr(blocks, name)
        parts.append(f"{_signature(name, obj)}\n{_doc(obj)}")
    return ("Helpers importable with `from nimm_jupyter.blocks import ...` (generated from "
            "the library):\n\n" + "\n\n".join(parts))
