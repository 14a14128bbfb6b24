"""A :class:`~nimm_jupyter.tasks.Task` from a DataFrame of the notebook (``--data VAR``)."""
from __future__ import annotations

import inspect
from typing import Any, Mapping

from .options import NimmError, columns

# the flags that name columns of a DataFrame task
_COLUMN_FLAGS = ("time", "targets", "inputs", "group", "features")


def stray_column_flags(args: Any) -> list[str]:
    """Column flags given without ``--data`` (they describe a DataFrame)."""
    return [f"--{k}" for k in _COLUMN_FLAGS if getattr(args, k) is not None]


def dataframe_task(namespace: Mapping[str, Any], args: Any, description: str,
                   seed_code: str | None) -> Any:
    """The task of ``--data VAR`` with its column flags; errors name the flag and column."""
    if args.data not in namespace:
        raise NimmError(f"--data: no variable {args.data!r} in the notebook namespace")
    df = namespace[args.data]
    if not hasattr(df, "columns"):
        raise NimmError(f"--data: {args.data!r} is a {type(df).__name__}, not a pandas DataFrame")
    targets = columns(args.targets)
    if not targets:
        raise NimmError("--data needs --targets A,B (the columns to model)")
    named = {"--time": [args.time] if args.time else [], "--targets": targets,
             "--inputs": columns(args.inputs) or [], "--group": [args.group] if args.group else [],
             "--features": columns(args.features) or []}
    present = [str(c) for c in df.columns]
    for flag, cols in named.items():
        for col in cols:
            if col not in present:
                raise NimmError(f"{flag}: column {col!r} is not in {args.data} "
                                f"(columns: {', '.join(present[:20])})")
    from ..tasks import task_from_dataframe as build
    kw: dict[str, Any] = {"targets": targets, "description": description}
    for key, value in (("time", args.time), ("inputs", columns(args.inputs)),
                       ("group", args.group), ("features", columns(args.features)),
                       ("prior_code", seed_code)):
        if value is not None:
            kw[key] = value
    try:
        params = inspect.signature(build).parameters
        if "name" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
            kw["name"] = args.task
    except (TypeError, ValueError):
        pass
    return build(df, **kw)
