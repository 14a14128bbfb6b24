"""The demo notebooks execute top to bottom in a fresh kernel (short budgets via env vars)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "demo_notebooks").glob("*.ipynb"))

pytestmark = pytest.mark.timeout(600)


def test_all_five_demo_notebooks_are_there():
    names = [p.stem for p in NOTEBOOKS]
    assert names == ["01_quickstart", "02_your_own_data", "03_influenza_usa", "04_hea_alloys",
                     "05_with_claude"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_demo_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("NIMM_DEMO_BUDGET", "2")
    monkeypatch.setenv("NIMM_DEMO_MAX_EPOCHS", "15")
    monkeypatch.setenv("NIMM_NO_WIDGET", "1")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    work = tmp_path / path.name
    shutil.copy(path, work)
    nb = nbformat.read(work, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    text = "\n".join(
        o.get("text", "") if o.get("output_type") == "stream" else str(o.get("data", {}).get("text/plain", ""))
        for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", []))
    assert "Error" not in "".join(o.get("ename", "") for c in nb.cells if c.cell_type == "code"
                                  for o in c.get("outputs", []))
    if path.stem == "05_with_claude":
        assert "ANTHROPIC_API_KEY is not set" in text
    else:
        assert "nimm_search: error" not in text
        runs = list(tmp_path.glob("runs/*/journal.sqlite"))
        assert runs, "the notebook's search left no journal"
