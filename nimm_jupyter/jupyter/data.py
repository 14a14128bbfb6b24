"""A :class:`~nimm_jupyter.tasks.Task` from a DataFrame of the notebook (``--data VAR``)."""
from __future__ import annotations

from typing import Any, Mapping

from .options import NimmError, columns


def stray_column_flags(args: Any) -> list[str]:
    """Data flags given without ``--data`` (they describe a DataFrame)."""
    from ..search.options import DATA_OPTIONS

    flags = [o.flag for o in DATA_OPTIONS] + ["--features"]
    return [f for f in flags if getattr(args, f[2:].replace("-", "_"), None) is not None]


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
    from ..search.options import OptionError, data_options
    from ..tasks import task_from_dataframe as build

    try:
        kw = data_options(args)
    except OptionError as exc:
        raise NimmError(str(exc)) from None
    kw.update(description=description, name=args.task)
    for key, value in (("features", columns(args.features)), ("prior_code", seed_code)):
        if value is not None:
            kw[key] = value
    task = build(df, **kw)
    # said once, at the start, in the cell: which points are held out and how far it forecasts
    print(f"{task.name}: {task.options.get('layout', '')}")
    return task
