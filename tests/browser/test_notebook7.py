"""The search widget in Jupyter Notebook 7 (real server + Chromium): a short background
search from a cell renders the widget through this package's extension and it updates live
until the search ends."""
from __future__ import annotations

import time

import pytest

from .conftest import ARTIFACTS
from .labpage import open_notebook

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

_STATE = """() => {
  const w = document.querySelector('.nimm-widget');
  if (!w) return null;
  return {nodes: w.querySelectorAll('.nimm-tree .nimm-node').length,
          done: w.querySelectorAll('.nimm-tree .nimm-node.nimm-state-done').length,
          evaluated: w.querySelector('[data-counter=evaluated] b')?.textContent ?? '',
          finished: w.dataset.finished};
}"""


def test_search_widget_renders_and_updates_in_notebook7(page, notebook7):
    t0 = time.time()
    nb = open_notebook(page, notebook7, "notebook7.ipynb")
    assert page.url.split("?")[0].endswith("/notebooks/notebook7.ipynb")  # Notebook 7, not the lab
    nb.run_cell("%load_ext nimm_jupyter")
    nb.run_cell("%%nimm_search lung_cancer_chemo", timeout=90)  # returns at once, runs on
    widget = page.locator(".nimm-widget")
    widget.wait_for(timeout=60_000)
    first = page.evaluate(_STATE)
    assert first["finished"] == "false"
    # the output goes through the extension's renderer, which shows the live view
    assert page.locator(".jp-nimm-search-view").get_attribute("data-nimm-view") == "live"

    # live updates: the same view gains trained nodes and its counter moves until the end
    widget.locator(".nimm-tree .nimm-node.nimm-state-done").first.wait_for(timeout=150_000)
    page.wait_for_function(
        "() => document.querySelector('.nimm-widget')?.dataset.finished === 'true'", timeout=150_000)
    last = page.evaluate(_STATE)
    assert last["done"] >= 1 and last["nodes"] >= first["nodes"]
    assert last["evaluated"] != first["evaluated"] and last["evaluated"].startswith("3")
    assert page.locator(".nimm-widget").count() == 1  # updated in place, not re-displayed
    assert "finished" in widget.locator(".nimm-title").inner_text()
    page.screenshot(path=str(ARTIFACTS / "notebook7-widget.png"))
    print(f"test_search_widget_renders_and_updates_in_notebook7: {time.time() - t0:.1f}s")
