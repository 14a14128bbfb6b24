"""Demo notebook 02 (your own data) as it runs, with its search flags varied.

    NIMM_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_own_data.py OUT \
        [--variant "--val-last 8 --budget 8" ...] [--prior FILE]

Each variant executes ``demo_notebooks/02_your_own_data.ipynb`` top to bottom in a fresh
kernel (nbclient, as tests/test_demo_notebooks.py does, without the CI caps) with the
``%%nimm_search`` line's ``--val-last``/``--budget`` flags replaced by the variant's and,
with ``--prior``, the seed code in the cell replaced by FILE. It prints the search's node
table, the notebook's line comparing the fitted prior with the search's pick on the test
window, and the wall time; OUT/<k>/ keeps each executed notebook and its run directory.
"""
from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "demo_notebooks" / "02_your_own_data.ipynb"
FLAGS = re.compile(r"\s--(?:val-last|budget) \d+")


def variant_notebook(flags: str, prior: str | None) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith("%%nimm_search"):
            first, rest = cell.source.split("\n", 1)
            first = FLAGS.sub("", first) + " " + flags
            if prior is not None:
                rest = rest.split("```python")[0] + "```python\n" + prior.rstrip() + "\n```"
            cell.source = first + "\n" + rest
    return nb


def outputs(nb: nbformat.NotebookNode) -> list[str]:
    texts = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            texts.append(o.get("text") or str(o.get("data", {}).get("text/plain", "")))
    return texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--variant", action="append",
                    help='flags for %%%%nimm_search, e.g. "--val-last 8 --budget 8" (repeatable)')
    ap.add_argument("--prior", type=Path, help="seed code replacing the cell's prior")
    args = ap.parse_args()
    os.environ.setdefault("NIMM_NO_WIDGET", "1")
    for var in ("NIMM_DEMO_BUDGET", "NIMM_DEMO_MAX_EPOCHS"):
        os.environ.pop(var, None)  # the notebook as a user runs it
    prior = args.prior.read_text() if args.prior else None
    for k, flags in enumerate(args.variant or ["--val-last 8 --budget 8"]):
        work = args.out / str(k)
        work.mkdir(parents=True, exist_ok=True)
        nb = variant_notebook(flags, prior)
        t0 = time.time()
        NotebookClient(nb, timeout=3000, kernel_name="python3",
                       resources={"metadata": {"path": str(work)}}).execute()
        nbformat.write(nb, work / NOTEBOOK.name)
        text = outputs(nb)
        table = next((t for t in text if "evaluated," in t), "(no search table)")
        line = next((t for t in text if t.startswith("test RMSE")), "(no comparison line)")
        print(f"== {flags}{' with ' + str(args.prior) if prior else ''}: "
              f"{time.time() - t0:.0f} s wall\n{table.rstrip()}\n{line.rstrip()}\n", flush=True)


if __name__ == "__main__":
    main()
