"""The benchmark's CSV files (written atomically) and how its numbers are printed."""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any, Iterable


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _write_csv(path: Path, fields: Iterable[str], rows: list[dict[str, Any]]) -> None:
    """Write atomically, so an interrupted benchmark never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_value(v) for k, v in r.items()})
    os.replace(tmp, path)


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return "" if not math.isfinite(v) else repr(v)
    return "" if v is None else v


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return "-" if not math.isfinite(x) else f"{x:.4g}"
    return str(x)


def num(v: Any) -> float:
    """A CSV cell as a float (NaN when empty or not a number)."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return math.nan
    return x
