"""Real COVID-19 cases per localidad of Bogotá from the Datos Abiertos Bogotá line list.

The public file (Secretaría Distrital de Salud, dataset "Número de casos confirmados por el
laboratorio de COVID-19 – Bogotá D.C.", ``osb_enftransm-covid-19*.csv``; one row per case,
``;``-separated, Latin-1, day-first dates) is not shipped or downloaded by this package:
there is no stable public copy to verify by checksum. Download it yourself, then::

    from functools import partial
    from nimm_jupyter import tasks
    from nimm_jupyter.tasks.bogota import make_covid_bogota

    task = make_covid_bogota("osb_enftransm-covid-19.csv")            # one Task, or
    tasks.register("covid_bogota", partial(make_covid_bogota, "osb_enftransm-covid-19.csv"))

:func:`load_bogota_cases` follows the aggregation recipe of the data PROVENANCE: count rows by
(diagnosis or symptom-onset date, localidad of residence), drop "Fuera de Bogotá" and
"Sin dato", repair broken encodings of names (Engativá, Antonio Nariño, ...), reindex to
every day x the 20 localidades filling 0, optionally sum to weeks (Monday start).
"""
from __future__ import annotations

import csv
import io
import os
import re
import unicodedata
from pathlib import Path
from typing import IO, Any, Sequence

import numpy as np

from .base import DataSource, Variable
from .metapop.core import distances_km, gravity_mobility, windowed_task
from .metapop.covid import (BOGOTA_LOCALIDADES, COVID_HYBRID_CODE, COVID_PRIOR_CODE,
                            COVID_PRIOR_OMITS, covid_description, npi_schedule)

__all__ = ["BogotaDataError", "LOCALIDADES", "load_bogota_cases", "make_covid_bogota"]


class BogotaDataError(ValueError):
    """The file is not a usable Bogotá line list; the message names the line/column."""


# Official code order; Sumapaz (20) is rural and usually excluded from modelling.
LOCALIDADES: list[str] = [
    "Usaquén", "Chapinero", "Santa Fe", "San Cristóbal", "Usme", "Tunjuelito", "Bosa",
    "Kennedy", "Fontibón", "Engativá", "Suba", "Barrios Unidos", "Teusaquillo",
    "Los Mártires", "Antonio Nariño", "Puente Aranda", "La Candelaria",
    "Rafael Uribe Uribe", "Ciudad Bolívar", "Sumapaz",
]

# Header variants (normalised: accents stripped, lower case, runs of non-letters -> "_").
_DATE_COLUMNS = {
    "diagnosis": ["fecha_diagnostico", "fecha_de_diagnostico"],
    "onset": ["fecha_de_inicio_de_sintomas", "fecha_inicio_sintomas",
              "fecha_de_inicio_sintomas"],
}
_LOCALIDAD_COLUMNS = ["localidad_asis", "localidad_de_residencia", "localidad"]
_CITY_COLUMNS = ["ciudad", "ciudad_de_residencia"]
_DROPPED = {"fueradebogota", "sindato", "sininformacion", "desconocido", ""}


def _fold(text: str) -> str:
    """Accent-free lower-case letters/digits plus ``?`` marks left by broken encodings."""
    text = _repair_mojibake(text)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.replace("\ufffd", "?").lower()
    return re.sub(r"[^a-z0-9?]+", "", text)


def _repair_mojibake(text: str) -> str:
    """``EngativÃ¡`` (UTF-8 bytes read as Latin-1) -> ``Engativá``; otherwise unchanged."""
    if "Ã" in text or "Â" in text:
        try:
            return text.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return text
    return text


def _header_key(name: str) -> str:
    name = _repair_mojibake(name.strip().lstrip("\ufeff"))
    name = unicodedata.normalize("NFKD", name)
    name = "".join(ch for ch in name if not unicodedata.combining(ch)).lower()
    return re.sub(r"[^a-z0-9]+", "_", name).strip("_")


_CANONICAL = {_fold(n): i for i, n in enumerate(LOCALIDADES)}


def _localidad_index(raw: str) -> int | None:
    """Index into :data:`LOCALIDADES`, ``None`` for dropped values, ``-1`` if unknown."""
    key = _fold(raw)
    key = re.sub(r"^\d+", "", key)  # "10 - Engativá" style prefixes
    if key in _DROPPED:
        return None
    if key in _CANONICAL:
        return _CANONICAL[key]
    if "?" in key:  # a character lost to a bad decode: match it as a wildcard
        pattern = re.compile("^" + ".{0,2}".join(re.escape(p) for p in key.split("?")) + "$")
        hits = [i for k, i in _CANONICAL.items() if pattern.match(k)]
        if len(hits) == 1:
            return hits[0]
        if any(pattern.match(k) for k in _DROPPED if k):
            return None
    return -1


_DATE_RE = re.compile(r"^\s*(\d{1,2})[/-](\d{1,2})[/-](\d{4})")
_ISO_RE = re.compile(r"^\s*(\d{4})-(\d{2})-(\d{2})")


def _parse_day(text: str) -> np.datetime64 | None:
    """Day-first ``dd/mm/yyyy`` (optionally with a time) or ISO ``yyyy-mm-dd``."""
    m = _DATE_RE.match(text)
    if m:
        d, mth, y = (int(g) for g in m.groups())
    else:
        m = _ISO_RE.match(text)
        if not m:
            return None
        y, mth, d = (int(g) for g in m.groups())
    try:
        return np.datetime64(f"{y:04d}-{mth:02d}-{d:02d}", "D")
    except ValueError:
        return None


def _read_text(path_or_file: str | os.PathLike | IO[Any]) -> str:
    if hasattr(path_or_file, "read"):
        data = path_or_file.read()
    else:
        path = Path(path_or_file)
        if not path.exists():
            raise FileNotFoundError(f"Bogotá case file not found: {path}")
        data = path.read_bytes()
    if isinstance(data, str):
        return data
    try:  # some snapshots were re-saved as UTF-8; the official file is Latin-1
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _find(header: list[str], candidates: Sequence[str]) -> int | None:
    keys = [_header_key(h) for h in header]
    for c in candidates:
        if c in keys:
            return keys.index(c)
    return None


def load_bogota_cases(path_or_file: str | os.PathLike | IO[Any], freq: str = "W",
                      date_field: str = "diagnosis",
                      ) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Count confirmed cases per day or week and localidad from a Bogotá line-list CSV.

    Returns ``(dates, localidades, counts)``: ``dates`` ``(D,)`` datetime64[D] (each day, or
    the Monday starting each week for ``freq="W"``; partial first/last weeks are kept),
    ``localidades`` the 20 official names in code order, ``counts`` ``(D, 20)`` int64.
    ``date_field`` is ``"diagnosis"`` (``FECHA_DIAGNOSTICO`` / "Fecha de diagnóstico") or
    ``"onset"`` (``FECHA_DE_INICIO_DE_SINTOMAS``). Rows with an empty date, or localidad
    "Fuera de Bogotá"/"Sin dato", or a ``CIUDAD`` other than Bogotá, are dropped.
    """
    if freq not in ("D", "W"):
        raise ValueError(f"freq must be 'D' (daily) or 'W' (weekly), got {freq!r}")
    if date_field not in _DATE_COLUMNS:
        raise ValueError(f"date_field must be one of {sorted(_DATE_COLUMNS)}, got {date_field!r}")
    text = _read_text(path_or_file)
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") >= first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise BogotaDataError("the file is empty") from None
    i_date = _find(header, _DATE_COLUMNS[date_field])
    i_loc = _find(header, _LOCALIDAD_COLUMNS)
    i_city = _find(header, _CITY_COLUMNS)
    if i_date is None or i_loc is None:
        need = []
        if i_date is None:
            need.append(f"a {date_field} date column ({' or '.join(_DATE_COLUMNS[date_field])})")
        if i_loc is None:
            need.append(f"a localidad column ({' or '.join(_LOCALIDAD_COLUMNS)})")
        raise BogotaDataError(f"missing {' and '.join(need)}; header is: {header}")

    days: list[np.datetime64] = []
    locs: list[int] = []
    unknown: dict[str, int] = {}
    for line_no, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) <= max(i_date, i_loc):
            raise BogotaDataError(f"line {line_no} has {len(row)} fields, expected "
                                  f"{len(header)}: {row}")
        if i_city is not None and len(row) > i_city:
            city = _fold(row[i_city])
            if city and not city.startswith("bogota") and not city.startswith("bogot?"):
                continue
        loc = _localidad_index(row[i_loc])
        if loc is None:
            continue
        if loc < 0:
            unknown.setdefault(row[i_loc], line_no)
            continue
        raw_date = row[i_date].strip()
        if not raw_date:
            continue
        day = _parse_day(raw_date)
        if day is None:
            raise BogotaDataError(f"line {line_no}: cannot read date {raw_date!r} in column "
                                  f"{header[i_date]!r} (expected dd/mm/yyyy)")
        days.append(day)
        locs.append(loc)
    if unknown:
        shown = ", ".join(f"{k!r} (line {v})" for k, v in list(unknown.items())[:5])
        raise BogotaDataError(f"unknown localidad name(s) in column {header[i_loc]!r}: {shown}")
    if not days:
        raise BogotaDataError("no usable rows (every row was dropped or empty)")

    day_arr = np.array(days, dtype="datetime64[D]")
    loc_arr = np.array(locs, dtype=np.int64)
    if freq == "W":
        # 1970-01-01 was a Thursday: (days + 3) % 7 is 0 on Mondays
        day_arr = day_arr - ((day_arr.astype(np.int64) + 3) % 7).astype("timedelta64[D]")
        step = 7
    else:
        step = 1
    start, stop = day_arr.min(), day_arr.max()
    dates = np.arange(start, stop + np.timedelta64(1, "D"), step).astype("datetime64[D]")
    counts = np.zeros((len(dates), len(LOCALIDADES)), dtype=np.int64)
    np.add.at(counts, (((day_arr - start).astype(np.int64) // step), loc_arr), 1)
    return dates, list(LOCALIDADES), counts


def make_covid_bogota(path: str | os.PathLike | IO[Any], *, window: int = 12, horizon: int = 4,
                      date_field: str = "diagnosis", start: str | None = None,
                      end: str | None = None, npi_level: Sequence[float] | None = None,
                      stay_home: float = 0.8, split: Sequence[float] = (0.6, 0.2, 0.2)):
    """A ``source="real"`` task from a Bogotá line list, laid out like
    ``covid_bogota_synthetic``: 19 urban localidades (Sumapaz excluded), weekly counts,
    input ``npi_level`` and constants ``mobility``/``population``.

    ``start``/``end`` (ISO dates) clip the weeks. ``npi_level`` (one value per week) replaces
    the default, an approximate stringency schedule of the main decreed lockdown periods.
    The mobility matrix is a gravity model on placeholder populations and centroids: the
    real commuting data behind NIMM's task is not public.
    """
    dates, names, counts = load_bogota_cases(path, "W", date_field)
    keep = np.ones(len(dates), dtype=bool)
    if start is not None:
        keep &= dates >= np.datetime64(start, "D")
    if end is not None:
        keep &= dates <= np.datetime64(end, "D")
    dates, counts = dates[keep], counts[keep]
    urban = [names.index(p.name) for p in BOGOTA_LOCALIDADES]
    counts = counts[:, urban]
    if npi_level is None:
        week_days = dates[:, None] + np.arange(7)
        npi = npi_schedule(week_days.ravel(), "bogota")[0].reshape(-1, 7).mean(axis=1)
        npi_note = ("the default npi_level is an approximate schedule of the decreed "
                    "lockdown periods, not a measured stringency index")
    else:
        npi = np.asarray(npi_level, dtype=np.float64)
        if npi.shape != (len(dates),):
            raise ValueError(f"npi_level needs one value per week ({len(dates)}), "
                             f"got shape {npi.shape}")
        npi_note = "npi_level supplied by the user"
    patches = BOGOTA_LOCALIDADES
    pop = np.array([p.population for p in patches], dtype=np.float64)
    mobility = gravity_mobility(pop, distances_km(patches), stay_home)
    first = ("Weekly confirmed COVID-19 cases in the 19 urban localidades of Bogotá "
             f"(Datos Abiertos Bogotá line list, {dates[0]} to {dates[-1]}).")
    placeholder = ("Populations and centroid coordinates behind both are round placeholder "
                   f"approximations, not official figures; {npi_note}.")
    description = covid_description(first, patches, "localidad", counts[None], window, horizon,
                                    placeholder)
    provenance = (
        "Secretaría Distrital de Salud de Bogotá / Datos Abiertos Bogotá, 'Número de casos "
        "confirmados por el laboratorio de COVID-19 - Bogotá D.C.' "
        "(https://datosabiertos.bogota.gov.co/dataset/44eacdb7-a535-45ed-be03-16dbbea6f6da), "
        f"counted by {date_field} date and localidad of residence, weeks starting Monday. "
        "Mobility: gravity-model placeholder."
    )
    targets = [Variable(p.ident, "cases/week", f"confirmed cases in {p.name}") for p in patches]
    return windowed_task(
        name="covid_bogota", description=description, source=DataSource.REAL,
        provenance=provenance, targets=targets,
        inputs=[Variable("npi_level", "", "intervention stringency 0..1")],
        counts=counts[None], exog=npi[None, :, None],
        constants={"mobility": mobility, "population": pop}, window=window, horizon=horizon,
        split=split, prior_code=COVID_PRIOR_CODE, prior_omits=COVID_PRIOR_OMITS,
        hybrid_code=COVID_HYBRID_CODE,
        options=dict(window=window, horizon=horizon, date_field=date_field, start=start,
                     end=end, stay_home=stay_home, split=list(split),
                     first_week=str(dates[0]), weeks=int(len(dates))),
    )
