"""The NIMM paper's NIMMGen test RMSEs (arXiv 2602.18008) and which of our tasks match them."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperRow:
    """One NIMMGen result reported in the NIMM paper (arXiv 2602.18008)."""

    label: str
    test_rmse: float
    unit: str = ""


PAPER_NIMMGEN: dict[str, PaperRow] = {
    "covid_bogota": PaperRow("COVID-Bogota", 333.9),
    "covid_medellin": PaperRow("COVID-Medellin", 524.3),
    "influenza_usa": PaperRow("Influenza-USA", 4.81),
    "mrsa_virginia": PaperRow("MRSA-Virginia", 39.83),
    "lung_cancer": PaperRow("Lung cancer", 1.41),
    "lung_cancer_chemo": PaperRow("Lung cancer w/ chemo", 0.08),
    "lung_cancer_chemo_radio": PaperRow("Lung cancer w/ chemo & radio", 0.06),
    "hea_fcc_rt": PaperRow("FCC HEA room-temperature yield strength", 139.2, "MPa"),
    "hea_bcc_temp": PaperRow("BCC HEA temperature-dependent yield strength", 180.1, "MPa"),
}


def paper_row(task_name: str) -> tuple[PaperRow | None, bool]:
    """The paper row our task corresponds to, and whether the numbers are comparable.

    A ``*_synthetic`` task is our invented stand-in for a paper dataset we do not have: it is
    mapped to that paper row but never comparable.
    """
    if task_name in PAPER_NIMMGEN:
        return PAPER_NIMMGEN[task_name], True
    if task_name.endswith("_synthetic"):
        row = PAPER_NIMMGEN.get(task_name[: -len("_synthetic")])
        if row is not None:
            return row, False
    return None, False
