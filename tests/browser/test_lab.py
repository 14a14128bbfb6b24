"""The nimm-jupyter JupyterLab extension in a real JupyterLab (and Notebook 7) + Chromium.

``test_comm_protocol`` drives the ``nimm_jupyter.cells`` comm by hand from the kernel
(insertion below the right cell while another is selected, replacement on re-export,
malformed messages ignored, cells arriving while the kernel is busy and another tab is in
front). ``test_search_widget_flow`` runs a tiny offline ``%%nimm_search`` end to end, in
JupyterLab and in Notebook 7.
"""
from __future__ import annotations

import json
import time

import pytest

from .conftest import ARTIFACTS
from .labpage import Notebook, open_notebook

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


def _nimm_cells(cells):
    return [(c["nimm"]["run_id"], c["nimm"]["node_id"], c["nimm"]["role"], c["source"])
            for c in cells if c["nimm"]]


def test_comm_protocol(page, lab):
    t0 = time.time()
    nb = open_notebook(page, lab, "comm_protocol.ipynb")
    assert nb.js("return window.jupyterapp.commands.hasCommand('nimm-jupyter:export-best');")
    # The commands are in the notebook's context menu and toolbar.
    page.locator(f"#{nb.panel_id()} .jp-Notebook .jp-Cell").first.click(button="right")
    menu = page.locator(".lm-Menu")
    menu.locator(".lm-Menu-item", has_text="Nimm: Export best model of last search").wait_for()
    menu.locator(".lm-Menu-item", has_text="Nimm: Stop running search").wait_for()
    page.keyboard.press("Escape")
    for name in ("nimm-export", "nimm-stop"):
        assert page.locator(f"#{nb.panel_id()} .jp-nimm-toolbar-{name}").is_visible()
    before = nb.cells()
    anchor = nb.run_cell("ANCHOR = current_cell_id")
    assert before[anchor]["id"] == "fixture-cell-1"
    assert "anchor fixture-cell-1" in nb.output_text("ANCHOR = current_cell_id")

    # First export, run from a cell further down: lands right below the anchor.
    nb.run_cell('export("r1", [1], tag="first")')
    assert nb.active_index() != anchor
    cells = nb.cells()
    assert len(cells) == len(before) + 2
    assert cells[anchor]["id"] == "fixture-cell-1"
    assert [(c["cell_type"], c["nimm"]) for c in cells[anchor + 1:anchor + 3]] == [
        ("markdown", {"run_id": "r1", "node_id": 1, "role": "header"}),
        ("code", {"run_id": "r1", "node_id": 1, "role": "model"}),
    ]
    assert cells[anchor + 2]["source"] == "MODEL_1 = 'first'"
    assert cells[anchor + 3]["id"] == "fixture-cell-2"  # the user's cell moved down, intact
    page.screenshot(path=str(ARTIFACTS / "comm-first-export.png"))

    # Re-export of the same node replaces its cells instead of duplicating them.
    nb.run_cell('export("r1", [1], tag="second")')
    cells = nb.cells()
    assert len(cells) == len(before) + 2
    assert cells[anchor + 2]["source"] == "MODEL_1 = 'second'"

    # A new node goes after the run's existing cells.
    nb.run_cell('export("r1", [2], tag="first")')
    cells = nb.cells()
    assert [(r, n, role) for r, n, role, _ in _nimm_cells(cells)] == [
        ("r1", 1, "header"), ("r1", 1, "model"), ("r1", 2, "header"), ("r1", 2, "model")]
    assert [c["nimm"] is not None for c in cells[anchor + 1:anchor + 5]] == [True] * 4

    # Malformed / misdirected messages change nothing and only warn.
    snapshot = nb.cells()
    warnings_before = sum(1 for t, m in page.console_messages if t == "warning" and "nimm-jupyter" in m)
    nb.run_cell("malformed or misdirected")
    nb.wait_until(lambda n: sum(1 for t, m in page.console_messages
                                if t == "warning" and "nimm-jupyter" in m) >= warnings_before + 6,
                  what="six console warnings")
    after = nb.cells()
    assert [(c["id"], c["source"], c["nimm"]) for c in after] == \
        [(c["id"], c["source"], c["nimm"]) for c in snapshot]

    # Cells sent while the kernel is busy, with another tab in front, still land below the anchor.
    busy_id = nb.cells()[nb.index_of('export("r2", [7], tag="busy")')]["id"]
    nb.run_cell('export("r2", [7], tag="busy")', wait=False)
    nb.wait_until(lambda n: n.kernel_status() == "busy", what="kernel busy")
    nb.js("return window.jupyterapp.commands.execute('launcher:create');")
    page.locator(".jp-Launcher").first.wait_for()
    assert nb.js("return window.jupyterapp.shell.currentWidget !== panel;")
    (lab.root / "go.flag").touch()
    nb.wait_until(lambda n: any(c["nimm"] and c["nimm"]["run_id"] == "r2" for c in n.cells()),
                  timeout=30, what="r2 cells")
    assert nb.kernel_status() == "busy"  # the cell waits for seen.flag
    (lab.root / "seen.flag").touch()
    cells = nb.cells()
    assert [c["nimm"]["run_id"] for c in cells[anchor + 1:anchor + 3]] == ["r2", "r2"]
    assert [c["nimm"]["run_id"] for c in cells[anchor + 3:anchor + 7]] == ["r1"] * 4
    nb.wait_executed(busy_id)

    # Back to the notebook: the kernel received a hello and an ack for every insertion.
    page.locator(".lm-TabBar-tab", has_text="comm_protocol.ipynb").first.click()
    nb.run_cell("print(json.dumps(replies))")
    replies = json.loads(nb.output_text("print(json.dumps(replies))"))
    assert replies[0] == {"type": "hello", "version": 1}
    acks = [r for r in replies if r.get("type") == "ack"]
    assert [(a["run_id"], a["inserted"]) for a in acks] == [
        ("r1", 2), ("r1", 2), ("r1", 2), ("r1", 0), ("r2", 2)]
    assert "no-such-cell" in acks[3]["error"]
    page.screenshot(path=str(ARTIFACTS / "comm-protocol.png"))
    print(f"test_comm_protocol: {time.time() - t0:.1f}s")


def _wait_nimm(nb: Notebook, run_id: str | None, count: int, timeout: float = 60.0):
    def ready(n: Notebook):
        tagged = [c for c in n.cells() if c["nimm"] and (run_id is None or c["nimm"]["run_id"] == run_id)]
        return tagged if len(tagged) >= count else None
    return nb.wait_until(ready, timeout=timeout, what=f"{count} exported cells")


def test_search_widget_flow(page, front_end):
    t0 = time.time()
    nb = open_notebook(page, front_end, "search_flow.ipynb")
    nb.run_cell("%load_ext nimm_jupyter")
    search_idx = nb.run_cell("%%nimm_search lung_cancer_chemo", timeout=90)
    search_id = nb.cells()[search_idx]["id"]
    widget = page.locator(".nimm-widget")
    widget.wait_for(timeout=60_000)

    # The tree draws nodes as they are proposed; wait for one trained model.
    done = widget.locator(".nimm-node.nimm-state-done")
    done.first.wait_for(timeout=120_000)
    assert widget.locator(".nimm-node").count() >= 1
    node = done.first
    node_id = node.get_attribute("data-node-id")
    node.click()
    details = widget.locator(".nimm-details")
    details.locator(".nimm-details-title").wait_for(timeout=30_000)
    assert node_id in details.locator(".nimm-details-title").inner_text()
    page.screenshot(path=str(ARTIFACTS / f"flow-widget-{front_end.ui_path}.png"))

    # Stop: the search finishes early and the widget says so.
    stop = widget.locator(".nimm-stop")
    if not stop.is_disabled():
        stop.click()
    page.wait_for_function("() => document.querySelector('.nimm-widget')?.dataset.finished === 'true'",
                           timeout=90_000)
    assert widget.locator(".nimm-stop").is_disabled()

    # Export from the widget: header/model/load/plot cells right below the search cell.
    widget.locator(".nimm-export").click()
    tagged = _wait_nimm(nb, None, 4)
    cells = nb.cells()
    anchor = [c["id"] for c in cells].index(search_id)
    exported = cells[anchor + 1:anchor + 1 + len(tagged)]
    assert [c["nimm"]["role"] for c in exported] == ["header", "model", "load", "plot"]
    run_id = exported[0]["nimm"]["run_id"]
    assert all(c["nimm"]["run_id"] == run_id for c in exported)
    assert [c["cell_type"] for c in exported] == ["markdown", "code", "code", "code"]
    assert "class Model" in exported[1]["source"]
    assert cells[anchor + 5]["id"] == "flow-cell-3"  # the user's cell, below the export
    n_cells = len(cells)

    # The palette command re-exports the best model: its cells are replaced, not duplicated.
    nb.js("panel.content.activeCellIndex = panel.content.widgets.length - 1; return true;")
    page.keyboard.press("Control+Shift+C")
    palette = page.locator(".lm-CommandPalette-input:visible")
    palette.fill("Nimm: Export best")
    page.locator(".lm-CommandPalette-item", has_text="Nimm: Export best model of last search") \
        .first.wait_for()
    page.keyboard.press("Enter")
    page.locator(".Toastify__toast", has_text="inserted 4 cells").first.wait_for(timeout=60_000)
    cells = nb.cells()
    assert len(cells) == n_cells
    assert [c["nimm"]["role"] for c in cells[anchor + 1:anchor + 5]] == ["header", "model", "load", "plot"]
    assert cells[anchor + 1]["id"] != exported[0]["id"]  # new cells in the old place

    # Stop from the toolbar when nothing runs: an informative notification, nothing breaks.
    page.locator(f"#{nb.panel_id()} .jp-nimm-toolbar-nimm-stop").click()
    page.locator(".Toastify__toast", has_text="already finished").first.wait_for(timeout=30_000)

    page.screenshot(path=str(ARTIFACTS / f"flow-exported-{front_end.ui_path}.png"))
    if front_end.is_lab:  # the README's screenshot is JupyterLab's
        _docs_screenshot(page, nb, search_idx)

    # After a page reload the kernel's comm belongs to the old page; the extension joins
    # again, so the toolbar's export still inserts (replaces) cells instead of falling back.
    nb.save()
    page.reload()
    nb = open_notebook(page, front_end, "search_flow.ipynb")
    old_ids = {c["id"] for c in nb.cells() if c["nimm"]}
    assert len(old_ids) == 4
    page.locator(f"#{nb.panel_id()} .jp-nimm-toolbar-nimm-export").click()
    page.locator(".Toastify__toast", has_text="inserted 4 cells").first.wait_for(timeout=60_000)
    nb.wait_until(lambda n: not old_ids & {c["id"] for c in n.cells()}, timeout=30,
                  what="the exported cells to be replaced after the reload")
    cells = nb.cells()
    assert len(cells) == n_cells
    anchor = [c["id"] for c in cells].index(search_id)
    assert [c["nimm"]["role"] for c in cells[anchor + 1:anchor + 5]] == ["header", "model", "load", "plot"]
    print(f"test_search_widget_flow: {time.time() - t0:.1f}s")


def _docs_screenshot(page, nb: Notebook, search_idx: int) -> None:
    """The widget with the exported cells below it (docs/screenshot.png is a copy)."""
    page.set_viewport_size({"width": 1280, "height": 2900})
    nb.js("""const app = window.jupyterapp;
        if (!app.shell.leftCollapsed) app.shell.collapseLeft();
        panel.content.activeCellIndex = arg;
        panel.content.widgets[arg].node.scrollIntoView({block: 'start'});
        for (const el of document.querySelectorAll('.Toastify__toast')) el.style.display = 'none';
        return true;""", search_idx)
    page.wait_for_timeout(800)
    page.locator(f"#{nb.panel_id()}").screenshot(path=str(ARTIFACTS / "docs-screenshot.png"))
    page.set_viewport_size({"width": 1400, "height": 1000})
